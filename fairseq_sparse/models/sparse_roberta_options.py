"""The options sparse_roberta adds to RoBERTa's, each declared once in OPTIONS (flag, default, help,
check): argparse, the defaults an old checkpoint gets, the checks and the README's option tables
(options_markdown; tests/test_model.py holds the README's equal) all come from it.

A new option is one Option(...) line in its group; give `check` a function (value, flag) that
raises ValueError naming the flag and the value. Options the attention module takes are checked
together by modules/sparse_multihead_attention.validate_attention_options, which the module
runs as well.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fairseq.utils import safe_getattr

from ..masks.dam import FORMS as DAM_FORMS
from ..masks.dam import STRUCTURES as DAM_STRUCTURES
from ..modules.encoder_attention_mask import MASK_CHOICES
from ..modules.sparse_multihead_attention import validate_attention_options
from ..normalizers import NORMALIZERS, check_alpha, check_lam


def _finite(value, flag):
    if not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number, got {value}")


def _positive(value, flag):
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{flag} must be a finite number > 0, got {value}")


def _at_least(low, meaning=""):
    def check(value, flag):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}{meaning}, got {value}")

    return check


@dataclass(frozen=True)
class Option:
    """One command-line option. default: what a run that does not set it (and a checkpoint
    saved before it existed) gets; None leaves the choice to the code that reads it."""

    name: str
    default: Any
    help: str
    type: Callable | None = None  # None: an on/off flag (store_true)
    metavar: str | None = None
    choices: Sequence[str] | None = None
    check: Callable[[Any, str], Any] | None = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


SPARSE_ATTENTION = (
    Option(
        "attn_normalizer",
        "softmax",
        "normaliser of every encoder self-attention; softmax is stock fairseq, fused kernel kept",
        str,
        choices=tuple(sorted(NORMALIZERS)),
    ),
    Option(
        "sparsegen_lambda",
        0.0,
        "sparsegen-lin lambda < 1: sparsemax(z / (1 - lambda)); the SSAF paper sweeps it in [-8, 0]",
        float,
        "LAM",
        check=check_lam,
    ),
    Option(
        "entmax_alpha",
        1.5,
        "alpha in (1, 2] of entmax_bisect (2 = sparsemax, 1.5 = entmax15, towards 1 = "
        "softmax); the start value when learned, the end value of a sparsity schedule",
        float,
        "A",
        check=check_alpha,
    ),
    Option(
        "learn_entmax_alpha",
        False,
        "learn one entmax_bisect alpha per head, kept in (1.001, 2) as "
        "1.001 + 0.999 sigmoid(w), in float32 (under --fp16/--bf16 1 + sigmoid(w) would round to 1)",
    ),
    Option(
        "entmax_n_iter",
        None,
        "cap on the alpha-entmax threshold iterations, which stop earlier at float "
        "tolerance (unset: the normalisers' cap of 50)",
        int,
        "N",
        check=_at_least(1),
    ),
    Option(
        "sparsity_schedule_updates",
        0,
        "SSAF sparsity schedule: entmax_bisect's alpha goes linearly from "
        "--sparsity-schedule-start-alpha to --entmax-alpha over N updates, then stays; it follows fairseq's "
        "update count (a resumed run continues), the train log shows entmax_alpha, the checkpoint keeps "
        "the alpha reached; 0 = no schedule",
        int,
        "N",
        check=_at_least(0, " (0 = no schedule)"),
    ),
    Option(
        "sparsity_schedule_start_alpha",
        1.05,
        "alpha in (1, 2] at update 0 of the sparsity schedule, near the softmax the weights were pre-trained with",
        float,
        "A",
        check=check_alpha,
    ),
    Option(
        "layer_norm_eps",
        1e-5,
        "LayerNorm epsilon (converted BERT checkpoints: BERT's 1e-12)",
        float,
        "EPS",
        check=_positive,
    ),
    Option(
        "segment_embeddings",
        0,
        "BERT token-type embeddings with N types, 0 = none (RoBERTa); a token's "
        "type is the number of </s> before it, so <s> A </s> B </s> is typed as BERT types "
        "[CLS] A [SEP] B [SEP]; converted BERT checkpoints set it",
        int,
        "N",
        check=_at_least(0, " (0 = none)"),
    ),
)

_PATTERNS = (
    ("window", "W", "half-width of the local window (longformer, bigbird blocks, logsparse)"),
    ("stride", "S", "stride of the strided pattern"),
    ("block", "B", "block size (fixed, bigbird)"),
    ("summary", "C", "summary positions per block (fixed)"),
    ("global", "G", "number of global tokens at the start, [CLS] first (longformer, bigbird, star)"),
    ("random_blocks", "R", "random blocks per block row (bigbird)"),
    ("radius", "R", "neighbours on each side (star)"),
    ("base", "B", "exponent base (logsparse)"),
    ("seed", "S", "seed of the random blocks (bigbird)"),
)
ATTENTION_MASKS = (
    Option(
        "attn_mask",
        "none",
        "which keys each query may attend to: a fixed pattern, dam (learned) or file (frozen)",
        str,
        choices=MASK_CHOICES,
    ),
    Option(
        "attn_mask_file",
        None,
        "frozen 0/1 mask for --attn-mask file: (n, n), (heads, n, n) or "
        "(layers, heads, n, n); unset: the mask stored in the restored checkpoint",
        str,
        "MASK.npy",
    ),
    Option("attn_mask_allow_empty", False, "accept a mask file that is all zero or has a query row with no key"),
    *(
        Option(f"attn_mask_{name}", None, f"{text}; unset: the pattern's default", int, meta)
        for name, meta, text in _PATTERNS
    ),
)

# The DAM settings that learned a mask on real text in 80 CPU updates from a pre-trained model
# (MiniLM, lr 3e-4; examples/sparsebert/README.md has the runs that chose them).
DAM = (
    Option(
        "dam_structure",
        "structured",
        "structured: one logit per head and distance i - j; unstructured: one per (i, j)",
        str,
        choices=DAM_STRUCTURES,
    ),
    Option("dam_share_layers", False, "one learned mask for all layers (the authors' setting)"),
    Option("dam_no_diagonal", False, "hold the diagonal of the learned mask at 0"),
    Option("dam_tau", 1.0, "Gumbel-sigmoid temperature", float, "T", check=_positive),
    Option(
        "dam_tau_end",
        None,
        "anneal the temperature geometrically to this; unset: constant",
        float,
        "T",
        check=_positive,
    ),
    Option("dam_tau_anneal_steps", 0, "updates over which to anneal the temperature", int, "N", check=_at_least(0)),
    Option(
        "dam_form",
        "product",
        "how the sampled mask M enters attention: product = M exp(e) / sum M exp(e) "
        "(the paper's formula), additive = scores + (1 - M) * -1e4 (the authors' code)",
        str,
        choices=DAM_FORMS,
    ),
    Option(
        "dam_init",
        None,
        "initial mask logit; > 0 starts dense (unset: 1 with the product form, 0 with "
        "additive, whose logits start at 1e-3 N(0, 1))",
        float,
        "A",
        check=_finite,
    ),
    Option(
        "dam_logit_scale",
        None,
        "logit = S x parameter: the logits' learning rate as a multiple of --lr "
        "under Adam; stored with the checkpoint (unset: 500 with the product form, 1 with additive)",
        float,
        "S",
        check=_positive,
    ),
)
# Per form: the start and the scale of the logits. additive is the authors' code: logits
# 1e-3 * N(0, 1) (keep probability 1/2), no scale; product starts dense and moves 500x faster.
DAM_FORM_DEFAULTS = {
    "product": {"dam_init": 1.0, "dam_logit_scale": 500.0},
    "additive": {"dam_init": 0.0, "dam_logit_scale": 1.0},
}

GROUPS = {
    "sparse attention": SPARSE_ATTENTION,
    "attention masks (SparseBERT)": ATTENTION_MASKS,
    "learned attention mask (DAM)": DAM,
}
OPTIONS = SPARSE_ATTENTION + ATTENTION_MASKS + DAM


def add_sparse_attention_args(parser):
    """The plugin's options, added to RoBERTa's. Unset ones stay unset (fairseq's model options
    default to absent) so architecture presets can fill them before fill_sparse_defaults."""
    for title, options in GROUPS.items():
        group = parser.add_argument_group(title)
        for opt in options:
            if opt.type is None:
                group.add_argument(opt.flag, action="store_true", help=opt.help)
            else:
                group.add_argument(
                    opt.flag,
                    type=opt.type,
                    metavar=opt.metavar,
                    choices=opt.choices,
                    help=opt.help + ("" if opt.default is None else f" (default: {opt.default})"),
                )


def fill_sparse_defaults(args):
    """The declared default for every option left unset (architecture functions call this)."""
    for opt in OPTIONS:
        value = safe_getattr(args, opt.name, None)
        setattr(args, opt.name, opt.default if value is None else value)
    for name, default in DAM_FORM_DEFAULTS.get(args.dam_form, {}).items():  # a bad form: check_sparse_options
        if getattr(args, name) is None:
            setattr(args, name, default)


def check_sparse_options(args):
    """Every option's own check, then the attention module's joint one (build time, before any layer)."""
    for opt in OPTIONS:
        value = getattr(args, opt.name)
        if value is None:
            continue
        if opt.choices is not None and value not in opt.choices:
            raise ValueError(f"{opt.flag} {value!r} is not one of {list(opt.choices)}")
        if opt.check is not None:
            opt.check(value, opt.flag)
    validate_attention_options(
        args.attn_normalizer,
        args.sparsegen_lambda,
        args.entmax_alpha,
        args.learn_entmax_alpha,
        args.sparsity_schedule_start_alpha if args.sparsity_schedule_updates else None,
    )


def _markdown_default(opt):
    if opt.type is None:
        return "off"
    return "unset" if opt.default is None else f"`{opt.default}`"


def options_markdown(title):
    """The README's table of one option group: the README holds these verbatim (tests/test_model.py);
    print(options_markdown("sparse attention")) writes one for the README."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for opt in GROUPS[title]:
        name = opt.flag
        if opt.choices is not None:
            name += " {" + ",".join(opt.choices) + "}"
        elif opt.metavar:
            name += f" {opt.metavar}"
        meaning = opt.help.replace("<", "\\<")  # markdown would take <s> for a tag
        rows.append(f"| `{name}` | {_markdown_default(opt)} | {meaning} |")
    return "\n".join(rows) + "\n"
