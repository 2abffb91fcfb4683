"""SparseBERT end to end with fairseq-train: DAM search -> export -> frozen mask -> fine-tune (issue 3)."""

import json
import re

import numpy as np
import pytest
import torch
from conftest import REPO, USER_DIR, run_cli, tiny_mlm_args

import fairseq_sparse  # noqa: F401
from fairseq_sparse.models.sparse_roberta import SparseRobertaModel


def test_search_export_freeze_finetune(mlm_data, cls_data, tmp_path):
    search = run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "search",
            arch="sparsebert_tiny",
            updates=8,
            extra=[
                "--criterion",
                "masked_lm_dam",
                "--dam-lambda",
                "1e-5",
                "--lr",
                "1e-2",
                "--dam-logit-scale",
                "1",
                "--dam-init",
                "3",
            ],
        )
    )  # the plumbing, not the learning: a dense mask
    log = search.stdout + search.stderr
    densities = [float(d) for d in re.findall(r"dam_density_l0=([0-9.]+)", log)]
    # logits start at 3 and Adam moves them by at most 8 x 1e-2: each sample keeps a distance with
    # probability sigmoid(3) = 0.953, the diagonal never, so a T-token sample (16 <= T <= 32) keeps
    # 0.953 (1 - 1/T) = 0.89..0.92 of its entries on average
    assert len(densities) == 8 and 0.86 < np.mean(densities) < 0.95, log[-2000:]
    assert "dam_l1=" in log and "mlm_loss=" in log

    exported = run_cli(
        [
            "fairseq-sparse-export-mask",
            tmp_path / "search" / "checkpoint_last.pt",
            "--out",
            tmp_path / "mask.npy",
            "--png",
            tmp_path / "mask.png",
        ]
    )
    report = json.loads(exported.stdout.strip().splitlines()[-1])
    mask = np.load(tmp_path / "mask.npy")
    assert mask.shape == (4, 32, 32) and mask.dtype == np.bool_
    # every logit is still near 3 > 0: the export keeps everything but the diagonal sparsebert holds at 0
    assert (mask == ~np.eye(32, dtype=bool)).all()
    assert report["density"] == round(31 / 32, 6) and report["no_diagonal"]
    assert (tmp_path / "mask.png").stat().st_size > 1000

    # continue pre-training from the search checkpoint with the frozen, binarised mask
    frozen = run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "frozen",
            updates=3,
            extra=[
                "--attn-mask",
                "file",
                "--attn-mask-file",
                tmp_path / "mask.npy",
                "--restore-file",
                tmp_path / "search" / "checkpoint_last.pt",
                "--reset-optimizer",
                "--reset-dataloader",
                "--reset-meters",
                "--reset-lr-scheduler",
            ],
        )
    )
    assert "dropping encoder.sentence_encoder.attn_masks.dam.dam_logits" in frozen.stdout + frozen.stderr
    state = torch.load(tmp_path / "frozen" / "checkpoint_last.pt", map_location="cpu")["model"]
    key = "encoder.sentence_encoder.attn_masks.frozen_attn_mask"
    assert torch.equal(state[key], torch.from_numpy(mask))

    # fine-tune from it with no mask file: the checkpoint carries the mask
    tuned = run_cli(
        [
            "fairseq-train",
            cls_data,
            "--user-dir",
            USER_DIR,
            "--cpu",
            "--task",
            "sentence_prediction",
            "--criterion",
            "sentence_prediction",
            "--num-classes",
            2,
            "--arch",
            "sparse_roberta_tiny",
            "--attn-mask",
            "file",
            "--restore-file",
            tmp_path / "frozen" / "checkpoint_last.pt",
            "--reset-optimizer",
            "--reset-dataloader",
            "--reset-meters",
            "--max-positions",
            32,
            "--batch-size",
            8,
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--lr-scheduler",
            "fixed",
            "--max-update",
            2,
            "--log-format",
            "simple",
            "--save-dir",
            tmp_path / "ft",
            "--no-epoch-checkpoints",
            "--num-workers",
            0,
            "--init-token",
            0,
            "--separator-token",
            2,
        ]
    )
    assert re.search(r"valid on 'valid' subset .*\| accuracy ([\d.]+)", tuned.stdout + tuned.stderr)
    hub = SparseRobertaModel.from_pretrained(
        str(tmp_path / "ft"), "checkpoint_last.pt", data_name_or_path=str(cls_data), bpe=None
    )
    masks = hub.model.encoder.sentence_encoder.attn_masks
    assert torch.equal(masks.frozen_attn_mask, torch.from_numpy(mask))
    tokens = torch.tensor([[0] + list(range(4, 24)) + [2]])
    maps = hub.model.extract_attention(tokens)
    n = tokens.size(1)
    dropped = ~torch.from_numpy(mask[:, :n, :n])
    for layer_map in maps:
        assert (layer_map[0][dropped] == 0).all(), "the frozen mask holds at fine-tuning time"


