"""sparse_roberta: RoBERTa/BERT whose self-attention normaliser is a run option (SSAF).

Only fairseq's factory hooks are overridden (build_encoder -> build_encoder_layer ->
build_self_attention), as fairseq's linformer example does, so every parameter keeps its
stock RoBERTa name and a `roberta_base` checkpoint restores into `sparse_roberta_base` as it is.
"""
import argparse
import logging
import math
import os

import torch
from omegaconf import OmegaConf
from fairseq.distributed import fsdp_wrap
from fairseq.logging import metrics
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaEncoder, RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_arch
from fairseq.models.roberta.model import roberta_large_architecture
from fairseq.models.transformer import TransformerConfig, TransformerEncoder
from fairseq.modules import TransformerEncoderLayer
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from fairseq.utils import safe_getattr, safe_hasattr

from ..apex_fallbacks import apply_apex_fallbacks
from ..masks.dam import STRUCTURES as DAM_STRUCTURES
from ..modules.encoder_attention_mask import MASK_CHOICES, EncoderAttentionMask
from ..modules.sparse_multihead_attention import SparseMultiheadAttention, validate_normalizer_options
from ..normalizers import NORMALIZERS

logger = logging.getLogger(__name__)

# Substrings of state-dict keys that exist only in this plugin. A checkpoint without them (a
# stock RoBERTa, or one trained before a feature was switched on) gets their initial values.
PLUGIN_STATE_MARKERS = ["entmax_alpha_logit", "entmax_alpha_scheduled", "dam_logits", "dam_no_diagonal"]
FROZEN_MASK_KEY = "frozen_attn_mask"
SEGMENT_KEY = "encoder.sentence_encoder.segment_embeddings.weight"
MASK_STATE_MARKERS = ["dam_logits", FROZEN_MASK_KEY]  # state that decides which keys a query sees


def add_sparse_attention_args(parser):
    group = parser.add_argument_group("sparse attention")
    group.add_argument("--attn-normalizer", choices=sorted(NORMALIZERS),
                       help="normaliser of every encoder self-attention (default: softmax)")
    group.add_argument("--sparsegen-lambda", type=float, metavar="LAM",
                       help="sparsegen-lin lambda < 1: sparsemax(z / (1 - lambda)) (default: 0)")
    group.add_argument("--entmax-alpha", type=float, metavar="A",
                       help="alpha in (1, 2] for entmax_bisect; start value when learned (default: 1.5)")
    group.add_argument("--learn-entmax-alpha", action="store_true",
                       help="learn one entmax alpha per head, kept in (1, 2)")
    group.add_argument("--entmax-n-iter", type=int, metavar="N",
                       help="cap on entmax_bisect threshold iterations (default: 50)")
    group.add_argument("--sparsity-schedule-updates", type=int, metavar="N",
                       help="SSAF sparsity schedule: anneal the entmax_bisect alpha linearly from "
                            "--sparsity-schedule-start-alpha (near 1: softmax-like) to --entmax-alpha over N updates "
                            "(default: 0 = no schedule)")
    group.add_argument("--sparsity-schedule-start-alpha", type=float, metavar="A",
                       help="alpha at update 0 of the sparsity schedule, in (1, 2] (default: 1.05)")
    group.add_argument("--layer-norm-eps", type=float, metavar="EPS",
                       help="LayerNorm epsilon (fairseq: 1e-5; converted BERT checkpoints: 1e-12)")
    group.add_argument("--segment-embeddings", type=int, metavar="N",
                       help="BERT token-type (segment) embeddings with N types, added to every token; "
                            "segment = number of </s> before the token, capped at N-1, so "
                            "<s> A </s> B </s> embeds A as type 0 and B as type 1 (default: 0 = none, as RoBERTa)")

    group = parser.add_argument_group("attention masks (SparseBERT)")
    group.add_argument("--attn-mask", choices=MASK_CHOICES,
                       help="which keys each query may attend to (default: none); dam = learned, file = frozen")
    group.add_argument("--attn-mask-file", metavar="MASK.npy",
                       help="frozen 0/1 mask for --attn-mask file: (n, n), (heads, n, n) or (layers, heads, n, n)")
    group.add_argument("--attn-mask-allow-empty", action="store_true",
                       help="accept a mask file that is all zero or has a query row with no key (an error otherwise)")
    for name, meta, text in (
        ("window", "W", "half-width of the local window (longformer, bigbird blocks, logsparse)"),
        ("stride", "S", "stride of the strided pattern"),
        ("block", "B", "block size (fixed, bigbird)"),
        ("summary", "C", "summary positions per block (fixed)"),
        ("global", "G", "number of global tokens at the start, [CLS] first (longformer, bigbird, star)"),
        ("random-blocks", "R", "random blocks per block row (bigbird)"),
        ("radius", "R", "neighbours on each side (star)"),
        ("base", "B", "exponent base (logsparse)"),
        ("seed", "S", "seed of the random blocks (bigbird)"),
    ):
        group.add_argument(f"--attn-mask-{name}", type=int, metavar=meta, help=text)
    group.add_argument("--dam-structure", choices=DAM_STRUCTURES,
                       help="structured: one logit per head and distance |i-j| (default); unstructured: per (i, j)")
    group.add_argument("--dam-share-layers", action="store_true", help="one learned mask for all layers (the authors' setting)")
    group.add_argument("--dam-no-diagonal", action="store_true", help="hold the diagonal of the learned mask at 0")
    group.add_argument("--dam-tau", type=float, metavar="T", help="Gumbel-sigmoid temperature (default 1)")
    group.add_argument("--dam-tau-end", type=float, metavar="T", help="anneal the temperature geometrically to this")
    group.add_argument("--dam-tau-anneal-steps", type=int, metavar="N", help="updates over which to anneal")
    group.add_argument("--dam-init", type=float, metavar="A",
                       help=f"initial mask logit; > 0 starts dense (default: {DAM_DEFAULTS['dam_init']})")
    group.add_argument("--dam-logit-scale", type=float, metavar="S",
                       help="logit = S x parameter: the logits' learning rate as a multiple of --lr under "
                            f"Adam (default: {DAM_DEFAULTS['dam_logit_scale']})")


