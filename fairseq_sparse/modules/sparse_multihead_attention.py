"""Self-attention whose softmax can be replaced by a sparse normaliser.

fairseq's MultiheadAttention sends every encoder call through a fused PyTorch kernel that
never calls its own softmax, so swapping the normaliser means owning the attention math.
This subclass keeps the parent's parameters (q/k/v/out projections: stock checkpoints load
unchanged) and its fused path whenever nothing differs from stock softmax attention; in every
other case it computes scores -> masks -> normaliser -> dropout -> values itself, or, on CUDA,
hands that to fairseq_sparse.kernels (fused Triton sparse attention, block-sparse FlexAttention
softmax; see _gpu_attention).

Hooks used by the rest of the plugin:
  head_gates       per-head output multipliers (0 switches a head off)
  uniform_heads    heads whose attention is replaced by 1/L over the non-padded keys
  capture_attention  keep the last per-head probabilities in `last_attention`
  density          DensityCounts of the last training forward with a sparse normaliser (else
                   None); the model hands them to the criterion, which logs attn_density_l*
  set_keep_mask_fn   a callable (tgt_len, src_len) -> keep mask (bool, or 0/1 float with
                     a straight-through gradient), for fixed patterns and learned masks
"""

import math

import torch
import torch.nn.functional as F
from fairseq.modules import MultiheadAttention

from ..kernels import can_run, flex_available, flex_softmax_attention, sparse_attention
from ..kernels import normalize as kernel_normalize
from ..masks.layout import allowed_mask
from ..masks.masked_normalize import with_mask_gradient
from ..normalizers import NORMALIZERS, check_alpha, check_lam, entmax_bisect, get_normalizer, normalizer_params
from ..normalizers.backend import backend as normalizer_backend
from ..normalizers.registry import SPECS
from .attention_stats import attention_density_counts, support_sizes

ALPHA_MIN = 1.0  # learned alphas live in (1, 2): ALPHA_MIN + floor + (1 - floor) * sigmoid
LEARNED_ALPHA_FLOOR = 1e-3  # a learned alpha stays in (1 + floor, 2)


def validate_attention_options(
    normalizer, sparsegen_lambda=0.0, entmax_alpha=1.5, learn_entmax_alpha=False, entmax_alpha_start=None
):
    """Raise ValueError naming the bad option: the one check of what this module is built with, run
    by the model builder too (before any layer exists). entmax_alpha_start: the sparsity schedule's
    first alpha, None without a schedule."""
    if normalizer not in NORMALIZERS:
        raise ValueError(f"--attn-normalizer {normalizer!r} is not one of {sorted(NORMALIZERS)}")
    check_lam(sparsegen_lambda, "--sparsegen-lambda")
    check_alpha(entmax_alpha, "--entmax-alpha")
    if learn_entmax_alpha and normalizer != "entmax_bisect":
        raise ValueError(f"--learn-entmax-alpha needs --attn-normalizer entmax_bisect, got {normalizer!r}")
    if entmax_alpha_start is not None:
        if normalizer != "entmax_bisect" or learn_entmax_alpha:
            raise ValueError(
                "--sparsity-schedule-updates anneals the alpha of --attn-normalizer entmax_bisect "
                f"(fixed alpha, no --learn-entmax-alpha), got --attn-normalizer {normalizer}"
                + (" --learn-entmax-alpha" if learn_entmax_alpha else "")
            )
        check_alpha(entmax_alpha_start, "--sparsity-schedule-start-alpha")


