#!/usr/bin/env python
"""Answer the questions of a preprocessed SQuAD split and score them with the official EM/F1.

python examples/squad/evaluate.py --data data-bin/squad2 --checkpoint checkpoints/squad2/checkpoint_best.pt \
    --split valid --out-dir predictions/ [--gold dev-v2.0.json] [--null-threshold 0.0]

Writes predictions.json ({id: answer}) and, for v2.0, null_odds.json ({id: null score - best
span score}, the no-answer scores the official v2.0 script takes), then prints the summary
(exact, f1, and for v2.0 HasAns/NoAns and the best no-answer threshold).
"""

import argparse
import json
import os
import sys

import torch
from fairseq import checkpoint_utils, utils

import fairseq_sparse  # noqa: F401  (registers the squad task, criterion and BPE)
from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.data.squad import answers_from_spans, best_spans
from fairseq_sparse.data.squad_metrics import evaluate, gold_from_squad_json
from fairseq_sparse.finetune.recipe_cli import use_cuda


def span_rows(model, task, split, batch_size, cpu):
    """Per feature: (example, start word, end word, best span score, null score)."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    itr = task.get_batch_iterator(
        dataset, max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=False
    ).next_epoch_itr(shuffle=False)
    rows = []
    pad = task.source_dictionary.pad()
    cuda = use_cuda(cpu)
    with torch.no_grad():
        for sample in itr:
            if cuda:
                sample = utils.move_to_cuda(sample)
            logits = model(**sample["net_input"], features_only=True, classification_head_name=task.cfg.span_head_name)[
                0
            ].float()
            start_logits, end_logits = logits.unbind(-1)
            not_pad = sample["net_input"]["src_tokens"].ne(pad)
            s, e, score = best_spans(
                start_logits,
                end_logits,
                sample["start_ok"] & not_pad,
                sample["end_ok"] & not_pad,
                task.cfg.max_answer_length,
            )
            words = sample["words"]
            null = start_logits[:, 0] + end_logits[:, 0]
            for b in range(len(s)):
                rows.append(
                    (
                        int(sample["example"][b]),
                        int(words[b, s[b]]),
                        int(words[b, e[b]]),
                        float(score[b]),
                        float(null[b]),
                    )
                )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory written by examples/squad/preprocess.py")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="valid")
    p.add_argument("--out-dir", help="where to write predictions.json / null_odds.json")
    p.add_argument("--gold", help="official JSON to score against (default: the answers kept at preprocessing)")
    p.add_argument(
        "--null-threshold",
        type=float,
        default=0.0,
        help="v2.0: answer '' when null score - best span score exceeds this",
    )
    p.add_argument("--max-answer-length", type=int, default=None, help="longest answer in tokens (default: task's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    overrides = {"data": args.data}
    if args.max_answer_length:
        overrides["max_answer_length"] = args.max_answer_length
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([args.checkpoint], arg_overrides=overrides)
    model = models[0].eval()
    if use_cuda(args.cpu):
        model.cuda()
    rows = span_rows(model, task, args.split, args.batch_size, args.cpu)
    version = task.meta.get("version", "1.1")
    preds, odds = answers_from_spans(task.examples, rows, args.null_threshold, version)
    if args.gold:
        with open(args.gold, encoding="utf-8") as f:
            gold = gold_from_squad_json(json.load(f))
    else:
        gold = {ex["id"]: [] if ex["is_impossible"] else ex["answers"] for ex in task.examples}
    unanswered = [q for q in gold if q not in preds]  # e.g. dropped at preprocessing
    for q in unanswered:
        preds[q], odds[q] = "", float("inf")
    if unanswered:
        print(f"warning: {len(unanswered)} questions had no features; scored as unanswered", file=sys.stderr)
    result = evaluate(
        gold,
        preds,
        na_probs=odds if version == "2.0" else None,
        na_prob_thresh=args.null_threshold if version == "2.0" else 1.0,
    )
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        outputs = {"predictions.json": preds}
        if version == "2.0":  # JSON has no infinity: questions without any legal span get a large odds value
            outputs["null_odds.json"] = {q: min(v, 1e9) for q, v in odds.items()}
        for name, obj in outputs.items():
            with atomic_output(os.path.join(args.out_dir, name)) as f:
                json.dump(obj, f, indent=1)
    print(
        json.dumps({"version": version, **{k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}})
    )
    return result


if __name__ == "__main__":
    main()
