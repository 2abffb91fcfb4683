"""The encoder's attention mask: one object decides what every layer may attend to.

It turns the --attn-mask options into per-layer keep-mask hooks for SparseMultiheadAttention:
a fixed pattern (built once per sequence length and cached), a frozen mask (from a .npy file,
kept in the checkpoint as the buffer `frozen_attn_mask` so later runs need no file), or
SparseBERT's learned DAM (one Gumbel-sigmoid sample drawn per forward, shared by the layers
that share it).
"""

import torch
from torch import nn

from ..masks import DifferentiableAttentionMask, build_fixed_mask, load_mask_file, mask_for_layer, slice_mask

FIXED_PATTERNS = ("none", "no_diagonal", "strided", "fixed", "longformer", "bigbird", "star", "logsparse")
MASK_CHOICES = FIXED_PATTERNS + ("dam", "file")

# --attn-mask-* option -> the pattern parameter it sets (only the ones a pattern accepts are passed)
PATTERN_OPTIONS = {
    "attn_mask_window": "window",
    "attn_mask_stride": "stride",
    "attn_mask_block": "block",
    "attn_mask_summary": "summary",
    "attn_mask_global": "num_global",
    "attn_mask_random_blocks": "random_blocks",
    "attn_mask_radius": "radius",
    "attn_mask_base": "base",
    "attn_mask_seed": "seed",
}


def pattern_kwargs(args, pattern):
    from ..masks import pattern_params

    accepted = pattern_params(pattern)
    kwargs = {}
    for option, param in PATTERN_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None and param in accepted:
            kwargs[param] = value
    return kwargs


class EncoderAttentionMask(nn.Module):
    def __init__(self, args, num_layers, num_heads, max_positions):
        super().__init__()
        self.kind = args.attn_mask
        if self.kind not in MASK_CHOICES:
            raise ValueError(f"--attn-mask {self.kind!r} is not one of {list(MASK_CHOICES)}")
        self.num_layers, self.num_heads, self.max_positions = num_layers, num_heads, max_positions
        self._cache = {}
        self.dam = None
        self.register_buffer("device_probe", torch.zeros(0), persistent=False)  # follows .to()/.cuda()
        if self.kind in FIXED_PATTERNS:
            self.pattern_kwargs = pattern_kwargs(args, self.kind)
            build_fixed_mask(self.kind, min(max_positions, 8), **self.pattern_kwargs)  # fail at build on bad values
        elif self.kind == "file":
            path = getattr(args, "attn_mask_file", None)
            if path:
                frozen = load_mask_file(
                    path,
                    num_heads=num_heads,
                    num_layers=num_layers,
                    allow_empty=getattr(args, "attn_mask_allow_empty", False),
                )
            else:  # the mask comes from the checkpoint being restored (see load_frozen_mask)
                frozen = torch.zeros(0, dtype=torch.bool)
            self.register_buffer("frozen_attn_mask", frozen)
        else:
            self.dam = DifferentiableAttentionMask(
                num_heads,
                max_positions,
                structure=args.dam_structure,
                num_layers=1 if args.dam_share_layers else num_layers,
                no_diagonal=args.dam_no_diagonal,
                tau=args.dam_tau,
                tau_end=args.dam_tau_end,
                tau_anneal_steps=args.dam_tau_anneal_steps,
                init_mean=args.dam_init,
                logit_scale=args.dam_logit_scale,
                form=args.dam_form,
            )

    def load_frozen_mask(self, tensor):
        """Adopt a checkpoint's frozen mask (any shape the file format allows)."""
        self.frozen_attn_mask = tensor.to(torch.bool)

    def prepare(self, length):
        """Called once per encoder forward, before the layers: draws the DAM sample."""
        if self.dam is not None:
            self.dam(length)

    def layer_keep_fn(self, layer):
        """The keep-mask hook of layer `layer` (None when nothing is masked)."""
        if self.kind == "none":
            return None
        if self.dam is not None:
            return self.dam.layer_mask_fn(layer if self.dam.num_layers > 1 else 0)

        def keep(tgt_len, src_len):
            if tgt_len != src_len:
                raise ValueError(f"attention masks need self-attention (tgt_len {tgt_len} != src_len {src_len})")
            return self._fixed(tgt_len, layer)

        return keep

    def _fixed(self, length, layer):
        key = (length, layer if self.kind == "file" else None)
        mask = self._cache.get(key)
        if mask is None or mask.device != self._device():
            if self.kind == "file":
                if self.frozen_attn_mask.numel() == 0:
                    raise ValueError(
                        "--attn-mask file needs --attn-mask-file MASK.npy, or --restore-file of a "
                        "checkpoint trained with a frozen mask (it stores the mask)"
                    )
                mask = mask_for_layer(
                    slice_mask(self.frozen_attn_mask, length, source="the frozen attention mask"), layer
                )
            else:
                mask = build_fixed_mask(self.kind, length, **self.pattern_kwargs)
            mask = (mask if mask.dim() == 3 else mask.unsqueeze(0)).to(self._device())
            self._cache[key] = mask
        return mask

    def _device(self):
        return self.device_probe.device

    def _apply(self, fn, *args, **kwargs):
        self._cache = {}  # device or dtype moves invalidate cached masks
        return super()._apply(fn, *args, **kwargs)
