"""sparse_roberta as a fairseq model: stock equivalence, checkpoints, training, the hub interface."""

import argparse
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import USER_DIR, run_cli, tiny_mlm_args
from fairseq import options, tasks

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.convert.checkpoint import checkpoint_model_args
from fairseq_sparse.models.sparse_roberta import (
    SparseRobertaModel,
    sparse_roberta_base_architecture,
    sparsebert_base_architecture,
)
from fairseq_sparse.models.sparse_roberta_options import DAM_FORM_DEFAULTS, GROUPS, OPTIONS, options_markdown

NORMALIZERS = ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect"]
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


def build(data, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--task", "masked_lm", "--tokens-per-sample", "32"] + extra)
    task = tasks.setup_task(args)
    return task.build_model(args)


def tokens():
    torch.manual_seed(0)
    t = torch.randint(4, 40, (3, 20))
    t[:, 0] = 0
    t[1, 14:] = 1  # padding
    return t


def test_softmax_model_equals_stock_roberta(mlm_data):
    torch.manual_seed(0)
    stock = build(mlm_data, ["--arch", "roberta"] + TINY).eval()
    ours = build(mlm_data, ["--arch", "sparse_roberta_tiny"]).eval()
    assert set(stock.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(stock.state_dict())
    with torch.no_grad():
        assert torch.equal(stock(tokens())[0], ours(tokens())[0])
        maps = ours.extract_attention(tokens())
        assert torch.allclose(stock(tokens())[0], ours(tokens())[0], atol=1e-6)  # hooks removed again
    assert len(maps) == 2 and maps[0].shape == (3, 4, 20, 20)


@pytest.mark.parametrize("arch,layers,dim", [("sparse_roberta_base", 12, 768), ("sparse_roberta_large", 24, 1024)])
def test_named_architectures_match_roberta_sizes(arch, layers, dim):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["x", "--task", "masked_lm", "--arch", arch])
    assert (args.encoder_layers, args.encoder_embed_dim) == (layers, dim)
    assert args.attn_normalizer == "softmax"


def test_layer_norm_eps_option(mlm_data):
    model = build(mlm_data, ["--arch", "sparse_roberta_tiny", "--layer-norm-eps", "1e-12"])
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-12}


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--sparsegen-lambda", "1.5", "--attn-normalizer", "sparsegen_lin"], "--sparsegen-lambda must be < 1.*1.5"),
        (["--entmax-alpha", "0.8", "--attn-normalizer", "entmax_bisect"], r"--entmax-alpha must be in \(1, 2\].*0.8"),
        (["--attn-normalizer", "sparsemax", "--learn-entmax-alpha"], "--learn-entmax-alpha needs"),
        # 0 is a value, not "unset": never replaced by the default
        (["--entmax-alpha", "0"], r"--entmax-alpha must be in \(1, 2\], got 0.0"),
        (["--layer-norm-eps", "0"], "--layer-norm-eps must be a finite number > 0, got 0.0"),
        (["--sparsity-schedule-start-alpha", "0"], r"--sparsity-schedule-start-alpha must be in \(1, 2\], got 0.0"),
        (
            ["--attn-normalizer", "entmax_bisect", "--sparsity-schedule-updates", "-1"],
            r"--sparsity-schedule-updates must be >= 0 \(0 = no schedule\), got -1",
        ),
        (["--attn-normalizer", "sparsemax", "--sparsity-schedule-updates", "5"], "--sparsity-schedule-updates anneals"),
        (["--entmax-n-iter", "0"], "--entmax-n-iter must be >= 1, got 0"),
        (["--dam-tau", "0"], "--dam-tau must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_values_fail_at_build(mlm_data, flags, message):
    with pytest.raises(ValueError, match=message):
        build(mlm_data, ["--arch", "sparse_roberta_tiny"] + flags)


def test_unset_options_get_their_declared_defaults():
    """A command line without the plugin's options, or a checkpoint saved before one existed."""
    args = argparse.Namespace()
    sparse_roberta_base_architecture(args)
    declared = {opt.name: opt.default for opt in OPTIONS} | DAM_FORM_DEFAULTS["product"]  # the default form's
    assert {opt.name: getattr(args, opt.name) for opt in OPTIONS} == declared
    assert args.attn_normalizer == "softmax" and args.layer_norm_eps == 1e-5 and args.entmax_alpha == 1.5
    args = argparse.Namespace(dam_form="additive")
    sparse_roberta_base_architecture(args)  # a form's own start and logit scale, unless given
    assert (args.dam_init, args.dam_logit_scale) == (0.0, 1.0)
    args = argparse.Namespace(dam_form="additive", dam_logit_scale=7.0)
    sparse_roberta_base_architecture(args)
    assert (args.dam_init, args.dam_logit_scale) == (0.0, 7.0)
    args = argparse.Namespace(attn_mask=None, dam_share_layers=False)
    sparsebert_base_architecture(args)  # the preset's own values, then the declared defaults
    assert (args.attn_mask, args.dam_share_layers, args.dam_no_diagonal, args.dam_tau) == ("dam", True, True, 1.0)


def test_readme_option_tables_are_the_declarations():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    tables = [options_markdown(title) for title in GROUPS]
    for table in tables:
        assert table in readme, f"README's table differs from the declarations; it should read:\n{table}"
    documented = {line for line in readme.splitlines() if line.startswith("| `--")}
    declared = {line for table in tables for line in table.splitlines()}
    assert documented <= declared, f"README documents options not declared: {sorted(documented - declared)}"
    parser = options.get_training_parser()
    SparseRobertaModel.add_args(parser)
    assert all(opt.flag in parser._option_string_actions for opt in OPTIONS)


def test_attention_counts_match_the_maps(mlm_data):
    """The counts the criteria log (modules/attention_stats.py) are those of the maps the model used:
    non-zero weights over real (query, key) pairs, padded queries and keys left out."""
    model = build(
        mlm_data,
        [
            "--arch",
            "sparse_roberta_tiny",
            "--attn-normalizer",
            "sparsemax",
            "--dropout",
            "0",
            "--attention-dropout",
            "0",
        ],
    )
    toks = tokens()
    real = toks.ne(1)
    model.train()
    with torch.no_grad():
        model(toks)
        counts = model.attention_density_counts()
        maps = model.extract_attention(toks)
    pair = real[:, None, :, None] & real[:, None, None, :]
    lengths = real.sum(dim=1).double()
    for layer, probs in enumerate(maps):
        assert counts[layer].nonzero.tolist() == ((probs > 0) & pair).sum(dim=(0, 2, 3)).double().tolist()
        assert counts[layer].pairs.tolist() == [lengths.square().sum().item()] * 4
        assert counts[layer].rows.tolist() == [lengths.sum().item()] * 4
        assert (counts[layer].nonzero < counts[layer].pairs).all()  # sparsemax has exact zeros at initialisation
    model.eval()
    model(toks)
    assert model.attention_density_counts() == [None, None]  # training only, as fairseq logs train stats


@pytest.mark.slow  # ten fairseq-train runs
@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_fairseq_train_each_normalizer_then_resume(mlm_data, tmp_path, normalizer):
    extra = [
        "--attn-normalizer",
        normalizer,
        "--tensorboard-logdir",
        tmp_path / "tb",
        "--criterion",
        "masked_lm_sparse",
    ]
    if normalizer == "sparsegen_lin":
        extra += ["--sparsegen-lambda", "-4"]
    if normalizer == "entmax_bisect":
        extra += ["--learn-entmax-alpha"]
    first = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=3, extra=extra))
    log = first.stdout + first.stderr
    losses = [float(x) for x in re.findall(r"train_inner .*? loss=([0-9.]+)", log)]
    # a freshly initialised MLM predicts close to uniformly: log2(vocabulary) bits, not NaN or a blow-up
    uniform = math.log2(sum(1 for _ in open(mlm_data / "dict.txt")) + 5)  # + 4 specials + <mask>
    assert len(losses) == 3 and all(abs(l - uniform) < 0.5 for l in losses), (uniform, log[-2000:])
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()
    stats = {
        k: [float(x) for x in re.findall(rf"train_inner .*?{k}=([0-9.]+)", log)]
        for k in ("attn_density_l0", "attn_support_l0", "attn_density_l1", "attn_support_l1")
    }
    if normalizer == "softmax":
        assert stats["attn_density_l0"] == [], "softmax has no zeros: nothing to count"
    else:
        assert all(len(v) == 3 for v in stats.values()), log[-2000:]
        # support / density = real pairs / real rows: the same batch for both layers
        for d0, s0, d1, s1 in zip(*stats.values()):
            assert s0 / d0 == pytest.approx(s1 / d1, rel=0.01)
        if normalizer == "sparsemax":
            assert all(d < 1 for d in stats["attn_density_l0"]), "exact zeros even at initialisation"
        assert list((tmp_path / "tb").glob("train_inner/events.out.tfevents.*"))
    second = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=5, extra=extra))
    log2 = second.stdout + second.stderr
    assert "Loaded checkpoint" in log2 and "num_updates=4" in log2 and "num_updates=5" in log2, log2[-2000:]
    state = torch.load(tmp_path / "ck" / "checkpoint_last.pt", map_location="cpu")
    assert checkpoint_model_args(tmp_path / "ck" / "checkpoint_last.pt")["attn_normalizer"] == normalizer
    assert state["optimizer_history"][-1]["num_updates"] == 5


