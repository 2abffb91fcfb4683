"""`fairseq-sparse-analyze maps`: the attention maps of chosen examples (or raw text) as a
layers x heads grid, with each map's rule-based class, masses and prediction in maps.json."""

import argparse

import numpy as np
import torch
from fairseq.data import encoders

from ..data import bert_wordpiece_bpe  # noqa: F401  (registers --bpe bert_wordpiece for --text)
from . import plots
from .examples import Batch, select_indices
from .loading import checkpoint_sections, read_checkpoint
from .outputs import write_figure, write_json, write_npz
from .pattern_classes import CLASSES, classify, map_features
from .report_common import load_setup, out_path, run_info, token_typer


def run(args):
    setup = load_setup(args, args.checkpoint)
    typer = token_typer(setup)
    items = []  # (name, tokens, gold target or None, example index or None)
    dataset = setup.task.dataset(args.split)
    indices = args.examples if args.examples is not None else ([] if args.text else [0])
    for i in select_indices(len(dataset), indices=indices):
        sample = dataset[i]
        target = sample.get("target")
        items.append((f"{args.split}_{i}", sample["net_input.src_tokens"], target, i))
    for k, text in enumerate(args.text):
        items.append((f"text{k}", _encode_text(args, setup, text), None, None))
    written, report = [], []
    for name, tokens, target, index in items:
        tokens = tokens[: setup.task.cfg.max_positions]
        batch = Batch([0], tokens.unsqueeze(0))
        with torch.no_grad():
            maps = torch.stack(
                [m[0].float().cpu() for m in setup.model.extract_attention(batch.src_tokens.to(setup.device))]
            )
            prediction = None
            if setup.has_head:
                out = setup.model(
                    batch.src_tokens.to(setup.device), features_only=True, classification_head_name=setup.head_name
                )[0][0]
                prediction = float(out[0]) if setup.regression else int(out.argmax())
        strings = typer.strings(tokens)
        types = typer.types(tokens)
        feats = map_features(maps, types)
        classes = classify(feats)
        entry = {
            "name": name,
            "index": index,
            "length": len(tokens),
            "tokens": strings,
            "label": _label(setup, target),
            "prediction": _label(setup, prediction),
            "rule_class": [[CLASSES[c] for c in row] for row in classes.tolist()],
            "vertical_mass": feats["vertical"],
            "diagonal_mass": feats["diagonal"],
            "zeros_share": (maps == 0).double().mean(dim=(-2, -1)),
        }
        report.append(entry)
        title = (
            f"{name}: {len(tokens)} tokens"
            + (f", label {entry['label']}" if target is not None else "")
            + (f", predicted {entry['prediction']}" if prediction is not None else "")
        )
        labelled = len(tokens) <= args.show_tokens  # long maps without labels: fewer pixels suffice
        written.append(
            write_figure(
                out_path(args, f"maps_{name}.png"),
                plots.attention_grid(maps.numpy(), strings, title, args.show_tokens),
                dpi=90 if labelled else 60,
            )
        )
        if args.save_maps:
            written.append(
                write_npz(
                    out_path(args, f"maps_{name}.npz"), maps=maps.numpy().astype(np.float32), tokens=np.array(strings)
                )
            )
    written.append(
        write_json(out_path(args, "maps.json"), {"run": run_info(args, setup, len(items)), "examples": report})
    )
    return written


def _label(setup, value):
    if value is None:
        return None
    if hasattr(value, "reshape"):
        value = value.reshape(-1)[0].item()
    if setup.regression:
        return float(value)
    names = setup.label_names
    return names[int(value)] if names and 0 <= int(value) < len(names) else int(value)


def _encode_text(args, setup, text):
    """Raw text -> token ids with --bpe-vocab-file (WordPiece) or the BPE the checkpoint records."""
    if args.bpe_vocab_file:
        opts = {"bpe": "bert_wordpiece", "bpe_vocab_file": args.bpe_vocab_file, "bpe_cased": args.bpe_cased}
    else:
        opts, _, _ = checkpoint_sections(read_checkpoint(args.checkpoint))
    if not opts.get("bpe"):
        raise ValueError(
            f"--text needs a tokenizer, but {args.checkpoint!r} records no BPE; pass --bpe-vocab-file "
            "(a WordPiece vocab.txt) or binarise the text into --data"
        )
    try:
        bpe = encoders.build_bpe(argparse.Namespace(**opts))
    except Exception as err:
        raise ValueError(f"cannot build the BPE {opts.get('bpe')!r} for --text: {err}") from None
    ids = setup.dictionary.encode_line(bpe.encode(text), append_eos=True, add_if_not_exist=False).long()
    return torch.cat([torch.tensor([setup.init_token]), ids]) if setup.init_token is not None else ids