@register_model("sparse_roberta")
class SparseRobertaModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        add_sparse_attention_args(parser)

    @classmethod
    def build_model(cls, args, task):
        apply_apex_fallbacks()  # before any LayerNorm exists; logs the LayerNorm/Adam fairseq will use
        if OmegaConf.is_config(args):
            # fairseq-hydra-train passes a DictConfig, from which fairseq's
            # TransformerConfig.from_namespace copies only its own fields: the sparse-attention
            # options would be lost. A flat namespace keeps every option.
            args = argparse.Namespace(**OmegaConf.to_container(args, resolve=True))
        base_architecture(args)
        validate_normalizer_options(args.attn_normalizer, args.sparsegen_lambda, args.entmax_alpha)
        if args.learn_entmax_alpha and args.attn_normalizer != "entmax_bisect":
            raise ValueError(f"--learn-entmax-alpha needs --attn-normalizer entmax_bisect, got {args.attn_normalizer!r}")
        _check_sparsity_schedule(args)
        if not args.layer_norm_eps > 0:
            raise ValueError(f"--layer-norm-eps must be > 0, got {args.layer_norm_eps}")
        if args.segment_embeddings < 0:
            raise ValueError(f"--segment-embeddings must be >= 0 (0 = none), got {args.segment_embeddings}")
        if not safe_hasattr(args, "max_positions"):
            if not safe_hasattr(args, "tokens_per_sample"):
                args.tokens_per_sample = task.max_positions()
            args.max_positions = args.tokens_per_sample
        return cls(args, SparseRobertaEncoder(args, task.source_dictionary))

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", bpe=None, **kwargs):
        """The hub interface. A directory with a WordPiece vocab.txt (a converted BERT) gets the
        plugin's offline bert_wordpiece BPE; otherwise pass bpe= ("gpt2" needs its encoder files)."""
        vocab = os.path.join(model_name_or_path, "vocab.txt")
        if bpe is None and os.path.isfile(vocab):
            bpe = "bert_wordpiece"
            kwargs.setdefault("bpe_vocab_file", os.path.abspath(vocab))
        return super().from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, bpe=bpe, **kwargs)

    def attention_modules(self):
        """The SparseMultiheadAttention of each layer, first layer first."""
        return [m for m in self.modules() if isinstance(m, SparseMultiheadAttention)]

    def extract_attention(self, src_tokens, **kwargs):
        """Per-layer attention probabilities, each (batch, heads, tgt, src), from one forward.

        Capturing routes softmax through the module's own path (the fused kernel returns no
        per-head maps); the flags are restored afterwards so later calls run fused again.
        """
        modules = self.attention_modules()
        previous = [m.capture_attention for m in modules]
        for m in modules:
            m.capture_attention = True
        try:
            self(src_tokens, features_only=True, **kwargs)
            return [m.last_attention for m in modules]
        finally:
            for m, flag in zip(modules, previous):
                m.capture_attention = flag
                m.last_attention = None

    def upgrade_state_dict_named(self, state_dict, name):
        self._complete_pooler_only_heads(state_dict, name)
        super().upgrade_state_dict_named(state_dict, name)
        prefix = name + "." if name else ""
        own = self.state_dict()
        segments = prefix + SEGMENT_KEY
        if segments in state_dict and SEGMENT_KEY not in own:
            raise ValueError(
                f"the checkpoint has segment (token-type) embeddings with {state_dict[segments].shape[0]} types "
                f"(a converted BERT) but this model was built without them: add --segment-embeddings "
                f"{state_dict[segments].shape[0]}"
            )
        masks = self.encoder.sentence_encoder.attn_masks
        for key in [k for k in state_dict if k.startswith(prefix)]:
            local = key[len(prefix):]
            if local.endswith(FROZEN_MASK_KEY) and local in own:
                if masks.frozen_attn_mask.numel() == 0:  # no --attn-mask-file: the checkpoint's mask
                    masks.load_frozen_mask(state_dict[key])
                else:  # a mask file given for this run wins over the one stored in the checkpoint
                    state_dict[key] = masks.frozen_attn_mask
            elif local not in own and any(m in local for m in PLUGIN_STATE_MARKERS + [FROZEN_MASK_KEY]):
                if any(m in local for m in MASK_STATE_MARKERS) and self.args.attn_mask == "none":
                    # the checkpoint's model attended through this mask; this one will attend to
                    # every key, which changes every layer's output: say so loudly
                    logger.warning(
                        "dropping %s from the checkpoint: this model has no attention mask (--attn-mask none), "
                        "so it attends densely where the checkpoint's model was masked. To keep the mask, "
                        "rebuild with %s", key,
                        "--attn-mask file (the checkpoint's own mask is used) or --attn-mask-file MASK.npy"
                        if FROZEN_MASK_KEY in local else "--attn-mask dam and the checkpoint's --dam-* options",
                    )
                else:
                    logger.info("dropping %s from the checkpoint: this model was built without it", key)
                del state_dict[key]
        for key, value in self.state_dict().items():  # e.g. the mask file's mask, a new DAM's logits
            if prefix + key not in state_dict and any(m in key for m in PLUGIN_STATE_MARKERS + [FROZEN_MASK_KEY]):
                state_dict[prefix + key] = value


    def _complete_pooler_only_heads(self, state_dict, name):
        """A classification head stored without its output layer (a converted BERT's pooler,
        fairseq-sparse-convert-bert --pooler-head) gets the output layer this model was built
        with, so the new layer follows the fine-tuning run's --seed and --num-classes; a model
        without that head drops the pooler, as fairseq drops any head it was not built with."""
        prefix = (name + "." if name else "") + "classification_heads."
        heads = {k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)}
        for head in sorted(heads):
            if prefix + head + ".out_proj.weight" in state_dict:
                continue
            if head in getattr(self, "classification_heads", {}):
                logger.info("classification head %s: pre-trained dense layer, output layer from this run's seed", head)
                for key, value in self.classification_heads[head].out_proj.state_dict().items():
                    state_dict[f"{prefix}{head}.out_proj.{key}"] = value
            else:
                for key in [k for k in state_dict if k.startswith(f"{prefix}{head}.")]:
                    del state_dict[key]