class SparseMultiheadAttention(MultiheadAttention):
    def __init__(
        self,
        embed_dim,
        num_heads,
        normalizer="softmax",
        sparsegen_lambda=0.0,
        entmax_alpha=1.5,
        learn_entmax_alpha=False,
        entmax_n_iter=None,
        layer_idx=0,
        entmax_alpha_start=None,
        **kwargs,
    ):
        super().__init__(embed_dim, num_heads, **kwargs)
        validate_attention_options(normalizer, sparsegen_lambda, entmax_alpha, learn_entmax_alpha, entmax_alpha_start)
        self.normalizer_name = normalizer
        if normalizer != "softmax":
            normalizer_backend()  # the first build warns (once) if the C++ kernels are missing: CPU runs slow down
        self.sparsegen_lambda = float(sparsegen_lambda)
        self.layer_idx = layer_idx
        self.entmax_n_iter = entmax_n_iter
        self._normalize = None  # entmax_bisect: alpha may be a learned tensor, bound per call (_normalise)
        if normalizer != "entmax_bisect":
            self._normalize = get_normalizer(normalizer, **normalizer_params(normalizer, lam=float(sparsegen_lambda)))
        self.entmax_alpha = float(entmax_alpha)
        if learn_entmax_alpha:
            # alpha = 1 + floor + (1 - floor) sigmoid(logit) stays in (1 + floor, 2): see entmax_alpha_per_head
            u = (self.entmax_alpha - ALPHA_MIN - LEARNED_ALPHA_FLOOR) / (1.0 - LEARNED_ALPHA_FLOOR)
            u = min(max(u, 1e-3), 1.0 - 1e-3)
            self.entmax_alpha_logit = torch.nn.Parameter(torch.full((num_heads,), math.log(u / (1 - u))))
        else:
            self.entmax_alpha_logit = None
        if entmax_alpha_start is not None:
            # the sparsity schedule's current alpha, saved with the model so a checkpoint is
            # evaluated with the alpha it was trained to (set_scheduled_alpha moves it)
            self.register_buffer("entmax_alpha_scheduled", torch.tensor(float(entmax_alpha_start)))
        else:
            self.entmax_alpha_scheduled = None
        self.register_buffer("head_gates", torch.ones(num_heads), persistent=False)
        self.register_buffer("uniform_heads", torch.zeros(num_heads, dtype=torch.bool), persistent=False)
        self._gated = False
        self._any_uniform = False
        self.capture_attention = False
        self.last_attention = None
        self.density = None
        self._keep_mask_fn = None

    # ----- hooks -------------------------------------------------------------------------
    def set_head_gates(self, gates):
        """Per-head output multipliers; all ones restores the intact layer."""
        gates = torch.as_tensor(gates, dtype=self.head_gates.dtype, device=self.head_gates.device)
        if gates.shape != self.head_gates.shape:
            raise ValueError(f"head gates must have shape {tuple(self.head_gates.shape)}, got {tuple(gates.shape)}")
        self.head_gates.copy_(gates)
        self._gated = bool((gates != 1).any())

    def set_uniform_heads(self, heads):
        """Replace these heads' attention by uniform weights over the non-padded keys."""
        mask = torch.zeros_like(self.uniform_heads)
        for h in heads:
            if not 0 <= int(h) < self.num_heads:
                raise ValueError(f"head index {h} out of range [0, {self.num_heads})")
            mask[int(h)] = True
        self.uniform_heads.copy_(mask)
        self._any_uniform = bool(mask.any())

    def set_keep_mask_fn(self, fn):
        """fn(tgt_len, src_len) -> keep mask of shape (heads or 1, tgt_len, src_len), or None.

        Kept outside the module registry so a mask shared by all layers is stored once.
        """
        self.__dict__["_keep_mask_fn"] = fn

    def set_scheduled_alpha(self, alpha):
        """The sparsity schedule's alpha for the coming updates (entmax_bisect only)."""
        self.entmax_alpha_scheduled.fill_(float(alpha))

    def _apply(self, fn, *args, **kwargs):
        """Casts of the model (--fp16 / --bf16: model.half()) leave the schedule's alpha in float32:
        in bf16 1.05 would be 1.047 and the schedule would move in steps of 0.0078."""
        alpha = self._buffers.get("entmax_alpha_scheduled")
        out = super()._apply(fn, *args, **kwargs)
        if alpha is not None:
            moved = self._buffers["entmax_alpha_scheduled"]
            self._buffers["entmax_alpha_scheduled"] = alpha.to(device=moved.device, dtype=torch.float32)
        return out

    def entmax_alpha_per_head(self):
        if self.entmax_alpha_scheduled is not None:
            return self.entmax_alpha_scheduled.float().expand(self.num_heads)
        if self.entmax_alpha_logit is None:
            return torch.full((self.num_heads,), self.entmax_alpha)
        # in float32 whatever the parameters' dtype: under --fp16/--bf16 1 + sigmoid(logit) in half
        # precision rounds to exactly 1 (entmax is undefined there); the floor keeps alpha > 1
        # in float32 too, however negative the logit gets
        return (
            ALPHA_MIN
            + LEARNED_ALPHA_FLOOR
            + (1.0 - LEARNED_ALPHA_FLOOR) * torch.sigmoid(self.entmax_alpha_logit.float())
        )

    # ----- forward -----------------------------------------------------------------------
    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        incremental_state=None,
        need_weights=True,
        static_kv=False,
        attn_mask=None,
        before_softmax=False,
        need_head_weights=False,
    ):
        self.density = None
        keep = None
        if self._keep_mask_fn is not None:
            keep = self._keep_mask_fn(query.size(0), key.size(0) if key is not None else query.size(0))
        stock = (
            self.normalizer_name == "softmax"
            and keep is None
            and not (self._gated or self._any_uniform or self.capture_attention)
        )
        if stock or incremental_state is not None or static_kv or before_softmax or not self.self_attention:
            if not stock:
                raise NotImplementedError(
                    "sparse normalisers, masks and head hooks are implemented for encoder "
                    "self-attention only (no incremental state, static kv or before_softmax)"
                )
            return super().forward(
                query,
                key,
                value,
                key_padding_mask,
                incremental_state,
                need_weights,
                static_kv,
                attn_mask,
                before_softmax,
                need_head_weights,
            )
        return self._sparse_forward(
            query, key_padding_mask, attn_mask, keep, need_weights or need_head_weights, need_head_weights
        )

    def _split_heads(self, x, length, bsz):
        return x.view(length, bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    def _sparse_forward(self, x, key_padding_mask, attn_mask, keep, need_weights, need_head_weights):
        tgt_len, bsz, embed_dim = x.size()
        q = self._split_heads(self.q_proj(x), tgt_len, bsz)
        k = self._split_heads(self.k_proj(x), tgt_len, bsz)
        v = self._split_heads(self.v_proj(x), tgt_len, bsz)
        pad = key_padding_mask.bool() if key_padding_mask is not None else None

        use_fused = (
            self.normalizer_name == "softmax"
            and not (need_weights or self._any_uniform or self.capture_attention)
            and (keep is None or keep.dtype == torch.bool)
        )
        gpu_out = self._gpu_attention(q, k, v, pad, attn_mask, keep, need_weights)
        if gpu_out is not None:
            out, probs = gpu_out, None
        elif use_fused:
            allowed, empty = _combine_bool_masks(keep, pad, attn_mask)
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=allowed,
                dropout_p=self.dropout_module.p if self.training else 0.0,
                scale=self.scaling,
            )
            if empty is not None:  # a row with no allowed key attends to nothing, as on every other path
                out = out.masked_fill(empty, 0.0)
            probs = None
        else:
            scores = torch.matmul(q * self.scaling, k.transpose(-1, -2))
            if attn_mask is not None:
                scores = (
                    scores.masked_fill(attn_mask, float("-inf"))
                    if attn_mask.dtype == torch.bool
                    else scores + attn_mask
                )
            if pad is not None:
                scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
            probs = self._normalise_with_mask(scores, keep)
            if self._any_uniform:
                probs = torch.where(self.uniform_heads.view(1, -1, 1, 1), _uniform_over_keys(pad, probs), probs)
            if self.capture_attention:
                self.last_attention = probs.detach()
            if self._records_density():
                self.density = attention_density_counts(support_sizes(probs), pad)
            out = torch.matmul(self.dropout_module(probs).type_as(v), v)
        if self._gated:
            out = out * self.head_gates.view(1, -1, 1, 1).to(out.dtype)
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim))
        weights = None
        if need_weights and probs is not None:
            weights = probs.transpose(0, 1)  # fairseq's per-head layout: heads x batch x tgt x src
            if not need_head_weights:
                weights = weights.mean(dim=0)
        return out, weights

    def _gpu_attention(self, q, k, v, pad, attn_mask, keep, need_weights):
        """The output from fairseq_sparse.kernels on CUDA when nothing needs the probabilities, else None.

        Sparse normalisers: the fused Triton attention (padding, bool keep mask run block-sparse,
        dropout, learned alpha). Softmax with a bool keep mask and no dropout: FlexAttention,
        block-sparse. Everything else (SDPA without a mask, learned DAM samples, captured maps,
        CPU) stays on the paths below; there a DAM sample's attention takes the Triton row kernel on
        CUDA (_normalise), with no host sync.
        """
        if need_weights or self._any_uniform or self.capture_attention or attn_mask is not None:
            return None
        if keep is not None and keep.dtype != torch.bool:
            return None  # a learned DAM sample: its mask gradient comes from masked_normalize
        dropout_p = self.dropout_module.p if self.training else 0.0
        if self.normalizer_name == "softmax":
            if not q.is_cuda or keep is None or dropout_p > 0 or not flex_available():
                return None
            return flex_softmax_attention(q, k, v, keep, pad, scale=self.scaling)
        if not can_run(q):  # CUDA (or the Triton interpreter, TRITON_INTERPRET=1, in tests)
            return None
        alpha = self.entmax_alpha_per_head().to(q.device) if self.normalizer_name == "entmax_bisect" else 1.5
        out, stats = sparse_attention(
            q,
            k,
            v,
            self.normalizer_name,
            scale=self.scaling,
            lam=self.sparsegen_lambda,
            alpha=alpha,
            key_padding_mask=pad,
            keep=keep,
            dropout_p=dropout_p,
            n_iter=self.entmax_n_iter,
            return_stats=True,
        )
        if self._records_density():
            self.density = attention_density_counts(stats["support"], pad)
        return out

    def _normalise(self, scores):
        kernel = can_run(scores)  # Triton on CUDA: no host sync in the threshold search
        if self.normalizer_name == "entmax_bisect":
            alpha = self.entmax_alpha_per_head().to(device=scores.device, dtype=torch.float32)
            if kernel:
                return kernel_normalize(
                    scores, "entmax_bisect", alpha=alpha.view(1, -1, 1, 1), n_iter=self.entmax_n_iter
                )
            return entmax_bisect(scores, alpha.view(1, -1, 1, 1), dim=-1, n_iter=self.entmax_n_iter)
        if kernel and SPECS[self.normalizer_name].mode is not None:  # a normaliser with Triton kernels
            return kernel_normalize(scores, self.normalizer_name, lam=self.sparsegen_lambda)
        return self._normalize(scores, dim=-1)

    def _normalise_with_mask(self, scores, keep):
        if keep is None:
            return self._normalise(scores)
        if keep.dtype == torch.bool:
            return self._normalise(scores.masked_fill(~keep, float("-inf")))
        bias = getattr(self._keep_mask_fn, "mask_bias", None)
        if bias is not None:  # the DAM's additive form (the authors' code): scores + (1 - M) * c
            return self._normalise(scores + (1.0 - keep) * bias)
        # A 0/1 float mask with a straight-through gradient (the learned DAM): the value is the
        # normaliser over the kept keys (on CUDA the Triton row kernel, no host sync); the mask
        # gradient, which also reaches dropped keys, is added by with_mask_gradient.
        probs = self._normalise(scores.masked_fill(keep.detach() <= 0.5, float("-inf")))
        alpha = self.entmax_alpha
        if self.normalizer_name == "entmax_bisect":
            alpha = self.entmax_alpha_per_head().to(device=scores.device, dtype=torch.float32).view(1, -1, 1, 1)
        return with_mask_gradient(probs, scores, keep, self.normalizer_name, lam=self.sparsegen_lambda, alpha=alpha)

    def _records_density(self):
        """Counts are taken in training with a sparse normaliser (softmax has no zeros)."""
        return self.training and self.normalizer_name != "softmax"


