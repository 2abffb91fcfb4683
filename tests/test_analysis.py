"""Head analysis (Kovaleva et al. 2019): ablation, patterns, special tokens, drift, sparsity, the CLI."""

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import USER_DIR, run_cli
from fairseq import options, tasks
from fairseq.data import Dictionary

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.analysis import load_for_analysis, metrics
from fairseq_sparse.analysis.ablation import AblationEvaluator, layer_heads
from fairseq_sparse.analysis.attention_maps import SparsityStats, iterate_maps
from fairseq_sparse.analysis.bootstrap import paired_intervals, resample_counts
from fairseq_sparse.analysis.examples import CLS, PUNCT, SEP, TokenTyper, make_batches, select_indices
from fairseq_sparse.analysis.pattern_classes import (
    CLASSES,
    PatternCounter,
    PatternThresholds,
    calibrate,
    classify,
    map_features,
)
from fairseq_sparse.analysis.pattern_cnn import (
    cross_validated_predictions,
    load_cnn,
    map_image,
    predict,
    read_labels,
    save_cnn,
    train_cnn,
)
from fairseq_sparse.analysis.special_tokens import SpecialTokenAttention
from fairseq_sparse.checkpoint_reader import read_checkpoint
from fairseq_sparse.cli.analyze import run as analyze