def test_file_mask_without_file_or_checkpoint_is_a_clear_error(mlm_data, tmp_path):
    result = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=1, extra=["--attn-mask", "file"]), check=False)
    assert result.returncode != 0
    assert "--attn-mask file needs --attn-mask-file" in result.stderr


def test_mask_file_shape_errors_name_the_problem(mlm_data, tmp_path):
    np.save(tmp_path / "bad.npy", np.full((3, 16, 16), 2, dtype=np.int64))
    result = run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "ck",
            updates=1,
            extra=["--attn-mask", "file", "--attn-mask-file", tmp_path / "bad.npy"],
        ),
        check=False,
    )
    assert result.returncode != 0 and "bad.npy" in result.stderr
    np.save(tmp_path / "short.npy", np.ones((4, 16, 16), dtype=bool))
    result = run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "ck2",
            updates=1,
            extra=["--attn-mask", "file", "--attn-mask-file", tmp_path / "short.npy"],
        ),
        check=False,
    )
    assert result.returncode != 0 and "exceeds the 16 positions" in result.stderr


@pytest.mark.parametrize(
    "pattern,extra",
    [
        ("no_diagonal", []),
        ("longformer", ["--attn-mask-window", "2"]),
        ("bigbird", ["--attn-mask-block", "4", "--attn-mask-seed", "1"]),
    ],
)
def test_fixed_patterns_train_with_sparse_normalizer(mlm_data, tmp_path, pattern, extra):
    run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "ck",
            updates=2,
            extra=["--attn-mask", pattern, "--attn-normalizer", "sparsemax"] + extra,
        )
    )
    hub = SparseRobertaModel.from_pretrained(
        str(tmp_path / "ck"), "checkpoint_last.pt", data_name_or_path=str(mlm_data), bpe=None
    )
    tokens = torch.tensor([[0] + list(range(4, 17)) + [2], [0] + list(range(4, 10)) + [2] + [1] * 7])
    maps = hub.model.extract_attention(tokens)
    if pattern == "no_diagonal":
        assert (maps[0].diagonal(dim1=-2, dim2=-1)[0] == 0).all()
    assert (maps[1][1, :, :, 8:] == 0).all(), "padded keys stay at 0 under a pattern"
    real_rows = maps[1][1, :, :8].sum(-1)
    assert torch.allclose(real_rows, torch.ones_like(real_rows), atol=1e-5)