def test_stock_roberta_checkpoint_finetunes_as_sparse(mlm_data, cls_data, tmp_path):
    """SSAF: pre-train stock `roberta`, restore it into sparse_roberta with sparsegen_lin, fine-tune."""
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "stock", arch="roberta", updates=2, extra=TINY))
    stock_ckpt = tmp_path / "stock" / "checkpoint_last.pt"
    result = run_cli(
        [
            "fairseq-train",
            cls_data,
            "--user-dir",
            USER_DIR,
            "--cpu",
            "--task",
            "sentence_prediction",
            "--criterion",
            "sentence_prediction_sparse",
            "--num-classes",
            2,
            "--arch",
            "sparse_roberta_tiny",
            "--attn-normalizer",
            "sparsegen_lin",
            "--sparsegen-lambda",
            "-2",
            "--restore-file",
            stock_ckpt,
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
            3,
            "--log-format",
            "simple",
            "--log-interval",
            1,
            "--save-dir",
            tmp_path / "ft",
            "--no-epoch-checkpoints",
            "--num-workers",
            0,
            "--seed",
            1,
            "--init-token",
            0,
            "--separator-token",
            2,
        ]
    )
    log = result.stdout + result.stderr
    assert "Loaded checkpoint" in log and str(stock_ckpt) in log
    assert "Missing key" not in log and "Unexpected key" not in log
    valid = re.search(r"valid on 'valid' subset \| loss ([\d.]+) .*\| accuracy ([\d.]+)", log)
    assert valid, log[-2000:]
    loss, accuracy = _valid_loss_and_accuracy(tmp_path / "ft" / "checkpoint_last.pt", cls_data)
    assert float(valid.group(1)) == pytest.approx(loss, abs=6e-4)  # what the checkpoint computes (rounded)
    assert float(valid.group(2)) == pytest.approx(accuracy, abs=0.051)
    assert "attn_density_l0" in log  # sentence_prediction_sparse: the stock loss plus the density
    stock = torch.load(stock_ckpt, map_location="cpu")["model"]
    tuned = torch.load(tmp_path / "ft" / "checkpoint_last.pt", map_location="cpu")["model"]
    emb = "encoder.sentence_encoder.embed_tokens.weight"
    assert stock[emb].shape == tuned[emb].shape and not torch.equal(stock[emb], tuned[emb])
    assert "encoder.sentence_encoder.layers.0.self_attn.q_proj.weight" in tuned


