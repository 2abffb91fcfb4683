"""The SSAF sparsity schedule: entmax alpha annealed from near 1 (softmax) to the target."""

import re

import pytest
import torch
from conftest import run_cli, tiny_mlm_args
from fairseq import options, tasks

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.models.sparse_encoder import LinearAlphaSchedule

SCHEDULE = [
    "--attn-normalizer",
    "entmax_bisect",
    "--entmax-alpha",
    "2.0",
    "--sparsity-schedule-updates",
    "4",
    "--sparsity-schedule-start-alpha",
    "1.1",
]


def build(data, extra):
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(data), "--task", "masked_lm", "--tokens-per-sample", "32", "--arch", "sparse_roberta_tiny", *extra],
    )
    return tasks.setup_task(args).build_model(args)


def alphas(model):
    return [float(m.entmax_alpha_per_head()[0]) for m in model.attention_modules()]


def density(model, tokens):
    with torch.no_grad():
        return float(sum((a > 0).float().mean() for a in model.eval().extract_attention(tokens)))


def test_linear_schedule_values():
    s = LinearAlphaSchedule(1.1, 2.0, 4)
    assert [round(s(n), 6) for n in (0, 1, 2, 4, 100)] == [1.1, 1.325, 1.55, 2.0, 2.0]


def test_schedule_moves_alpha_sparsifies_and_is_saved(mlm_data):
    torch.manual_seed(0)
    model = build(mlm_data, SCHEDULE)
    tokens = torch.randint(4, 40, (2, 24))
    assert alphas(model) == pytest.approx([1.1, 1.1])
    dense = density(model, tokens)
    model.set_num_updates(2)
    assert alphas(model) == pytest.approx([1.55, 1.55])
    model.set_num_updates(10)
    assert alphas(model) == pytest.approx([2.0, 2.0])
    assert density(model, tokens) < dense  # alpha 2 (sparsemax) keeps fewer keys than alpha 1.1
    # a checkpoint carries the alpha it reached: a fresh model (at the start alpha) loads it
    state = model.state_dict()
    assert float(state["encoder.sentence_encoder.layers.0.self_attn.entmax_alpha_scheduled"]) == pytest.approx(2.0)
    fresh = build(mlm_data, SCHEDULE)
    fresh.load_state_dict(state)
    assert alphas(fresh) == pytest.approx([2.0, 2.0])
    # a checkpoint without a schedule (e.g. a pre-trained model) starts at the start alpha
    plain = {k: v for k, v in state.items() if "entmax_alpha_scheduled" not in k}
    fresh = build(mlm_data, SCHEDULE)
    fresh.load_state_dict(plain)
    assert alphas(fresh) == pytest.approx([1.1, 1.1])


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--attn-normalizer", "sparsegen_lin", "--sparsity-schedule-updates", "4"], "entmax_bisect"),
        (
            ["--attn-normalizer", "entmax_bisect", "--learn-entmax-alpha", "--sparsity-schedule-updates", "4"],
            "--learn-entmax-alpha",
        ),
        (
            [
                "--attn-normalizer",
                "entmax_bisect",
                "--sparsity-schedule-updates",
                "4",
                "--sparsity-schedule-start-alpha",
                "0.9",
            ],
            "start-alpha must be in \\(1, 2\\], got 0.9",
        ),
        (["--attn-normalizer", "entmax_bisect", "--sparsity-schedule-updates", "-3"], "got -3"),
    ],
)
def test_schedule_bad_options_name_the_value(mlm_data, extra, match):
    with pytest.raises(ValueError, match=match):
        build(mlm_data, extra)


def test_schedule_is_logged_per_update_and_resumes(mlm_data, tmp_path):
    """Two updates, stop, two more from checkpoint_last.pt: the alpha continues, not restarts."""
    first = run_cli(tiny_mlm_args(mlm_data, tmp_path, updates=2, extra=SCHEDULE))
    second = run_cli(tiny_mlm_args(mlm_data, tmp_path, updates=4, extra=SCHEDULE))
    logged = [
        float(a)
        for r in (first, second)
        for a in re.findall(r"train_inner .*?entmax_alpha=([0-9.]+)", r.stdout + r.stderr)
    ]
    assert logged == pytest.approx([1.1, 1.325, 1.55, 1.775])  # the alpha each update ran with
