#!/usr/bin/env python
"""Predictions of a fine-tuned checkpoint: GLUE-server TSVs for the test sets, scores for dev sets.

python examples/glue/predict.py --data data-bin/RTE --checkpoint checkpoints/RTE/checkpoint_best.pt \
    --out-dir predictions/            # writes predictions/RTE.tsv (MNLI: MNLI-m.tsv, MNLI-mm.tsv)
python examples/glue/predict.py --data data-bin/RTE --checkpoint ... --split valid   # prints the dev score
"""

import argparse
import json
import os

import torch
from fairseq import checkpoint_utils, utils
from fairseq.criterions.sentence_prediction import acc_and_f1, matthews_corrcoef, pearson_and_spearman

import fairseq_sparse  # noqa: F401  (registers the plugin's models, tasks, BPE)
from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.data.sentence_prediction_data import read_meta
from fairseq_sparse.finetune.recipe_cli import fail, use_cuda

PROG = os.path.basename(__file__)

METRICS = {"CoLA": "mcc", "MRPC": "acc_and_f1", "QQP": "acc_and_f1", "STS-B": "pearson_and_spearman"}


def load_model(checkpoint, data, cpu=False):
    """(model in eval mode, on the GPU unless cpu or none is there; its task reading `data`)."""
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    model = models[0].eval()
    if use_cuda(cpu):
        model.cuda()
    return model, task


def predict(model, task, split, batch_size=32, cpu=False):
    """(ids, outputs, targets or None): class indices, or scores for regression, by example id."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    itr = task.get_batch_iterator(
        dataset, max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=False
    ).next_epoch_itr(shuffle=False)
    head = task.cfg.classification_head_name
    ids, outs, targets = [], [], []
    cuda = use_cuda(cpu)
    with torch.no_grad():
        for sample in itr:
            if cuda:
                sample = utils.move_to_cuda(sample)
            logits = model(**sample["net_input"], features_only=True, classification_head_name=head)[0]
            outs.append(logits.squeeze(-1).float().cpu() if task.cfg.regression_target else logits.argmax(-1).cpu())
            ids.append(sample["id"].cpu())
            if "target" in sample:
                targets.append(sample["target"].view(len(sample["id"]), -1).squeeze(-1).cpu())
    order = torch.cat(ids).argsort()
    t = torch.cat(targets)[order].numpy() if targets else None
    return torch.cat(ids)[order].numpy(), torch.cat(outs)[order].numpy(), t


def score(glue_task, preds, targets, regression):
    if regression:
        return {k: 100 * v for k, v in pearson_and_spearman(preds, targets).items()}
    out = {"accuracy": 100 * float((preds == targets).mean())}
    if METRICS.get(glue_task) == "mcc":
        out["mcc"] = 100 * matthews_corrcoef(preds, targets)
    if METRICS.get(glue_task) == "acc_and_f1":
        out.update({k: 100 * v for k, v in acc_and_f1(preds, targets).items()})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory written by examples/glue/preprocess.py")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out-dir", help="where to write the GLUE server TSVs (test splits)")
    p.add_argument("--split", help="score one labelled split (valid, valid1) instead of writing test files")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    meta = read_meta(args.data)
    model, task = load_model(args.checkpoint, args.data, args.cpu)
    glue_task = meta.get("glue_task")
    if args.split:
        _, preds, targets = predict(model, task, args.split, args.batch_size, args.cpu)
        if targets is None:
            fail(PROG, f"split {args.split!r} has no labels")
        result = score(glue_task, preds, targets, meta["regression"])
        print(json.dumps({"split": args.split, **{k: round(float(v), 2) for k, v in result.items()}}))
        return result
    if not args.out_dir:
        fail(PROG, "give --out-dir (test predictions) or --split (dev score)")
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    for split, server_file in (meta.get("server_files") or {"test": "test.tsv"}).items():
        if split not in meta["splits"]:
            continue
        ids, preds, _ = predict(model, task, split, args.batch_size, args.cpu)
        with open(os.path.join(args.data, "raw", f"{split}.id")) as f:
            source_ids = [line.rstrip("\n") for line in f]
        path = os.path.join(args.out_dir, server_file)
        with atomic_output(path) as f:
            f.write("index\tprediction\n")
            for i, pred in zip(ids, preds):
                label = f"{float(pred):.3f}" if meta["regression"] else meta["label_names"][int(pred)]
                f.write(f"{source_ids[i]}\t{label}\n")
        written.append(path)
        print(f"wrote {path} ({len(ids)} predictions)")
    return written


if __name__ == "__main__":
    main()