@pytest.mark.parametrize(
    "arch, extra, message",
    [
        (
            "sparsebert_tiny",
            ["--criterion", "masked_lm_dam", "--dam-tau", "0"],
            "--dam-tau must be a finite number > 0, got 0.0",
        ),
        (
            "sparsebert_tiny",
            ["--criterion", "masked_lm_dam", "--dam-logit-scale", "-2"],
            "--dam-logit-scale must be a finite number > 0, got -2.0",
        ),
        (
            "sparsebert_tiny",
            ["--criterion", "masked_lm_dam", "--dam-lambda", "-1"],
            "--dam-lambda must be >= 0, got -1.0",
        ),
        (
            "sparse_roberta_tiny",
            ["--criterion", "masked_lm_dam"],
            "criterion masked_lm_dam needs a model with a learned mask",
        ),
    ],
)
def test_bad_dam_settings_are_clear_errors_through_the_cli(mlm_data, tmp_path, arch, extra, message):
    result = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", arch=arch, updates=1, extra=extra), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_an_empty_mask_file_is_refused_at_load_unless_allowed(mlm_data, tmp_path):
    mask = np.ones((4, 32, 32), dtype=bool)
    mask[2, 7] = False  # head 2, query 7 may attend to nothing
    np.save(tmp_path / "holey.npy", mask)
    args = tiny_mlm_args(
        mlm_data, tmp_path / "ck", updates=1, extra=["--attn-mask", "file", "--attn-mask-file", tmp_path / "holey.npy"]
    )
    result = run_cli(args, check=False)
    assert result.returncode != 0
    assert "1 of its 128 query rows keep no key (first: head 2, row 7)" in result.stderr, result.stderr[-2000:]
    run_cli(args + ["--attn-mask-allow-empty"])


def test_a_short_search_with_the_defaults_learns_a_mask_that_is_neither_empty_nor_full(mlm_data, tmp_path):
    """A model that already uses its context (30 dense updates), then a search where every DAM
    setting is the default: only --criterion masked_lm_dam and the architecture are given."""
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "dense", updates=30, extra=["--lr", "1e-2", "--log-interval", "10"]))
    run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "search",
            arch="sparsebert_tiny",
            updates=30,
            extra=[
                "--criterion",
                "masked_lm_dam",
                "--log-interval",
                "10",
                "--restore-file",
                tmp_path / "dense" / "checkpoint_last.pt",
                "--reset-optimizer",
                "--reset-dataloader",
                "--reset-meters",
                "--reset-lr-scheduler",
            ],
        )
    )
    exported = run_cli(
        ["fairseq-sparse-export-mask", tmp_path / "search" / "checkpoint_last.pt", "--out", tmp_path / "mask.npy"]
    )
    report = json.loads(exported.stdout.strip().splitlines()[-1])
    assert 0.05 < report["density"] < 0.95, report
    assert "empty" not in report
    # the corpus's rule is "w_i is followed by w_i+1": distance 1 is what the loss defends
    mask = np.load(tmp_path / "mask.npy")
    kept = [np.flatnonzero(head[0]).tolist() for head in mask]
    assert (mask.sum(-1) > 0).all(), "no query row is left without a key"
    # distance 1 is kept by most heads, and more often than the other distances (seed 3: 3 of 4
    # heads against 0.39 for d = 2..31; a search whose mask ignored the loss keeps every
    # distance equally often)
    share = mask[:, 0, :].mean(0)  # per distance, the share of heads keeping it
    assert share[1] >= 0.75 and share[1] > share[2:].mean() + 0.25, kept