TINY = [
    "--encoder-layers",
    "2",
    "--encoder-embed-dim",
    "64",
    "--encoder-ffn-embed-dim",
    "256",
    "--encoder-attention-heads",
    "4",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_checkpoint(path, data, arch="sparse_roberta_tiny", extra=(), seed=0):
    """A sentence_prediction checkpoint as fairseq-train saves it (args + weights), built in-process."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser,
        [
            str(data),
            "--task",
            "sentence_prediction",
            "--criterion",
            "sentence_prediction",
            "--arch",
            arch,
            "--num-classes",
            "2",
            "--max-positions",
            "32",
            "--init-token",
            "0",
            "--separator-token",
            "2",
            *extra,
        ],
    )
    torch.manual_seed(seed)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    torch.save({"args": args, "model": model.state_dict()}, path)
    return model.eval()


@pytest.fixture(scope="module")
def tiny(cls_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, cls_data)
    return path


def evaluator(path, cls_data, cache_mb=2048):
    setup = load_for_analysis(str(path), str(cls_data), device="cpu")
    dataset = setup.task.dataset("valid")
    batches = make_batches(dataset, select_indices(len(dataset)), batch_size=5)
    return setup, AblationEvaluator(setup, batches, cache_mb=cache_mb, progress=False)


def zero_query(module, head):
    """Scores of `head` become 0 for every key, so softmax gives it uniform attention over real keys."""
    d = module.head_dim
    with torch.no_grad():
        module.q_proj.weight[head * d : (head + 1) * d] = 0
        module.q_proj.bias[head * d : (head + 1) * d] = 0


# ----- loading -----------------------------------------------------------------------------------
def test_stock_roberta_checkpoint_loads_as_sparse_model(cls_data, tmp_path):
    stock = save_checkpoint(tmp_path / "stock.pt", cls_data, arch="roberta", extra=TINY, seed=3)
    setup = load_for_analysis(str(tmp_path / "stock.pt"), str(cls_data), device="cpu")
    assert setup.arch == "sparse_roberta" and (setup.num_layers, setup.num_heads) == (2, 4) and setup.has_head
    tokens = setup.task.dataset("valid").collater([setup.task.dataset("valid")[i] for i in range(4)])
    tokens = tokens["net_input"]["src_tokens"]
    with torch.no_grad():
        ref = stock(tokens, features_only=True, classification_head_name="sentence_classification_head")[0]
        ours = setup.model(tokens, features_only=True, classification_head_name="sentence_classification_head")[0]
    assert torch.allclose(ref, ours, atol=1e-6)
    assert tokens[0, 0] == 0  # the init token of the fine-tuning layout


def test_sparsebert_checkpoint_keeps_its_mask(cls_data, tmp_path):
    """A SparseBERT (diagonal-free DAM) checkpoint is analysed with its own mask: self-attention is exactly 0."""
    save_checkpoint(tmp_path / "sb.pt", cls_data, arch="sparsebert_tiny", seed=6)
    setup = load_for_analysis(str(tmp_path / "sb.pt"), str(cls_data), device="cpu")
    assert setup.arch == "sparsebert_tiny"
    dataset = setup.task.dataset("valid")
    stats = SparsityStats(2, 4)
    for _, tokens, maps in iterate_maps(
        setup.model, make_batches(dataset, [0, 1, 2], 3), setup.dictionary.pad(), progress=False
    ):
        stats.update(maps)
        assert torch.diagonal(maps, dim1=-2, dim2=-1).abs().max() == 0
        assert float(map_features(maps, TokenTyper(setup.dictionary, 0, 2).types(tokens))["self"].max()) == 0
    assert float(stats.density().max()) < 1.0


# ----- ablation ----------------------------------------------------------------------------------
def test_layer_cache_gives_the_full_forward_result(tiny, cls_data):
    _, cached = evaluator(tiny, cls_data)
    _, plain = evaluator(tiny, cls_data, cache_mb=0)
    assert cached._use_cache and not plain._use_cache
    for disabled in [set(), {(1, 2)}, {(0, 1)}, {(0, 0), (1, 3)}, layer_heads(0, 4)]:
        assert torch.allclose(cached.outputs(disabled), plain.outputs(disabled), atol=1e-5), disabled
    cached.set_base({(0, 2)})  # greedy moves the cached reference state
    assert torch.allclose(cached.outputs({(0, 2), (1, 1)}), plain.outputs({(0, 2), (1, 1)}), atol=1e-5)
    assert torch.allclose(cached.outputs(set()), plain.outputs(set()), atol=1e-5)
    cached.set_base(set())  # and back: only the layers from the changed one are recomputed
    for disabled in [set(), {(1, 0)}, {(0, 3)}]:
        assert torch.allclose(cached.outputs(disabled), plain.outputs(disabled), atol=1e-5), disabled


def test_disabling_every_head_of_a_layer_equals_disabling_the_layer(tiny, cls_data):
    setup, ev = evaluator(tiny, cls_data)
    intact = ev.outputs(set())
    layers = ev.layers()
    for layer in range(2):
        heads = frozenset((layer, h) for h in range(4))
        by_heads = ev.outputs(heads)
        assert not torch.allclose(by_heads, intact, atol=1e-4)  # the layer matters
        e = ev.evaluate(heads)
        assert (e.score, e.loss) == (layers[layer].score, layers[layer].loss)
        # independent check: the whole model with that layer's heads switched by hand
        modules = setup.attention_modules
        modules[layer].set_uniform_heads(range(4))
        batch = ev.batches[0]
        with torch.no_grad():
            direct = setup.model(batch.src_tokens, features_only=True, classification_head_name=setup.head_name)[0]
        modules[layer].set_uniform_heads([])
        assert torch.allclose(by_heads[: len(batch.indices)], direct, atol=1e-5)


def test_disabled_layer_output_is_mean_of_values_over_real_keys(tiny, cls_data):
    setup, ev = evaluator(tiny, cls_data)
    module = setup.attention_modules[1]
    seen = {}

    def hook(mod, inputs, kwargs, output):
        seen["x"], seen["pad"], seen["out"] = kwargs["query"], kwargs["key_padding_mask"], output[0]

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        module.set_uniform_heads(range(4))
        batch = next(b for b in ev.batches if b.src_tokens.eq(1).any())  # a batch with padding
        with torch.no_grad():
            setup.model(batch.src_tokens, features_only=True)
    finally:
        handle.remove()
        module.set_uniform_heads([])
    x, pad = seen["x"], seen["pad"]
    real = (~pad).float().T.unsqueeze(-1)  # T x B x 1
    mean_v = (module.v_proj(x) * real).sum(0) / real.sum(0)  # B x C
    expected = module.out_proj(mean_v).unsqueeze(0).expand_as(seen["out"])
    assert torch.allclose(seen["out"], expected, atol=1e-5)


def test_ablating_an_already_uniform_head_changes_nothing(cls_data, tmp_path):
    save_checkpoint(tmp_path / "t.pt", cls_data, seed=4)
    setup, _ = evaluator(tmp_path / "t.pt", cls_data)
    with torch.no_grad():  # freshly initialised heads are nearly uniform already: make them sharp
        for m in setup.attention_modules:
            m.q_proj.weight.mul_(30)
    zero_query(setup.attention_modules[0], 2)
    dataset = setup.task.dataset("valid")
    ev = AblationEvaluator(setup, make_batches(dataset, select_indices(len(dataset)), 5), progress=False)
    intact = ev.outputs(set())
    assert torch.allclose(ev.outputs({(0, 2)}), intact, atol=1e-6)
    assert ev.evaluate({(0, 2)}).score == ev.base_evaluation.score
    assert (ev.outputs({(0, 1)}) - intact).abs().max() > 1e-3  # a real head does change it
    heads = ev.single_heads()
    assert heads[(0, 2)].score == ev.base_evaluation.score
    assert abs(heads[(0, 2)].loss - ev.base_evaluation.loss) < 1e-6


def test_greedy_random_and_lazy_greedy(tiny, cls_data):
    _, ev = evaluator(tiny, cls_data)
    heads = ev.single_heads()
    full = ev.greedy(3, initial=heads)
    first = min(heads, key=lambda lh: (heads[lh].key(), lh))
    assert full[0][0] == first and full[0][2] == 0  # step 1 reuses the single-head sweep
    assert [n for _, _, n in full[1:]] == [7, 6]
    removed = {lh for lh, _, _ in full}
    assert len(removed) == 3
    again = ev.evaluate(removed)
    assert (again.score, again.loss) == (full[-1][1].score, full[-1][1].loss)
    lazy = ev.greedy(3, candidates=2)
    assert [n for _, _, n in lazy] == [8, 2, 2]
    ((k, subsets, evals),) = ev.random_subsets([3], trials=4, seed=7)
    assert k == 3 and len(subsets) == 4 and all(len(set(map(tuple, s))) == 3 for s in subsets)
    assert ev.random_subsets([3], trials=4, seed=7)[0][1] == subsets  # seeded
    with pytest.raises(ValueError, match="out of range"):
        ev.random_subsets([9], trials=1)


# ----- patterns ----------------------------------------------------------------------------------
def test_heads_built_to_attend_cls_or_previous_token_are_vertical_and_diagonal(tiny, cls_data):
    setup = load_for_analysis(str(tiny), str(cls_data), device="cpu")
    module = setup.attention_modules[0]
    for head in (0, 2):
        zero_query(module, head)

    def keep(tgt, src):
        i = torch.arange(tgt)[:, None]
        j = torch.arange(src)[None, :]
        previous = (j == i - 1) | ((i == 0) & (j == 0))
        first = j == 0
        return torch.stack([first.expand(tgt, src), previous, first | previous, torch.ones(tgt, src, dtype=torch.bool)])

    module.set_keep_mask_fn(keep)
    torch.manual_seed(0)
    tokens = torch.randint(4, 40, (3, 20))
    tokens[:, 0], tokens[:, -1] = 0, 2
    typer = TokenTyper(setup.dictionary, setup.init_token, setup.separator_token)
    counter = PatternCounter(2, 4)
    with torch.no_grad():
        maps = torch.stack(setup.model.extract_attention(tokens), dim=1)
    for b in range(3):
        counter.update(maps[b], typer.types(tokens[b]))
    module.set_keep_mask_fn(None)
    majority = counter.majority()
    assert CLASSES[majority[0, 0]] == "vertical"
    assert CLASSES[majority[0, 1]] == "diagonal"
    assert CLASSES[majority[0, 2]] == "vertical+diagonal"
    assert counter.counts[0, 0, 0] == 3 and counter.counts[0, 1, 1] == 3  # every example, not just most
    feats = counter.mean_features()
    assert abs(float(feats["vertical"][0, 0]) - 1.0) < 1e-5 and abs(float(feats["diagonal"][0, 1]) - 0.9) < 1e-5


def test_block_and_heterogeneous_on_hand_built_maps():
    d = Dictionary()
    for w in ("a", "b", "."):
        d.add_symbol(w)
    a, b = d.index("a"), d.index("b")
    tokens = torch.tensor([d.bos()] + [a] * 6 + [d.eos()] + [b] * 6 + [d.eos()])
    types = TokenTyper(d, d.bos(), None).types(tokens)
    n = len(tokens)
    seg = torch.tensor([0] * 8 + [1] * 7)
    same = (seg[:, None] == seg[None, :]).float()
    same[:, [0, 7, 14]] = 0.02  # a little on the special tokens
    block = same / same.sum(-1, keepdim=True)
    uniform = torch.full((n, n), 1.0 / n)
    maps = torch.stack([block, uniform])[None]  # 1 layer, 2 heads
    feats = map_features(maps, types)
    assert float(feats["block"][0, 0]) == pytest.approx(1.0) and float(feats["block"][0, 1]) == pytest.approx(0.5)
    assert [CLASSES[c] for c in classify(feats)[0]] == ["block", "heterogeneous"]
    single = torch.tensor([d.bos()] + [a] * 13 + [d.eos()])
    feats1 = map_features(maps, TokenTyper(d, d.bos(), None).types(single))
    assert math.isnan(float(feats1["block"][0, 0]))  # one sentence has no blocks
    assert CLASSES[classify(feats1)[0, 0]] != "block"


def test_rule_thresholds_refit_to_hand_labels():
    """Labels made by stricter-than-default rules are reproduced once the thresholds are refitted."""
    rng = np.random.RandomState(0)
    feats = {
        "vertical": torch.tensor(rng.rand(120) * 0.8),
        "diagonal": torch.tensor(rng.rand(120) * 0.6),
        "block": torch.full((120,), float("nan")),
    }
    person = PatternThresholds(vertical=0.3, diagonal=0.35, minor=0.1, mixed=0.4)
    labels = classify(feats, person)
    assert metrics.cohen_kappa(classify(feats), labels) < 0.9  # the defaults disagree with this person
    fitted, in_sample, cv = calibrate(feats, labels, folds=3)
    assert metrics.accuracy(in_sample, labels) == 1.0 and metrics.cohen_kappa(cv, labels) > 0.8
    assert abs(fitted.vertical - 0.3) <= 0.05 and fitted.block == PatternThresholds().block


# ----- special tokens, drift, sparsity -----------------------------------------------------------
def test_special_token_scores_average_over_queries_then_max_over_keys():
    d = Dictionary()
    for w in ("hello", "world", ",", "##."):
        d.add_symbol(w)
    tokens = torch.tensor([d.bos(), d.index("hello"), d.index(","), d.index("world"), d.index("##."), d.eos()])
    types = TokenTyper(d, d.bos(), None).types(tokens)
    assert types.tolist() == [CLS, 0, PUNCT, 0, PUNCT, SEP]
    n = len(tokens)
    a = torch.zeros(n, n)
    a[:, 5] = 0.7  # every query: 0.7 on [SEP]
    a[:3, 2] = 0.3  # the first three queries: 0.3 on ','
    a[3:, 4] = 0.3  # the others: 0.3 on '##.'
    maps = torch.stack([a, a.roll(1, dims=1)])[None]  # head 2 shifts every key by one
    acc = SpecialTokenAttention(1, 2)
    acc.update(maps, types)
    s = acc.scores()
    assert float(s["sep"][0, 0]) == pytest.approx(0.7) and float(s["punct"][0, 0]) == pytest.approx(0.15)
    assert float(s["cls"][0, 0]) == 0 and float(s["cls"][0, 1]) == pytest.approx(0.7)  # rolled onto [CLS]
    row = acc.last_layer_cls_row()
    assert float(row["sep"][0]) == pytest.approx(0.7) and float(row["punct"][0]) == pytest.approx(0.3)


def test_sparsity_stats_count_exact_zeros(tiny, cls_data):
    # a softmax checkpoint read with sparsemax, as SSAF fine-tuning starts
    setup = load_for_analysis(str(tiny), str(cls_data), device="cpu", model_overrides={"attn_normalizer": "sparsemax"})
    assert setup.normalizer == "sparsemax"
    with torch.no_grad():
        for m in setup.attention_modules:  # sharper scores, so sparsemax leaves keys out
            m.q_proj.weight.mul_(30)
    dataset = setup.task.dataset("valid")
    batches = make_batches(dataset, select_indices(len(dataset)), 4)
    stats = SparsityStats(2, 4)
    nonzero, pairs, single = torch.zeros(2, 4), 0, torch.zeros(2, 4)
    for _, tokens, maps in iterate_maps(setup.model, batches, setup.dictionary.pad(), progress=False):
        stats.update(maps)
        assert torch.allclose(maps.sum(-1), torch.ones(2, 4, len(tokens)), atol=1e-5)
        nonzero += (maps != 0).sum(dim=(-2, -1))
        single += ((maps != 0).sum(-1) == 1).sum(-1)
        pairs += len(tokens) ** 2
    j = stats.to_json()
    assert torch.allclose(j["density"].float(), nonzero / pairs, atol=1e-6)
    assert float(j["density"].max()) < 1.0  # sparsemax really produced zeros
    assert torch.allclose(j["share_rows_single_key"].float(), single / stats.rows, atol=1e-6)
    assert float(j["min_support"].min()) >= 1


# ----- CNN and metrics ---------------------------------------------------------------------------
def synthetic_maps(n, seed):
    """Maps of each class drawn with noise: the patterns a person would label."""
    rng = np.random.RandomState(seed)
    images, labels = [], []
    for k in range(n):
        c = k % 4  # vertical, diagonal, vertical+diagonal, heterogeneous
        L = rng.randint(12, 40)
        a = rng.rand(L, L) * 0.2
        if c in (0, 2):
            a[:, 0] += 3.0
            a[:, -1] += 1.5
        if c in (1, 2):
            a[np.arange(1, L), np.arange(L - 1)] += 3.0
        if c == 3:
            a += rng.rand(L, L)
        a /= a.sum(-1, keepdims=True)
        images.append(map_image(torch.tensor(a), 32))
        labels.append([0, 1, 2, 4][c])
    return np.stack(images), np.array(labels)


def test_cnn_learns_labelled_maps_and_round_trips(tmp_path):
    images, labels = synthetic_maps(80, seed=0)
    test_images, test_labels = synthetic_maps(40, seed=1)
    model = train_cnn(images, labels, epochs=20, seed=0)
    pred = predict(model, test_images).numpy()
    assert metrics.accuracy(pred, test_labels) >= 0.85
    save_cnn(model, tmp_path / "cnn.pt")
    assert np.array_equal(predict(load_cnn(tmp_path / "cnn.pt"), test_images).numpy(), pred)
    cv = cross_validated_predictions(images[:24], labels[:24], folds=3, epochs=3)
    assert cv.shape == (24,) and set(cv) <= set(range(len(CLASSES)))
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(
        "map_id,example,layer,head,png,label\n0,0,1,1,a.png,v\n1,0,1,2,b.png,\n"
        "2,0,1,3,c.png,vertical+diagonal\n3,0,2,1,d.png, H \n"
    )
    assert read_labels(labels_csv) == {0: 0, 2: 2, 3: 4}
    labels_csv.write_text("map_id,label\n0,vertikal\n")
    with pytest.raises(ValueError, match="line 2.*vertikal"):
        read_labels(labels_csv)


def test_metrics_on_known_cases():
    # kappa: 20 items, observed agreement 0.7, chance agreement 0.5 -> 0.4
    a = [0] * 10 + [1] * 10
    b = [0] * 7 + [1] * 3 + [1] * 7 + [0] * 3
    assert metrics.cohen_kappa(a, b) == pytest.approx(0.4)
    assert metrics.cohen_kappa(a, a) == 1.0
    logits = torch.tensor([[2.0, 0], [0, 2], [0, 2], [2, 0], [0, 2]])
    gold = torch.tensor([0, 1, 0, 0, 1])
    assert metrics.score("accuracy", logits, gold) == pytest.approx(0.8)
    assert metrics.score("f1", logits, gold) == pytest.approx(0.8)  # p = 2/3, r = 1
    assert metrics.score("mcc", logits, gold) == pytest.approx((2 * 2 - 1 * 0) / math.sqrt(3 * 2 * 3 * 2))
    x = torch.tensor([1.0, 2, 2, 3])
    assert metrics.score("spearman", x, torch.tensor([10.0, 20, 20, 40])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="classification head"):
        metrics.check_metric("pearson", regression=False)


def test_confusion_counts_rows_are_gold_columns_predicted():
    gold, pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    assert metrics.confusion_counts(gold, pred, 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


# ----- the command line --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(cls_data, tmp_path_factory):
    """A tiny sparsemax classifier trained by fairseq-train, with an early and a last checkpoint."""
    save = tmp_path_factory.mktemp("trained")
    run_cli(
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
            "--attn-normalizer",
            "sparsemax",
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
            24,
            "--save-interval-updates",
            5,
            "--log-format",
            "simple",
            "--save-dir",
            save,
            "--no-epoch-checkpoints",
            "--num-workers",
            0,
            "--seed",
            1,
            "--init-token",
            0,
            "--separator-token",
            2,
            "--disable-validation",
        ]
    )
    return save


def read(path):
    return json.loads(Path(path).read_text())


def check_ablation_against_direct_forward(ab, ckpt, cls_data):
    """ablate.json's figures recomputed without the evaluator: the whole model run on every valid
    example with one head (and one layer) switched to uniform by hand."""
    setup = load_for_analysis(str(ckpt), str(cls_data), device="cpu")
    dataset = setup.task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    gold = sample["target"].reshape(-1)

    def gold_logprob():
        with torch.no_grad():
            logits = setup.model(
                sample["net_input"]["src_tokens"], features_only=True, classification_head_name=setup.head_name
            )[0]
        return torch.log_softmax(logits.double(), -1)[torch.arange(len(gold)), gold], logits.argmax(-1)

    intact, pred = gold_logprob()
    assert ab["run"]["examples"] == len(gold) == 16
    assert ab["intact"]["score"] == pytest.approx(float((pred == gold).double().mean()))
    assert ab["intact"]["per_example_mean"] == pytest.approx(float(intact.mean()), abs=1e-5)
    module = setup.attention_modules[1]
    for head in range(4):
        module.set_uniform_heads([head])
        ablated, _ = gold_logprob()
        assert ab["heads"]["per_example_delta"][1][head] == pytest.approx(float((ablated - intact).mean()), abs=1e-5)
    module.set_uniform_heads(range(4))
    ablated, _ = gold_logprob()
    module.set_uniform_heads([])
    assert ab["layers"]["per_example_delta"][1] == pytest.approx(float((ablated - intact).mean()), abs=1e-5)
    # the counts are read off the intervals: above 0 improves, below 0 hurts
    low, high = np.array(ab["heads"]["interval_low"]), np.array(ab["heads"]["interval_high"])
    delta = np.array(ab["heads"]["per_example_delta"])
    assert np.all(low <= high) and np.any(high - low > 1e-4)
    assert {(c["layer"], c["head"]) for c in ab["heads_improving_beyond_interval"]} == {
        (l + 1, h + 1) for l, h in zip(*np.nonzero(low > 0))
    }
    assert {(c["layer"], c["head"]) for c in ab["heads_hurting_beyond_interval"]} == {
        (l + 1, h + 1) for l, h in zip(*np.nonzero(high < 0))
    }
    assert (delta != 0).all() and ab["bootstrap"]["resamples"] == 1000


def test_ablate_json_matches_a_direct_forward(tiny, cls_data, tmp_path):
    state = read_checkpoint(tiny)
    for key in state["model"]:
        if key.endswith("self_attn.q_proj.weight"):  # sharp heads: disabling one moves the outputs
            state["model"][key] = state["model"][key] * 30
    sharp = tmp_path / "sharp.pt"
    torch.save(state, sharp)
    analyze(["ablate", str(sharp), "--data", str(cls_data), "--out-dir", str(tmp_path), "--no-progress"])
    check_ablation_against_direct_forward(read(tmp_path / "ablate.json"), sharp, cls_data)


def test_paired_bootstrap_intervals():
    torch.manual_seed(0)
    base = torch.randn(400, dtype=torch.float64) * 3  # examples differ a lot from one another ...
    shifted = base + 0.05  # ... but a change that moves every example by +0.05 is certain
    noisy = base + 0.05 + torch.randn(400, dtype=torch.float64)  # per-example noise of sd 1
    counts = resample_counts(400, resamples=1000, seed=3)
    assert counts.shape == (1000, 400) and torch.all(counts.sum(1) == 400)
    iv = paired_intervals(base, torch.stack([shifted, noisy]), counts)
    assert float(iv.delta[0]) == pytest.approx(0.05) and float(iv.low[0]) == pytest.approx(0.05)
    assert float(iv.high[0]) == pytest.approx(0.05)  # paired: the spread of `base` itself cancels
    width = float(iv.high[1] - iv.low[1])
    sd = float((noisy - base).std())
    assert width == pytest.approx(2 * 1.96 * sd / 20, rel=0.15)  # the normal interval of a mean of 400
    assert float(iv.low[1]) < float(iv.delta[1]) < float(iv.high[1])
    again = paired_intervals(base, torch.stack([shifted, noisy]), resample_counts(400, resamples=1000, seed=3))
    assert torch.equal(again.low, iv.low) and torch.equal(again.high, iv.high)  # seeded
    with pytest.raises(ValueError, match="--confidence must be in"):
        paired_intervals(base, shifted[None], counts, confidence=95)


def test_cli_end_to_end(trained, cls_data, tmp_path):
    ckpt = trained / "checkpoint_last.pt"
    early = min(trained.glob("checkpoint_*_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))  # after 5 updates
    common = ["--data", cls_data, "--no-progress"]
    out = tmp_path / "out"
    # the console script itself, once
    result = run_cli(
        [
            "fairseq-sparse-analyze",
            "ablate",
            ckpt,
            *common,
            "--out-dir",
            out,
            "--random-heads",
            1,
            4,
            "--random-trials",
            2,
            "--greedy-steps",
            2,
            "--threads",
            1,
        ]
    )
    assert "wrote" in result.stdout and "heads improve" in result.stdout
    ab = read(out / "ablate.json")
    assert len(ab["heads"]["delta"]) == 2 and len(ab["heads"]["delta"][0]) == 4 and len(ab["layers"]["delta"]) == 2
    assert ab["metric"] == "accuracy" and ab["per_example_metric"] == "gold_logprob"
    assert [r["k"] for r in ab["random"]] == [1, 4] and len(ab["greedy"]["steps"]) == 2
    assert ab["run"]["attn_normalizer"] == "sparsemax"
    for png in ("ablate_heads.png", "ablate_layers.png", "ablate_pruning.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"

    analyze(["maps", ckpt, *common, "--out-dir", out, "--examples", 0, 5, "--save-maps"])
    maps = read(out / "maps.json")
    assert [e["index"] for e in maps["examples"]] == [0, 5]
    assert maps["examples"][0]["tokens"][0] == "<s>" and (out / "maps_valid_5.png").exists()
    saved = np.load(out / "maps_valid_0.npz")["maps"]
    assert saved.shape[:2] == (2, 4) and np.allclose(saved.sum(-1), 1, atol=1e-5)

    analyze(["patterns", ckpt, *common, "--out-dir", out, "--max-examples", 6])
    pat = read(out / "patterns.json")
    assert pat["maps_classified"] == 6 * 8
    assert sum(pat["share_overall"].values()) == pytest.approx(1.0)
    assert 0 < pat["sparsity"]["overall_density"] < 1 and (out / "attention_density.png").exists()

    lab = tmp_path / "label"
    analyze(["label-maps", ckpt, *common, "--out-dir", lab, "--num-maps", 12, "--max-examples", 6])
    exported = np.load(lab / "maps.npz")
    rows = list(csv.DictReader(open(lab / "labels.csv")))
    assert len(rows) == 12 and all(r["label"] == "" for r in rows) and (lab / rows[0]["png"]).exists()
    for r, rule in zip(rows, exported["rule_label"]):  # a "person" who agrees with the rules
        r["label"] = CLASSES[rule]
    with open(lab / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    analyze(
        [
            "train-cnn",
            "--maps",
            lab / "maps.npz",
            "--labels",
            lab / "labels.csv",
            "--out-dir",
            lab,
            "--folds",
            2,
            "--epochs",
            2,
        ]
    )
    agreement = read(lab / "cnn_agreement.json")
    assert agreement["labelled_maps"] == 12 and agreement["rules_vs_human"]["accuracy"] == 1.0
    analyze(["patterns", ckpt, *common, "--out-dir", out, "--max-examples", 3, "--cnn", lab / "pattern_cnn.pt"])
    cnn = read(out / "patterns.json")["cnn"]
    assert 0 <= cnn["agreement_with_rules"]["accuracy"] <= 1 and "cohen_kappa" in cnn["agreement_with_rules"]

    analyze(["special-tokens", ckpt, *common, "--out-dir", out])
    sp = read(out / "special_tokens.json")
    assert sp["examples_with_type"]["cls"] == 16 and len(sp["scores"]["sep"]) == 2
    assert (out / "cls_row_last_layer.png").exists()

    analyze(["drift", early, ckpt, *common, "--out-dir", out / "changed"])
    assert read(out / "changed" / "drift.json")["overall_mean"] < 0.999


def test_drift_finds_exactly_the_changed_head(tiny, cls_data, tmp_path):
    """Change the queries of layer 2, head 3 only: every other head's maps stay identical (layer 1
    runs before it; the other heads of layer 2 see the same input), and that head's maps move."""
    state = read_checkpoint(tiny)
    changed = tmp_path / "changed.pt"
    q = state["model"]["encoder.sentence_encoder.layers.1.self_attn.q_proj.weight"]
    head_dim = q.size(0) // 4
    torch.manual_seed(0)
    q[2 * head_dim : 3 * head_dim] = torch.randn(head_dim, q.size(1)) * q.std() * 30
    torch.save(state, changed)
    analyze(
        [
            "drift",
            str(tiny),
            str(changed),
            "--data",
            str(cls_data),
            "--no-progress",
            "--max-examples",
            "16",
            "--out-dir",
            str(tmp_path),
        ]
    )
    cos = np.array(read(tmp_path / "drift.json")["cosine_mean"])
    assert cos.shape == (2, 4)
    unchanged = np.ones_like(cos, dtype=bool)
    unchanged[1, 2] = False
    assert np.allclose(cos[unchanged], 1.0, atol=1e-5), cos
    assert cos[1, 2] < 0.99, cos
    assert read(tmp_path / "drift.json")["least_similar_heads"][0] == {"layer": 2, "head": 3, "cosine": cos[1, 2]}