def _valid_loss_and_accuracy(checkpoint, data):
    """(loss in bits per example, accuracy %) of the checkpoint's own predictions on the valid split."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)}
    )
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = models[0].eval()(
            **sample["net_input"], features_only=True, classification_head_name="sentence_classification_head"
        )[0]
    target = sample["target"].view(-1)
    loss = torch.nn.functional.cross_entropy(logits.float(), target).item() / math.log(2)
    return loss, 100.0 * (logits.argmax(-1) == target).double().mean().item()


def test_hub_interface_predictions_and_attention_maps(mlm_data, tmp_path):
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=2, extra=["--attn-normalizer", "sparsemax"]))
    hub = SparseRobertaModel.from_pretrained(
        str(tmp_path / "ck"), "checkpoint_last.pt", data_name_or_path=str(mlm_data), bpe=None
    )
    hub.eval()
    toks = hub.task.source_dictionary.encode_line("w1 w2 w3 w4 w5", append_eos=True).long()
    toks = torch.cat([torch.tensor([0]), toks])
    features = hub.extract_features(toks)
    assert features.shape == (1, 7, 64)
    maps = hub.model.extract_attention(toks.unsqueeze(0))
    assert len(maps) == 2 and maps[1].shape == (1, 4, 7, 7)
    assert torch.allclose(maps[0].sum(-1), torch.ones(1, 4, 7), atol=1e-5)
    assert {m.normalizer_name for m in hub.model.attention_modules()} == {"sparsemax"}


class _RunsCode:
    """Unpickling this calls a function: what weights-only loading must refuse."""

    def __reduce__(self):
        return (print, ("UNPICKLED",))


def test_checkpoint_reader_refuses_bad_files(mlm_data, tmp_path, capsys):
    from fairseq_sparse.analysis.loading import read_checkpoint as analysis_read
    from fairseq_sparse.checkpoint_reader import read_checkpoint, read_model_state
    from fairseq_sparse.convert.checkpoint import checkpoint_model_args, encoder_flags

    model = build(mlm_data, ["--arch", "sparse_roberta_tiny"])
    good = tmp_path / "good.pt"
    args = argparse.Namespace(arch="sparse_roberta_tiny", encoder_layers=2, layer_norm_eps=1e-12)
    torch.save({"args": args, "model": model.state_dict(), "best": np.float64(0.5)}, good)
    assert set(read_checkpoint(good)["model"]) == set(model.state_dict())
    assert encoder_flags(good) == ["--encoder-layers", "2", "--layer-norm-eps", "1e-12"]
    assert set(read_model_state(good)) == set(model.state_dict())

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    evil = tmp_path / "evil.pt"
    torch.save({"args": None, "model": {}, "extra": _RunsCode()}, evil)
    bare = tmp_path / "list.pt"
    torch.save([torch.ones(2)], bare)
    cases = [
        (truncated, "truncated or corrupt"),
        (text, "is not a torch checkpoint.*b'not '"),
        (evil, "could run code: print "),
        (bare, "is not a fairseq checkpoint.*list"),
    ]
    for reader in (read_checkpoint, checkpoint_model_args, analysis_read):
        for path, message in cases:
            with pytest.raises(ValueError, match=message):
                reader(path)
        with pytest.raises(FileNotFoundError, match="missing.pt"):
            reader(tmp_path / "missing.pt")
    assert "UNPICKLED" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="neither a fairseq checkpoint nor a state dict.*list"):
        read_model_state(bare)


def test_dropping_a_frozen_mask_warns(mlm_data, tmp_path, caplog):
    """A checkpoint trained through a frozen mask, restored into a model without one, runs dense:
    that must be a warning, not an INFO line."""
    mask = np.tril(np.ones((32, 32), dtype=bool))
    np.save(tmp_path / "mask.npy", mask)
    masked = build(
        mlm_data,
        ["--arch", "sparse_roberta_tiny", "--attn-mask", "file", "--attn-mask-file", str(tmp_path / "mask.npy")],
    )
    state = masked.state_dict()
    assert "encoder.sentence_encoder.attn_masks.frozen_attn_mask" in state
    dense = build(mlm_data, ["--arch", "sparse_roberta_tiny"])
    with caplog.at_level("INFO", logger="fairseq_sparse"):
        dense.load_state_dict(state, strict=True)
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "frozen_attn_mask" in r.getMessage()]
    assert warned and "attends densely" in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level("INFO", logger="fairseq_sparse"):  # a run with its own mask drops it quietly
        build(mlm_data, ["--arch", "sparse_roberta_tiny", "--attn-mask", "bigbird"]).load_state_dict(state)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