def _sparsebert_module(name):
    """examples/sparsebert/<name>.py, imported by path (the examples are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"sparsebert_{name}", REPO / "examples" / "sparsebert" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_baselines_random_and_pattern_masks_match_what_they_claim(mlm_data):
    measures = _sparsebert_module("measures")
    # the unigram baseline: valid tokens under the add-one train distribution, against a direct count
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(mlm_data / "dict.txt"))
    counts = {
        s: np.bincount(torch.cat(list(data_utils.load_indexed_dataset(str(mlm_data / s), d))).numpy(), minlength=len(d))
        for s in ("train", "valid")
    }
    p = (counts["train"] + 1) / (counts["train"] + 1).sum()
    q = counts["valid"] / counts["valid"].sum()
    u = measures.unigram_bits(str(mlm_data))
    assert u["cross_entropy_train_unigram"] == pytest.approx(-(q[q > 0] * np.log2(p[q > 0])).sum(), abs=1e-3)
    assert u["valid_entropy"] < u["cross_entropy_train_unigram"] and u["valid_tokens"] == counts["valid"].sum()
    # the random mask matches each head's density (query-key pairs, not distances), with other distances
    learned = np.zeros((3, 64, 64), dtype=bool)
    dist = np.abs(np.arange(64)[:, None] - np.arange(64)[None, :])
    for h, kept in enumerate(([1, 2], [1, 2, 3, 40], list(range(32, 64)))):  # head 2: far distances only
        learned[h] = np.isin(dist, kept)
    random = measures.random_like(learned, seed=1)
    # within one distance's entries (2 (n - d) / n^2 < 2 / n) of every head's density
    densities = random.mean((1, 2)), learned.mean((1, 2))
    assert np.abs(densities[0] - densities[1]).max() < 2 / 64, densities
    assert measures.kept_distances(random) != measures.kept_distances(learned)
    # the window and BigBird arms: the candidate nearest the learned density
    for kind in ("window", "bigbird"):
        matched = measures.matched_pattern(kind, 0.25, 128)
        assert abs(matched["density"] - 0.25) < 0.03, matched
    # |i - j| <= w keeps ((2w + 1) n - w (w + 1)) / n^2: 0.241 for w = 16, 0.255 for w = 17
    assert measures.matched_pattern("window", 0.25, 128)["flags"] == [
        "--attn-mask",
        "longformer",
        "--attn-mask-window",
        17,
        "--attn-mask-global",
        0,
    ]


def test_reproduce_text_file_becomes_a_minilm_wordpiece_corpus_and_bad_files_are_named(tmp_path):
    """--text FILE: English the project never saw (BBC News articles, one per line, saved with a BOM)
    through the pipeline with MiniLM's vocabulary; a non-UTF-8 or empty file stops with its name and line."""
    from fairseq_sparse.data.bbc_news import read_bbc_news

    reproduce = _sparsebert_module("reproduce")
    articles = [ex.text_a for ex in read_bbc_news()[0]["train"][:60]]
    text = tmp_path / "bbc.txt"
    text.write_text("\ufeff" + "\n\n".join(a.replace("\n", " ") for a in articles) + "\n", encoding="utf-8")
    args = reproduce.parse_args(["--text", str(text), "--out", str(tmp_path / "out")])
    experiment = reproduce.Experiment(args.out, reproduce.BUDGETS["quick"], args)
    experiment.prepare()
    corpus = experiment.results["corpus"]
    assert corpus["train"]["documents"] + corpus["valid"]["documents"] == 60, corpus
    assert corpus["valid"]["documents"] >= 1 and corpus["train"]["tokens"] > 20_000
    docs = (tmp_path / "out" / "text" / "AA" / "wiki_00").read_text(encoding="utf-8")
    assert docs.count("<doc ") == 60 and "\ufeff" not in docs and articles[0].split()[0] in docs
    # MiniLM's 30,522 WordPiece entries (+ fairseq's 4 specials), so the converted checkpoint fits the data
    assert sum(1 for _ in open(tmp_path / "out" / "corpus" / "data-bin" / "shard0" / "dict.txt")) >= 30_000
    unigram = experiment.results["unigram"]
    assert 6 < unigram["valid_entropy"] < unigram["cross_entropy_train_unigram"] < 14, unigram

    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"A first paragraph.\nThe caf\xe9 opened.\n")
    with pytest.raises(SystemExit, match=r"latin\.txt, line 2, byte 8: b'\\xe9' is not utf-8 .*--encoding"):
        reproduce.write_text_as_docs(str(bad), str(tmp_path / "bad"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(SystemExit, match=r"blank\.txt holds no text; expected English text with one paragraph"):
        reproduce.write_text_as_docs(str(tmp_path / "blank.txt"), str(tmp_path / "blank"))
    assert not (tmp_path / "bad").exists() and not (tmp_path / "blank").exists()