class SparseRobertaEncoder(RobertaEncoder):
    def __init__(self, args, dictionary):
        super().__init__(args, dictionary)
        eps = args.layer_norm_eps
        for module in self.modules():
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__ == "FusedLayerNorm":
                module.eps = eps

    def build_encoder(self, args, dictionary, embed_tokens):
        encoder = SparseTransformerEncoder(args, dictionary, embed_tokens)
        encoder.apply(init_bert_params)
        return encoder


class SparseTransformerEncoder(TransformerEncoder):
    def __init__(self, args, dictionary, embed_tokens):
        self._layers_built = 0
        super().__init__(args, dictionary, embed_tokens)
        self.sparsity_schedule = None
        if args.sparsity_schedule_updates:
            self.sparsity_schedule = LinearAlphaSchedule(
                args.sparsity_schedule_start_alpha, args.entmax_alpha, args.sparsity_schedule_updates)
        self.attn_masks = EncoderAttentionMask(args, args.encoder_layers, args.encoder_attention_heads, args.max_positions)
        for module in self.modules():
            if isinstance(module, SparseMultiheadAttention):
                module.set_keep_mask_fn(self.attn_masks.layer_keep_fn(module.layer_idx))
        # BERT's token-type embeddings (converted BERT checkpoints); stock RoBERTa has none
        self.segment_embeddings = None
        if args.segment_embeddings:
            self.segment_embeddings = torch.nn.Embedding(args.segment_embeddings, args.encoder_embed_dim)

    def forward(self, src_tokens, *args, **kwargs):
        self.attn_masks.prepare(src_tokens.size(1))
        return super().forward(src_tokens, *args, **kwargs)

    def forward_embedding(self, src_tokens, token_embedding=None):
        if self.segment_embeddings is not None:
            if token_embedding is None:
                token_embedding = self.embed_tokens(src_tokens)
            segments = segment_ids(src_tokens, self.dictionary.eos(), self.segment_embeddings.num_embeddings)
            # fairseq scales the token embedding by embed_scale (1 for RoBERTa) before adding positions
            token_embedding = token_embedding + self.segment_embeddings(segments) / self.embed_scale
        return super().forward_embedding(src_tokens, token_embedding)

    def set_num_updates(self, num_updates):
        """fairseq calls this every update (and with the restored count on resume); the DAM
        temperature and the sparsity schedule follow it."""
        super().set_num_updates(num_updates)
        if self.sparsity_schedule is not None:
            modules = [m for m in self.modules() if isinstance(m, SparseMultiheadAttention)]
            for module in modules:
                module.set_scheduled_alpha(self.sparsity_schedule(num_updates))
            # the alpha the coming update runs with, as the attention modules hold it
            metrics.log_scalar("entmax_alpha", float(modules[0].entmax_alpha_per_head()[0]), weight=0, round=4)
        if self.attn_masks.dam is not None:
            self.attn_masks.dam.set_num_updates(num_updates)

    def build_encoder_layer(self, args):
        layer = SparseTransformerEncoderLayer(args, layer_idx=self._layers_built)
        self._layers_built += 1
        cfg = TransformerConfig.from_namespace(args)
        # the same wrapping as fairseq's own build_encoder_layer keeps
        # --checkpoint-activations / --offload-activations and FSDP working
        if cfg.checkpoint_activations:
            layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
        min_params = 0 if cfg.checkpoint_activations else cfg.min_params_to_wrap
        return fsdp_wrap(layer, min_num_params=min_params)


