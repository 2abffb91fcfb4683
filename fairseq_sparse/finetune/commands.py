"""fairseq-train command lines for fine-tuning on data written by this package.

A recipe is one command; building it here keeps GLUE, the SSAF sets, BBC News and one's own
files on the same defaults (RoBERTa's GLUE fine-tuning settings, no weight decay on biases and
LayerNorm as in BERT) and derives what users get wrong by hand: the encoder shape of a
converted checkpoint, and BERT's [CLS] A [SEP] B [SEP] pair layout versus RoBERTa's
<s> A </s></s> B </s>.
"""

import math
import os
import sys

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_flags(checkpoint, sparse_arch=True):
    """fairseq-train options that rebuild the checkpoint's encoder (shape, activation; for the
    plugin's archs also LayerNorm eps and segment embeddings): fairseq builds the model from the
    command line and only then loads the checkpoint, so they must be repeated there."""
    from ..convert.checkpoint import encoder_flags

    return encoder_flags(checkpoint, with_layer_norm_eps=sparse_arch)


def _finetune_command(data, checkpoint, save_dir, task_args, arch, extra):
    cmd = [
        sys.executable,
        "-m",
        "fairseq_cli.train",
        data,
        "--user-dir",
        PLUGIN_DIR,
        # the pre-trained weights on the first launch, SAVE_DIR/checkpoint_last.pt on a re-run (resume)
        "--finetune-from-model",
        checkpoint,
        *task_args,
        "--arch",
        arch,
        *model_flags(checkpoint, sparse_arch=arch.startswith(("sparse_roberta", "sparsebert"))),
        "--required-batch-size-multiple",
        "1",
        "--dropout",
        "0.1",
        "--attention-dropout",
        "0.1",
        "--weight-decay",
        "0.1",
        "--optimizer",
        "adam_groups",
        "--no-decay-bias-norm",
        "--adam-betas",
        "(0.9,0.98)",
        "--adam-eps",
        "1e-06",
        "--clip-norm",
        "0.0",
        "--lr-scheduler",
        "polynomial_decay",
        "--find-unused-parameters",
        "--no-epoch-checkpoints",
        "--save-dir",
        save_dir,
    ]
    if "--cpu" not in extra:
        import torch

        if torch.cuda.is_available():
            cmd += [
                "--fp16",
                "--fp16-no-flatten-grads",
                "--fp16-init-scale",
                "4",
                "--threshold-loss-scale",
                "1",
                "--fp16-scale-window",
                "128",
            ]
    return cmd + list(extra)


def sentence_prediction_command(data, checkpoint, save_dir, task_flags, bert_layout, arch="sparse_roberta", extra=()):
    """[python, -m, fairseq_cli.train, ...]; `extra` comes last so it overrides any default."""
    task_args = [
        "--task",
        "sentence_prediction",
        "--criterion",
        "sentence_prediction_sparse",
        "--init-token",
        "0",
        *([] if bert_layout else ["--separator-token", "2"]),
        "--shorten-method",
        "truncate",
        "--max-tokens",
        "4400",
        "--max-epoch",
        "10",
        *task_flags,
    ]
    return _finetune_command(data, checkpoint, save_dir, task_args, arch, extra)


def squad_command(
    data, checkpoint, save_dir, n_train_features, lr=3e-5, batch_size=32, epochs=2, arch="sparse_roberta", extra=()
):
    """fairseq-train for --task squad with BERT's SQuAD schedule (lr 3e-5, batch 32, 2 epochs,
    10% warm-up, linear decay), model selection on the validation F1."""
    total = epochs * math.ceil(n_train_features / batch_size)
    task_args = [
        "--task",
        "squad",
        "--criterion",
        "squad_span",
        "--batch-size",
        str(batch_size),
        "--lr",
        str(lr),
        "--max-epoch",
        str(epochs),
        "--total-num-update",
        str(total),
        "--warmup-updates",
        str(max(1, total // 10)),
        "--best-checkpoint-metric",
        "f1",
        "--maximize-best-checkpoint-metric",
    ]
    return _finetune_command(data, checkpoint, save_dir, task_args, arch, extra)


def glue_task_flags(task):
    """The sentence_prediction options of a GLUE task (data.glue.GlueTask): metric, classes, schedule."""
    return classification_flags(
        task.num_classes,
        lr=task.lr,
        batch_size=task.batch_size,
        total_updates=task.total_updates,
        warmup_updates=task.warmup_updates,
        regression=task.regression,
        metric=task.metric,
        criterion_flags=task.criterion_flags,
    )


def classification_flags(
    num_classes,
    lr=1e-5,
    batch_size=32,
    total_updates=None,
    warmup_updates=None,
    regression=False,
    metric="accuracy",
    criterion_flags=(),
):
    """Task-dependent options: classes, metric and schedule."""
    flags = ["--num-classes", str(num_classes), *criterion_flags, "--best-checkpoint-metric", metric]
    if regression and "--regression-target" not in criterion_flags:
        flags.append("--regression-target")
    if metric != "loss":
        flags.append("--maximize-best-checkpoint-metric")
    flags += ["--lr", str(lr), "--batch-size", str(batch_size)]
    if total_updates:
        flags += ["--total-num-update", str(total_updates)]
    if warmup_updates:
        flags += ["--warmup-updates", str(warmup_updates)]
    return flags
