"""SparseBERT's Differentiable Attention Mask (DAM): learnable keep/drop logits per head.

Training draws M = hard(gumbel_sigmoid(logit)): the forward pass sees an exact 0/1 mask, the
backward pass the gradient of the soft sample sigmoid((logit + G1 - G2) / tau) (straight
through). Evaluation uses the deterministic M = 1[sigmoid(logit) > 0.5] = 1[logit > 0].
(The paper writes the mask logits as alpha; here alpha is only ever entmax's alpha.)

  structured:    one logit per (head, distance |i - j|): M_h[i, j] = m_h[|i - j|], a symmetric
                 band (Toeplitz) mask, as in the authors' code (they parameterise each entry by
                 two logits keep/drop; the logit here is their difference).
  unstructured:  one logit per (head, i, j), symmetrised: the upper triangle (diagonal
                 included) is used for both (i, j) and (j, i), for the logits and the noise.

The parameter is `dam_logits`, shape (layers, heads, max_positions) or (layers, heads,
max_positions, max_positions); layers = 1 means one mask shared by all layers (the authors'
setting). It carries `param_group = "dam"` so an optimiser can give it weight decay 0.

The logit is logit_scale * dam_logits (`mask_logits()`). Adam moves every parameter by about its learning
rate per update whatever the gradient's size, so the scale is the logits' learning rate as a
multiple of the model's, under any Adam (plain `--optimizer adam` included): at the model's
1e-3 a logit would move by 0.1 in 100 updates and never leave the neighbourhood of its init.
A positive scale never changes the sign, so the binarised mask 1[logit > 0] = 1[dam_logits > 0].

How the sample enters attention (`form`; the forward values agree, the mask's gradient differs):
  product:   A = M exp(e) / sum_l M_l exp(e_l), the paper's formula (masks/masked_normalize.py):
             a dropped key gets the gradient of the weight it would have if switched on.
  additive:  softmax(e + (1 - M) c) with c = -1e4, the authors' code: a kept entry's gradient
             is |c| times its score's, a dropped one's exp(-1e4) = 0. c is finite in fp16
             (max 65504) and e + c underflows exp in every precision, so it is safe there too.
             A sample that keeps no key of a row gives that row the plain softmax (in training;
             evaluation's bool mask gives it nothing, as the product form always does).
The form and the logit scale are buffers (`dam_form`, `dam_logit_scale`): a checkpoint alone
says how its logits are read, and loading it into a module built otherwise is refused.
"""

import logging

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

STRUCTURES = ("structured", "unstructured")
FORMS = ("product", "additive")
ADDITIVE_BIAS = -1e4  # the authors' c in scores + (1 - M) * c


def logistic_noise(shape, device=None, dtype=torch.float32, generator=None, eps=1e-6):
    """G1 - G2 for two independent Gumbel(0, 1) draws: a standard logistic sample."""
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator).clamp_(eps, 1.0 - eps)
    return torch.log(u) - torch.log1p(-u)


def gumbel_sigmoid(logits, tau=1.0, hard=True, noise=None):
    """sigmoid((logits + G1 - G2) / tau); hard=True returns exact 0/1 with the soft gradient."""
    if noise is None:
        noise = logistic_noise(logits.shape, device=logits.device, dtype=logits.dtype)
    perturbed = logits + noise
    soft = torch.sigmoid(perturbed / tau)
    if not hard:
        return soft
    # soft - soft.detach() is exactly 0, so the value is exactly the hard 0/1 sample.
    return (perturbed > 0).to(soft.dtype) + (soft - soft.detach())


def _symmetric(x):
    """Upper triangle (diagonal included) mirrored onto the lower one, over the last two dims."""
    return torch.triu(x) + torch.triu(x, diagonal=1).transpose(-1, -2)


def _distances(length, device):
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs()