def segment_ids(src_tokens, eos, num_segments):
    """BERT token types from the separators: the number of </s> ([SEP]) strictly before each
    token, capped at num_segments - 1. `<s> A </s> B </s>` gives 0 for <s>, A and the first
    </s>, 1 for B and the last </s>, exactly BERT's token_type_ids; padding after the last
    </s> gets the last type (its keys are masked, its outputs unused)."""
    is_eos = src_tokens.eq(eos).long()
    return (is_eos.cumsum(dim=-1) - is_eos).clamp_(max=num_segments - 1)


class LinearAlphaSchedule:
    """SSAF sparsity schedule: alpha-entmax's alpha moves linearly from `start` (near 1, where
    entmax is softmax) to `end` (1.5: entmax-1.5, 2: sparsemax) over `updates` updates, then
    stays at `end`, so fine-tuning of softmax-pre-trained weights starts from attention close
    to what they were trained with."""

    def __init__(self, start, end, updates):
        self.start, self.end, self.updates = float(start), float(end), int(updates)

    def __call__(self, num_updates):
        progress = min(max(num_updates, 0) / self.updates, 1.0)
        return self.start + (self.end - self.start) * progress


def _check_sparsity_schedule(args):
    if not args.sparsity_schedule_updates:
        return
    if args.sparsity_schedule_updates < 0:
        raise ValueError(f"--sparsity-schedule-updates must be >= 0 (0 = off), got {args.sparsity_schedule_updates}")
    if args.attn_normalizer != "entmax_bisect" or args.learn_entmax_alpha:
        raise ValueError("--sparsity-schedule-updates anneals the alpha of --attn-normalizer entmax_bisect "
                         f"(fixed alpha, no --learn-entmax-alpha), got --attn-normalizer {args.attn_normalizer}"
                         + (" --learn-entmax-alpha" if args.learn_entmax_alpha else ""))
    if not 1.0 < args.sparsity_schedule_start_alpha <= 2.0:
        raise ValueError(f"--sparsity-schedule-start-alpha must be in (1, 2], got {args.sparsity_schedule_start_alpha}")