def test_cli_errors_name_the_bad_value(tiny, cls_data, tmp_path):
    def fails(argv, message):
        with pytest.raises(SystemExit) as err:
            analyze(argv)
        assert message in str(err.value), str(err.value)

    fails(["maps", tiny, "--data", tmp_path, "--out-dir", tmp_path], "is not a sentence_prediction data directory")
    fails(["maps", tmp_path / "none.pt", "--data", cls_data, "--out-dir", tmp_path], "checkpoint not found")
    fails(["maps", tiny, "--data", cls_data, "--out-dir", tmp_path, "--examples", 99], "[99] out of range")
    fails(["maps", tiny, "--data", cls_data, "--out-dir", tmp_path, "--split", "test"], "split 'test' not found")
    fails(["maps", tiny, "--data", cls_data, "--out-dir", tmp_path, "--text", "w1 w2"], "records no BPE")
    fails(["ablate", tiny, "--data", cls_data, "--out-dir", tmp_path, "--metric", "pearson"], "--metric 'pearson'")
    fails(
        ["patterns", tiny, "--data", cls_data, "--out-dir", tmp_path, "--block-threshold", "1.5"],
        "block=1.5 must be in [0, 1]",
    )
    fails(
        ["maps", tiny, "--data", cls_data, "--out-dir", tmp_path, "--model-overrides", "sparsemax"],
        "is not a dict literal",
    )


