"""Writing fairseq checkpoints that fairseq's loaders accept, without half-written files."""


def minimal_training_state(criterion_name):
    """The training bookkeeping `--restore-file` and `from_pretrained` expect in a checkpoint.

    fairseq's checkpoint upgrade indexes optimizer_history[-1] and extra_state["train_iterator"];
    a converted model has neither, so it gets the state of a run that has made no update.
    """
    return {
        "optimizer_history": [
            {
                "criterion_name": criterion_name,
                "optimizer_name": "none",
                "lr_scheduler_state": {"best": None},
                "num_updates": 0,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }


ENCODER_OPTIONS = (
    "encoder_layers",
    "encoder_embed_dim",
    "encoder_ffn_embed_dim",
    "encoder_attention_heads",
    "max_positions",
    "activation_fn",
)


def checkpoint_model_args(path):
    """The model options a checkpoint was saved with (argparse Namespace or hydra cfg.model)."""
    from ..checkpoint_reader import read_checkpoint

    state = read_checkpoint(path, mmap=True)
    if state.get("args") is not None:
        return vars(state["args"])
    cfg = state.get("cfg") or {}
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if model is None:
        raise ValueError(f"{path!r} has neither args nor cfg.model: not a fairseq checkpoint")
    return vars(model) if not isinstance(model, dict) else dict(model)


def encoder_flags(path, with_layer_norm_eps=True):
    """fairseq-train options that rebuild the checkpoint's encoder shape.

    fairseq builds the model from the command line and only then loads weights, so
    fine-tuning a converted (non-base-sized) BERT needs its dimensions repeated there.
    with_layer_norm_eps: also the plugin-only options (--layer-norm-eps, --segment-embeddings)
    of a sparse_roberta target.
    """
    args = checkpoint_model_args(path)
    flags = []
    for name in ENCODER_OPTIONS:
        if args.get(name) is not None:
            flags += ["--" + name.replace("_", "-"), str(args[name])]
    if with_layer_norm_eps and args.get("layer_norm_eps") is not None:
        flags += ["--layer-norm-eps", repr(float(args["layer_norm_eps"]))]
    if with_layer_norm_eps and args.get("segment_embeddings"):
        flags += ["--segment-embeddings", str(int(args["segment_embeddings"]))]
    return flags