def expand_logits(logits, length):
    """(L, H, n, n) per-entry logits for `length` from the stored parameter.

    structured (L, H, P) -> Toeplitz band; unstructured (L, H, P, P) -> symmetrised block.
    """
    if logits.dim() == 3:
        return logits[..., :length][..., _distances(length, logits.device)]
    if logits.dim() == 4:
        return _symmetric(logits[..., :length, :length])
    raise ValueError(
        f"DAM logits must be (layers, heads, positions) or (layers, heads, positions, positions), "
        f"got shape {tuple(logits.shape)}"
    )


def _check_length(length, max_positions):
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= max_positions:
        raise ValueError(f"DAM mask length must be an integer in [1, {max_positions}], got {length!r}")


def binarize_dam_logits(logits, length=None, no_diagonal=False):
    """Deterministic keep mask 1[logit > 0] as bool (L, H, n, n); n defaults to all positions.

    `logits` may be mask_logits() or dam_logits: a positive logit scale does not change the sign.
    """
    positions = logits.shape[-1]
    length = positions if length is None else length
    _check_length(length, positions)
    with torch.no_grad():
        keep = expand_logits(logits.detach(), length) > 0
        if no_diagonal and length > 0:
            keep = keep & ~torch.eye(length, dtype=torch.bool, device=keep.device)
    return keep


def mask_densities(keep):
    """{'density', 'density_per_layer', 'density_per_head'} of a (L, H, n, n) mask (mean of M)."""
    m = keep.float()
    return {
        "density": round(float(m.mean()), 6),
        "density_per_layer": [round(float(v), 6) for v in m.mean(dim=(1, 2, 3))],
        "density_per_head": [[round(float(v), 6) for v in row] for row in m.mean(dim=(2, 3))],
    }