def test_minilm_finetuned_on_pairs_then_analysed(tmp_path, capfd):
    """The real MiniLM: converted, a few fine-tuning updates on RTE-style pairs (with its token
    types), then the head analysis on the fine-tuned checkpoint."""
    import importlib.util

    from test_convert import minilm_dir
    from test_glue import write_glue

    from fairseq_sparse.convert import convert_bert

    def script(rel):
        spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], Path(__file__).parents[1] / rel)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    src = minilm_dir()
    ckpt_dir = tmp_path / "minilm"
    convert_bert(src, str(ckpt_dir))
    write_glue(str(tmp_path / "GLUE"), n=16)
    data = tmp_path / "rte"
    script("examples/glue/preprocess.py").main(
        [
            "--glue-dir",
            str(tmp_path / "GLUE"),
            "--task",
            "RTE",
            "--dest",
            str(data),
            "--no-test",
            "--bpe",
            "bert_wordpiece",
            "--bpe-vocab-file",
            str(ckpt_dir / "vocab.txt"),
            "--srcdict",
            str(ckpt_dir / "dict.txt"),
        ]
    )
    save = tmp_path / "ft"
    script("examples/glue/finetune.py").main(
        [
            "--task",
            "RTE",
            "--data",
            str(data),
            "--checkpoint",
            str(ckpt_dir / "model.pt"),
            "--save-dir",
            str(save),
            "--dry-run",
            "--",
            "--cpu",
            "--max-update",
            "2",
            "--batch-size",
            "8",
            "--warmup-updates",
            "0",
            "--lr",
            "1e-4",
            "--num-workers",
            "0",
            "--log-format",
            "simple",
            "--log-interval",
            "1",
            "--seed",
            "1",
        ]
    )
    cmd = shlex.split(capfd.readouterr().out.strip().splitlines()[-1])
    assert "--segment-embeddings" in cmd and cmd[cmd.index("--segment-embeddings") + 1] == "2"
    run = subprocess.run(
        [sys.executable] + cmd[1:], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert re.search(r"valid on 'valid' subset .*\| accuracy ([\d.]+)", log), log[-2000:]
    before = read_checkpoint(ckpt_dir / "model.pt")["model"]
    after = read_checkpoint(save / "checkpoint_last.pt")["model"]
    key = "encoder.sentence_encoder.segment_embeddings.weight"
    assert after[key].shape == (2, 384) and not torch.equal(before[key], after[key])  # token types trained
    assert after["classification_heads.sentence_classification_head.out_proj.weight"].shape == (2, 384)

    out = tmp_path / "analysis"
    common = ["--data", str(data), "--no-progress", "--out-dir", str(out)]
    analyze(["maps", str(save / "checkpoint_last.pt"), *common, "--examples", "0", "--save-maps"])
    maps = np.load(out / "maps_valid_0.npz")["maps"]
    assert maps.shape[:2] == (6, 12) and np.allclose(maps.sum(-1), 1, atol=1e-4)
    analyze(["special-tokens", str(save / "checkpoint_last.pt"), *common, "--max-examples", "8"])
    sp = read(out / "special_tokens.json")
    assert sp["examples_with_type"]["cls"] == 8 and len(sp["scores"]["sep"]) == 6
