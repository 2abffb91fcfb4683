"""The encoder sparse_roberta builds: fairseq's RoBERTa encoder through its factory hooks
(build_encoder -> build_encoder_layer -> build_self_attention), plus what a converted BERT
needs (token-type embeddings, its LayerNorm eps) and what changes with the update count
(the sparsity schedule, the DAM temperature)."""

import torch
from fairseq.distributed import fsdp_wrap
from fairseq.logging import metrics
from fairseq.models.roberta import RobertaEncoder
from fairseq.models.transformer import TransformerConfig, TransformerEncoder
from fairseq.modules import TransformerEncoderLayer
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_sentence_encoder import init_bert_params

from ..modules.encoder_attention_mask import EncoderAttentionMask
from ..modules.sparse_multihead_attention import SparseMultiheadAttention


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
                args.sparsity_schedule_start_alpha, args.entmax_alpha, args.sparsity_schedule_updates
            )
        self.attn_masks = EncoderAttentionMask(
            args, args.encoder_layers, args.encoder_attention_heads, args.max_positions
        )
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
            alpha = self.sparsity_schedule(num_updates)  # a Python float: no host sync on a GPU
            for module in self.modules():
                if isinstance(module, SparseMultiheadAttention):
                    module.set_scheduled_alpha(alpha)  # kept in float32, also under --fp16 / --bf16
            # the alpha the coming update runs with, as the attention modules hold it (float32)
            metrics.log_scalar("entmax_alpha", float(torch.tensor(alpha, dtype=torch.float32)), weight=0, round=4)
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
