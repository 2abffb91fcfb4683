"""The sparse-attention options of sparse_roberta: declared once (argparse, as fairseq's RoBERTa),
given their defaults, and checked, each error naming the bad value."""
import math

from fairseq.utils import safe_getattr

from ..masks.dam import FORMS as DAM_FORMS
from ..masks.dam import STRUCTURES as DAM_STRUCTURES
from ..modules.encoder_attention_mask import MASK_CHOICES
from ..modules.sparse_multihead_attention import validate_normalizer_options
from ..normalizers import NORMALIZERS

# The DAM settings that learned a mask on real text in 80 CPU updates from a pre-trained model
# (MiniLM, lr 3e-4; examples/sparsebert/README.md has the runs that chose them).
DAM_DEFAULTS = {
    "dam_form": "product",
    "dam_tau": 1.0,
    "dam_tau_end": None,
    "dam_tau_anneal_steps": 0,
}
# Per form: the start and the scale of the logits. additive is the authors' code: logits
# 1e-3 * N(0, 1) (keep probability 1/2), no scale; product starts dense and moves 500x faster.
DAM_FORM_DEFAULTS = {
    "product": {"dam_init": 1.0, "dam_logit_scale": 500.0},
    "additive": {"dam_init": 0.0, "dam_logit_scale": 1.0},
}


def add_sparse_attention_args(parser):
    """The plugin's options, added to RoBERTa's own (every one defaults to None: fill_sparse_defaults decides)."""
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
    group.add_argument("--dam-form", choices=DAM_FORMS,
                       help="how the sampled mask M enters attention: product = M exp(e) / sum M exp(e) (the paper's "
                            "formula, default), additive = scores + (1 - M) * -1e4 (the authors' code)")
    group.add_argument("--dam-init", type=float, metavar="A",
                       help="initial mask logit; > 0 starts dense (default: 1 with the product form, 0 with additive)")
    group.add_argument("--dam-logit-scale", type=float, metavar="S",
                       help="logit = S x parameter: the logits' learning rate as a multiple of --lr under "
                            "Adam (default: 500 with the product form, 1 with additive); stored with the checkpoint")


def fill_sparse_defaults(args):
    """Defaults for the options a command line left unset (architecture functions call this)."""
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
    if args.dam_form not in DAM_FORM_DEFAULTS:
        raise ValueError(f"--dam-form must be one of {DAM_FORMS}, got {args.dam_form!r}")
    for name, default in DAM_FORM_DEFAULTS[args.dam_form].items():
        value = safe_getattr(args, name, None)
        setattr(args, name, default if value is None else value)
    _check_dam_options(args)  # at architecture time, as fairseq fills defaults


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


def check_sparse_options(args):
    """Every sparse-attention option together, once defaults are filled (build time)."""
    validate_normalizer_options(args.attn_normalizer, args.sparsegen_lambda, args.entmax_alpha)
    if args.learn_entmax_alpha and args.attn_normalizer != "entmax_bisect":
        raise ValueError(f"--learn-entmax-alpha needs --attn-normalizer entmax_bisect, got {args.attn_normalizer!r}")
    _check_sparsity_schedule(args)
    if not args.layer_norm_eps > 0:
        raise ValueError(f"--layer-norm-eps must be > 0, got {args.layer_norm_eps}")
    if args.segment_embeddings < 0:
        raise ValueError(f"--segment-embeddings must be >= 0 (0 = none), got {args.segment_embeddings}")
