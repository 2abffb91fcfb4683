"""sparse_roberta: RoBERTa/BERT whose self-attention normaliser is a run option (SSAF).

Only fairseq's factory hooks are overridden (the encoder: sparse_encoder.py), as fairseq's
linformer example does, so every parameter keeps its stock RoBERTa name and a `roberta_base`
checkpoint restores into `sparse_roberta_base` as it is. The options: sparse_roberta_options.py.
"""

import argparse
import logging
import os

from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_arch
from fairseq.models.roberta.model import roberta_large_architecture
from fairseq.utils import safe_getattr, safe_hasattr
from omegaconf import OmegaConf

from ..apex_fallbacks import apply_apex_fallbacks
from ..modules.sparse_multihead_attention import SparseMultiheadAttention
from .sparse_encoder import SparseRobertaEncoder
from .sparse_roberta_options import add_sparse_attention_args, check_sparse_options, fill_sparse_defaults

logger = logging.getLogger(__name__)

# Substrings of state-dict keys that exist only in this plugin. A checkpoint without them (a
# stock RoBERTa, or one trained before a feature was switched on) gets their initial values.
PLUGIN_STATE_MARKERS = [
    "entmax_alpha_logit",
    "entmax_alpha_scheduled",
    "dam_logits",
    "dam_no_diagonal",
    "dam_form",
    "dam_logit_scale",
]
FROZEN_MASK_KEY = "frozen_attn_mask"
SEGMENT_KEY = "encoder.sentence_encoder.segment_embeddings.weight"
MASK_STATE_MARKERS = ["dam_logits", FROZEN_MASK_KEY]  # state that decides which keys a query sees
STOCK_CRITERIA = ("masked_lm", "sentence_prediction")  # <name>_sparse adds the attention statistics


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
        check_sparse_options(args)
        if args.attn_normalizer != "softmax" and safe_getattr(args, "criterion", None) in STOCK_CRITERIA:
            logger.info(
                "--criterion %s logs no attention density: --criterion %s_sparse is the same loss with "
                "attn_density_l*/attn_support_l*",
                args.criterion,
                args.criterion,
            )
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

    def attention_density_counts(self):
        """Per layer, the DensityCounts (modules/attention_stats.py) of the last training forward
        with a sparse normaliser, None otherwise: the criteria log them, summed over workers."""
        return [m.density for m in self.attention_modules()]

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
            local = key[len(prefix) :]
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
                        "rebuild with %s",
                        key,
                        "--attn-mask file (the checkpoint's own mask is used) or --attn-mask-file MASK.npy"
                        if FROZEN_MASK_KEY in local
                        else "--attn-mask dam and the checkpoint's --dam-* options",
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
        heads = {k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)}
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


@register_model_architecture("sparse_roberta", "sparse_roberta")
def base_architecture(args):
    fill_sparse_defaults(args)
    roberta_base_arch(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_base")
def sparse_roberta_base_architecture(args):
    base_architecture(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_large")
def sparse_roberta_large_architecture(args):
    fill_sparse_defaults(args)
    roberta_large_architecture(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_tiny")
def sparse_roberta_tiny_architecture(args):
    """2 layers x 64 dims x 4 heads: seconds per update on a CPU, for tests and demos."""
    args.encoder_layers = safe_getattr(args, "encoder_layers", 2)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 256)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 4)
    base_architecture(args)


@register_model_architecture("sparse_roberta", "sparse_roberta_small_preln")
def sparse_roberta_small_preln_architecture(args):
    """4 layers x 128 dims x 4 heads with LayerNorm before each block (pre-LN) and none on the embeddings
    (fairseq's roberta_prenorm): stable at the high learning rate that takes a model pre-trained from
    scratch off the unigram plateau within minutes of CPU (examples/pretraining/pretrain_small.py)."""
    args.encoder_layers = safe_getattr(args, "encoder_layers", 4)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 128)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 512)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 4)
    args.encoder_normalize_before = safe_getattr(args, "encoder_normalize_before", True)
    args.layernorm_embedding = safe_getattr(args, "layernorm_embedding", False)
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
    if safe_getattr(args, "attn_mask", None) is None:
        args.attn_mask = "dam"
    args.dam_share_layers = True
    args.dam_no_diagonal = True