def _combine_bool_masks(keep, pad, attn_mask):
    """(SDPA mask, empty rows): the mask is boolean 'may attend' (True = take part), or additive
    float if attn_mask is float; empty marks (broadcastable to B, H, T, 1) the rows with no
    allowed key, or is None when there can be none.

    The masked-row rule of the whole plugin: a row whose keys are all masked attends to nothing,
    its output is 0 (the module's own path and masked_normalize give it all-zero probabilities).
    Fused kernels disagree on such rows (some give NaN, which 0 * NaN would carry into real
    tokens), so the kernel gets the diagonal for them and the caller zeroes their output.
    """
    if keep is not None:
        allowed = allowed_mask(keep, pad)  # keep & real keys (masks/layout.py)
    else:
        allowed = None if pad is None else ~pad[:, None, None, :]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        allowed = ~attn_mask if allowed is None else allowed & ~attn_mask
    elif attn_mask is not None:
        allowed = torch.isfinite(attn_mask) if allowed is None else allowed & torch.isfinite(attn_mask)
    if allowed is None or (keep is None and attn_mask is None):
        return allowed, None  # padding alone leaves every row its real keys
    empty = ~allowed.any(dim=-1, keepdim=True)
    allowed = allowed | (empty & torch.eye(allowed.size(-2), allowed.size(-1), dtype=torch.bool, device=allowed.device))
    if attn_mask is None or attn_mask.dtype == torch.bool:
        return allowed, empty
    finite = attn_mask.masked_fill(~torch.isfinite(attn_mask), 0.0)  # the re-enabled diagonal gets 0
    return finite.masked_fill(~allowed, float("-inf")), empty


def _uniform_over_keys(pad, like):
    """1 / L over each sequence's non-padded keys, shaped to broadcast against `like`."""
    if pad is None:
        return torch.full_like(like[:, :1, :1, :], 1.0 / like.size(-1))
    real = (~pad).to(like.dtype)
    return (real / real.sum(dim=-1, keepdim=True).clamp(min=1))[:, None, None, :]