class SparseTransformerEncoderLayer(TransformerEncoderLayer):
    def __init__(self, args, layer_idx=0):
        self.layer_idx = layer_idx
        super().__init__(args)

    def build_self_attention(self, embed_dim, cfg):
        return SparseMultiheadAttention(
            embed_dim,
            cfg.encoder.attention_heads,
            dropout=cfg.attention_dropout,
            self_attention=True,
            q_noise=self.quant_noise,
            qn_block_size=self.quant_noise_block_size,
            normalizer=cfg.attn_normalizer,
            sparsegen_lambda=cfg.sparsegen_lambda,
            entmax_alpha=cfg.entmax_alpha,
            learn_entmax_alpha=cfg.learn_entmax_alpha,
            entmax_n_iter=cfg.entmax_n_iter,
            layer_idx=self.layer_idx,
            entmax_alpha_start=cfg.sparsity_schedule_start_alpha if cfg.sparsity_schedule_updates else None,
        )


def _sparse_defaults(args):
    args.attn_normalizer = safe_getattr(args, "attn_normalizer", None) or "softmax"
    args.sparsegen_lambda = safe_getattr(args, "sparsegen_lambda", None)
    args.sparsegen_lambda = 0.0 if args.sparsegen_lambda is None else args.sparsegen_lambda
    args.entmax_alpha = safe_getattr(args, "entmax_alpha", None) or 1.5
    args.learn_entmax_alpha = bool(safe_getattr(args, "learn_entmax_alpha", False))
    args.entmax_n_iter = safe_getattr(args, "entmax_n_iter", None)
    args.sparsity_schedule_updates = safe_getattr(args, "sparsity_schedule_updates", None) or 0
    args.sparsity_schedule_start_alpha = safe_getattr(args, "sparsity_schedule_start_alpha", None) or 1.05
    args.layer_norm_eps = safe_getattr(args, "layer_norm_eps", None) or 1e-5
    args.segment_embeddings = safe_getattr(args, "segment_embeddings", None) or 0
    args.attn_mask = safe_getattr(args, "attn_mask", None) or "none"
    args.attn_mask_file = safe_getattr(args, "attn_mask_file", None)
    args.attn_mask_allow_empty = bool(safe_getattr(args, "attn_mask_allow_empty", False))
    args.dam_structure = safe_getattr(args, "dam_structure", None) or "structured"
    args.dam_share_layers = bool(safe_getattr(args, "dam_share_layers", False))
    args.dam_no_diagonal = bool(safe_getattr(args, "dam_no_diagonal", False))
    for name, default in DAM_DEFAULTS.items():
        value = safe_getattr(args, name, None)
        setattr(args, name, default if value is None else value)
    _check_dam_options(args)


# The DAM settings that learned a mask on real text in 80 CPU updates from a pre-trained model
# (MiniLM, lr 3e-4; examples/sparsebert/README.md has the runs that chose them).
DAM_DEFAULTS = {
    "dam_tau": 1.0,
    "dam_tau_end": None,
    "dam_tau_anneal_steps": 0,
    "dam_init": 1.0,
    "dam_logit_scale": 500.0,
}


def _check_dam_options(args):
    """Reject DAM option values that would be silently meaningless, naming the value."""
    for name in ("dam_tau", "dam_tau_end", "dam_logit_scale"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    if not math.isfinite(args.dam_init):
        raise ValueError(f"--dam-init must be a finite number, got {args.dam_init}")
    if args.dam_tau_anneal_steps < 0:
        raise ValueError(f"--dam-tau-anneal-steps must be >= 0, got {args.dam_tau_anneal_steps}")


@register_model_architecture("sparse_roberta", "sparse_roberta")
def base_architecture(args):
    _sparse_defaults(args)
    roberta_base_arch(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_base")
def sparse_roberta_base_architecture(args):
    base_architecture(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_large")
def sparse_roberta_large_architecture(args):
    _sparse_defaults(args)
    roberta_large_architecture(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_tiny")
def sparse_roberta_tiny_architecture(args):
    """2 layers x 64 dims x 4 heads: seconds per update on a CPU, for tests and demos."""
    args.encoder_layers = safe_getattr(args, "encoder_layers", 2)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 256)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 4)
    base_architecture(args)


@register_model_architecture("sparse_roberta", "sparsebert_base")
def sparsebert_base_architecture(args):
    """SparseBERT's searched encoder: diagonal-free DAM, structured, one mask for all layers."""
    _sparsebert_defaults(args)
    base_architecture(args)


@register_model_architecture("sparse_roberta", "sparsebert_tiny")
def sparsebert_tiny_architecture(args):
    _sparsebert_defaults(args)
    sparse_roberta_tiny_architecture(args)


def _sparsebert_defaults(args):
    """The paper's preset: a DAM shared by all layers, diagonal held at 0 (other masks: sparse_roberta)."""
    args.attn_mask = safe_getattr(args, "attn_mask", None) or "dam"
    args.dam_structure = safe_getattr(args, "dam_structure", None) or "structured"
    args.dam_share_layers = True
    args.dam_no_diagonal = True
