"""sparse_roberta as a fairseq model: stock equivalence, checkpoints, training, the hub interface."""
import re

import pytest
import torch
from fairseq import options, tasks

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.models.sparse_roberta import SparseRobertaModel
from conftest import USER_DIR, run_cli, tiny_mlm_args

NORMALIZERS = ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect"]
TINY = ["--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "256",
        "--encoder-attention-heads", "4"]


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


@pytest.mark.parametrize("flags,message", [
    (["--sparsegen-lambda", "1.5", "--attn-normalizer", "sparsegen_lin"], "--sparsegen-lambda must be < 1.*1.5"),
    (["--entmax-alpha", "0.8", "--attn-normalizer", "entmax_bisect"], r"--entmax-alpha must be in \(1, 2\].*0.8"),
    (["--attn-normalizer", "sparsemax", "--learn-entmax-alpha"], "--learn-entmax-alpha needs"),
])
def test_bad_values_fail_at_build(mlm_data, flags, message):
    with pytest.raises(ValueError, match=message):
        build(mlm_data, ["--arch", "sparse_roberta_tiny"] + flags)


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_fairseq_train_each_normalizer_then_resume(mlm_data, tmp_path, normalizer):
    extra = ["--attn-normalizer", normalizer, "--tensorboard-logdir", tmp_path / "tb"]
    if normalizer == "sparsegen_lin":
        extra += ["--sparsegen-lambda", "-4"]
    if normalizer == "entmax_bisect":
        extra += ["--learn-entmax-alpha"]
    first = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=3, extra=extra))
    log = first.stdout + first.stderr
    losses = [float(x) for x in re.findall(r"train_inner .*? loss=([0-9.]+)", log)]
    assert len(losses) == 3 and all(l == l and l < 20 for l in losses), log[-2000:]
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()
    if normalizer != "softmax":
        density = [float(x) for x in re.findall(r"attn_density_l1=([0-9.]+)", log)]
        assert density and all(0 < d <= 1 for d in density)
        assert list((tmp_path / "tb").glob("train_inner/events.out.tfevents.*"))
    second = run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=5, extra=extra))
    log2 = second.stdout + second.stderr
    assert "Loaded checkpoint" in log2 and "num_updates=4" in log2 and "num_updates=5" in log2, log2[-2000:]
    state = torch.load(tmp_path / "ck" / "checkpoint_last.pt", map_location="cpu")
    assert state["args"].attn_normalizer == normalizer if state.get("args") else True
    assert state["optimizer_history"][-1]["num_updates"] == 5


def test_stock_roberta_checkpoint_finetunes_as_sparse(mlm_data, cls_data, tmp_path):
    """SSAF: pre-train stock `roberta`, restore it into sparse_roberta with sparsegen_lin, fine-tune."""
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "stock", arch="roberta", updates=2, extra=TINY))
    stock_ckpt = tmp_path / "stock" / "checkpoint_last.pt"
    result = run_cli([
        "fairseq-train", cls_data, "--user-dir", USER_DIR, "--cpu", "--task", "sentence_prediction",
        "--criterion", "sentence_prediction", "--num-classes", 2, "--arch", "sparse_roberta_tiny",
        "--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "-2",
        "--restore-file", stock_ckpt, "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        "--max-positions", 32, "--batch-size", 8, "--optimizer", "adam", "--lr", "1e-3",
        "--lr-scheduler", "fixed", "--max-update", 3, "--log-format", "simple", "--log-interval", 1,
        "--save-dir", tmp_path / "ft", "--no-epoch-checkpoints", "--num-workers", 0, "--seed", 1,
        "--init-token", 0, "--separator-token", 2,
    ])
    log = result.stdout + result.stderr
    assert "Loaded checkpoint" in log and str(stock_ckpt) in log
    assert "Missing key" not in log and "Unexpected key" not in log
    assert re.search(r"valid .* accuracy", log), log[-2000:]
    stock = torch.load(stock_ckpt, map_location="cpu")["model"]
    tuned = torch.load(tmp_path / "ft" / "checkpoint_last.pt", map_location="cpu")["model"]
    emb = "encoder.sentence_encoder.embed_tokens.weight"
    assert stock[emb].shape == tuned[emb].shape and not torch.equal(stock[emb], tuned[emb])
    assert "encoder.sentence_encoder.layers.0.self_attn.q_proj.weight" in tuned


def test_hub_interface_predictions_and_attention_maps(mlm_data, tmp_path):
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "ck", updates=2, extra=["--attn-normalizer", "sparsemax"]))
    hub = SparseRobertaModel.from_pretrained(str(tmp_path / "ck"), "checkpoint_last.pt", data_name_or_path=str(mlm_data), bpe=None)
    hub.eval()
    toks = hub.task.source_dictionary.encode_line("w1 w2 w3 w4 w5", append_eos=True).long()
    toks = torch.cat([torch.tensor([0]), toks])
    features = hub.extract_features(toks)
    assert features.shape == (1, 7, 64)
    maps = hub.model.extract_attention(toks.unsqueeze(0))
    assert len(maps) == 2 and maps[1].shape == (1, 4, 7, 7)
    assert torch.allclose(maps[0].sum(-1), torch.ones(1, 4, 7), atol=1e-5)
    assert {m.normalizer_name for m in hub.model.attention_modules()} == {"sparsemax"}