class DifferentiableAttentionMask(nn.Module):
    """Learnable attention mask (SparseBERT's DAM) for `num_heads` heads and up to `max_positions`.

    Call `dam(length)` once per encoder forward; it returns the (num_layers, heads, n, n) float
    0/1 mask (num_layers = 1 when shared) and remembers it for `l1_penalty`, `densities` and
    the per-layer hooks made by `layer_mask_fn`.

    tau: Gumbel-sigmoid temperature (the authors keep 1). tau_end / tau_anneal_steps: anneal
    geometrically from tau to tau_end over that many updates (set_num_updates, called by
    fairseq each update); tau_end=None keeps tau constant.
    init_mean / init_std: the logits start as init_mean + init_std * N(0, 1) (init_mean > 0 starts
    dense: keep probability sigmoid(init_mean)). logit_scale: logit = logit_scale * dam_logits
    (module docstring). `num_updates` follows set_num_updates (the criterion's penalty warm-up
    reads it). form: "product" or "additive" (module docstring).
    """

    def __init__(
        self,
        num_heads,
        max_positions,
        structure="structured",
        num_layers=1,
        no_diagonal=False,
        tau=1.0,
        init_std=1e-3,
        tau_end=None,
        tau_anneal_steps=0,
        init_mean=0.0,
        logit_scale=1.0,
        form="product",
    ):
        super().__init__()
        for name, value in (("num_heads", num_heads), ("max_positions", max_positions), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DAM {name} must be a positive integer, got {value!r}")
        if structure not in STRUCTURES:
            raise ValueError(f"DAM structure must be one of {STRUCTURES}, got {structure!r}")
        if not float(tau) > 0:
            raise ValueError(f"DAM tau must be > 0, got {tau}")
        if tau_end is not None and not float(tau_end) > 0:
            raise ValueError(f"DAM tau_end must be > 0, got {tau_end}")
        if isinstance(tau_anneal_steps, bool) or not isinstance(tau_anneal_steps, int) or tau_anneal_steps < 0:
            raise ValueError(f"DAM tau_anneal_steps must be a non-negative integer, got {tau_anneal_steps!r}")
        if not float(init_std) >= 0:
            raise ValueError(f"DAM init_std must be >= 0, got {init_std}")
        if not np.isfinite(float(init_mean)):
            raise ValueError(f"DAM init_mean must be a finite number, got {init_mean}")
        if not (np.isfinite(float(logit_scale)) and float(logit_scale) > 0):
            raise ValueError(f"DAM logit_scale must be a finite number > 0, got {logit_scale}")
        if form not in FORMS:
            raise ValueError(f"DAM form must be one of {FORMS}, got {form!r}")
        self.num_heads = num_heads
        self.max_positions = max_positions
        self.structure = structure
        self.num_layers = num_layers
        self.no_diagonal = bool(no_diagonal)
        self.tau_start = float(tau)
        self.tau_end = None if tau_end is None else float(tau_end)
        self.tau_anneal_steps = tau_anneal_steps
        self.tau = self.tau_start
        self.init_std = float(init_std)
        self.init_mean = float(init_mean)
        self.logit_scale = float(logit_scale)
        self.form = form
        self.num_updates = 0
        shape = (num_layers, num_heads, max_positions)
        if structure == "unstructured":
            shape = shape + (max_positions,)
        self.dam_logits = nn.Parameter(torch.empty(shape))
        self.dam_logits.param_group = "dam"
        # Stored so a checkpoint alone says whether the (never trained) diagonal is dropped.
        self.register_buffer("dam_no_diagonal", torch.tensor(self.no_diagonal))
        self.register_buffer("dam_form", torch.tensor(FORMS.index(form)))
        self.register_buffer("dam_logit_scale", torch.tensor(self.logit_scale))
        self.last_mask = None
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.dam_logits.normal_(self.init_mean, self.init_std).div_(self.logit_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """The checkpoint's `dam_no_diagonal` decides whether the diagonal is held at 0 from now on;
        a checkpoint whose form or logit scale differs from this module's is refused (the same
        logits would mean other keep probabilities, or reach attention another way)."""
        stored_form, stored_scale = state_dict.get(prefix + "dam_form"), state_dict.get(prefix + "dam_logit_scale")
        if stored_form is not None and stored_scale is not None:
            stored_form, stored_scale = FORMS[int(stored_form)], float(stored_scale)
            if stored_form != self.form or abs(stored_scale - self.logit_scale) > 1e-6 * self.logit_scale:
                raise ValueError(
                    f"the checkpoint's DAM was trained with form {stored_form!r} and logit scale {stored_scale:g}; "
                    f"this model was built with form {self.form!r} and logit scale {self.logit_scale:g}. Build it "
                    f"with the checkpoint's values (--dam-form {stored_form} --dam-logit-scale {stored_scale:g})"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        stored = bool(self.dam_no_diagonal)
        if stored != self.no_diagonal:
            logger.warning(
                "DAM: the checkpoint was trained with no_diagonal=%s; using it (this run asked for %s)",
                stored,
                self.no_diagonal,
            )
            self.no_diagonal = stored

    def mask_logits(self):
        """The mask logits, logit_scale * dam_logits (keep probability sigmoid(logit))."""
        return self.dam_logits * self.logit_scale if self.logit_scale != 1.0 else self.dam_logits

    def extra_repr(self):
        tau = (
            f"tau={self.tau_start}"
            if self.tau_end is None
            else (f"tau={self.tau_start}->{self.tau_end} over {self.tau_anneal_steps} updates")
        )
        return (
            f"heads={self.num_heads}, max_positions={self.max_positions}, structure={self.structure}, "
            f"layers={self.num_layers}, no_diagonal={self.no_diagonal}, {tau}, "
            f"init={self.init_mean}+-{self.init_std}, logit_scale={self.logit_scale}, form={self.form}"
        )

    def set_num_updates(self, num_updates):
        """Temperature for this update: geometric from tau to tau_end over tau_anneal_steps."""
        self.num_updates = num_updates
        if self.tau_end is None:
            return
        frac = 1.0 if self.tau_anneal_steps == 0 else min(1.0, max(0, num_updates) / self.tau_anneal_steps)
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** frac

    def _hide_diagonal(self, mask, length):
        if not self.no_diagonal:
            return mask
        return mask.masked_fill(torch.eye(length, dtype=torch.bool, device=mask.device), 0.0)

    def forward(self, length, layer=None):
        """0/1 float mask for `length` positions: (num_layers, heads, n, n), or layer `layer`'s (heads, n, n).

        Training: a fresh straight-through Gumbel-sigmoid sample on every call. Evaluation:
        1[logit > 0], no gradient.
        """
        _check_length(length, self.max_positions)
        logits = self.mask_logits()
        if self.training:
            if self.structure == "structured":
                band = gumbel_sigmoid(logits[..., :length], self.tau)
                mask = band[..., _distances(length, logits.device)]
            else:
                noise = _symmetric(logistic_noise(logits.shape[:-2] + (length, length), logits.device, logits.dtype))
                mask = gumbel_sigmoid(expand_logits(logits, length), self.tau, noise=noise)
        else:
            with torch.no_grad():
                mask = (expand_logits(logits, length) > 0).to(logits.dtype)
        mask = self._hide_diagonal(mask, length)
        self.last_mask = mask
        if layer is None:
            return mask
        return mask[self._layer_index(layer)]

    def _layer_index(self, layer):
        if self.num_layers == 1:
            return 0
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"DAM has {self.num_layers} per-layer masks, got layer {layer}")
        return layer

    def layer_mask_fn(self, layer):
        """A keep-mask hook for layer `layer`: fn(tgt_len, src_len) -> its slice of the last mask.

        Training gives the float straight-through mask (gradient to the logits); evaluation a
        bool mask, so attention can take the fused path. The mask must have been drawn for
        this length by calling the module at the start of the encoder's forward. With the
        additive form the hook carries `mask_bias` = c: attention adds (1 - M) c to its scores.
        """
        index = self._layer_index(layer)

        def keep_mask(tgt_len, src_len):
            mask = self.last_mask
            if mask is None or mask.shape[-1] != tgt_len or tgt_len != src_len:
                drawn = None if mask is None else mask.shape[-1]
                raise RuntimeError(
                    f"DAM: no mask drawn for {tgt_len} x {src_len} (last drawn for {drawn}); "
                    "call the DAM module with the batch length before the layers run"
                )
            mask = mask[index]
            return mask if self.training else mask > 0.5

        if self.form == "additive":
            keep_mask.mask_bias = ADDITIVE_BIAS
        return keep_mask

    def keep_mask(self, length):
        """Deterministic bool mask (num_layers, heads, n, n) = 1[logit > 0], diagonal per no_diagonal."""
        return binarize_dam_logits(self.dam_logits, length, self.no_diagonal)

    def num_free_entries(self, length):
        """Mask entries the logits decide: all n*n, minus the diagonal with no_diagonal."""
        per_head = length * length - (length if self.no_diagonal else 0)
        return self.num_layers * self.num_heads * per_head

    def l1_penalty(self, normalize=False):
        """||M||_1 of the mask drawn by the last forward (the sampled 0/1 mask, as the authors use).

        Its gradient reaches the logits through the straight-through sample. normalize=True
        divides by the number of free entries, i.e. gives the kept fraction, independent of
        the sequence length and of the number of heads and layers.
        """
        if self.last_mask is None:
            raise RuntimeError("DAM: l1_penalty needs a mask; call the module first")
        total = self.last_mask.sum()
        if normalize:
            total = total / max(1, self.num_free_entries(self.last_mask.shape[-1]))
        return total

    def densities(self):
        """Kept fraction of the last mask per layer (tensor (num_layers,), detached): mean of M."""
        if self.last_mask is None:
            raise RuntimeError("DAM: densities needs a mask; call the module first")
        return self.last_mask.detach().float().mean(dim=(1, 2, 3))

    def export(self, length=None):
        """Binarised mask as numpy bool: (heads, n, n) when shared, else (layers, heads, n, n)."""
        return as_numpy_mask(self.keep_mask(self.max_positions if length is None else length))

    def export_densities(self, length=None):
        return mask_densities(self.keep_mask(self.max_positions if length is None else length))


def as_numpy_mask(keep):
    """(L, H, n, n) bool tensor -> numpy, dropping the layer axis when there is one layer."""
    array = keep.cpu().numpy().astype(np.bool_)
    return array[0] if array.shape[0] == 1 else array
