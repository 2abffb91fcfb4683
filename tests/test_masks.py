"""Fixed attention patterns, SDPA/additive layouts, mask files and the export CLI."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairseq_sparse.cli import export_mask
from fairseq_sparse.masks import (
    PATTERNS,
    additive_mask,
    allowed_mask,
    binarize_dam_logits,
    build_fixed_mask,
    density,
    load_mask_file,
    mask_for_layer,
    save_mask_file,
    slice_mask,
)

FIXED = [name for name in PATTERNS if name != "file"]
ODD_LENGTHS = [1, 3, 7, 13, 33]


def brute(length, rule):
    """Reference mask from a per-entry rule, written independently of the vectorised code."""
    return torch.tensor([[bool(rule(i, j)) for j in range(length)] for i in range(length)])


# ----- fixed patterns -------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXED)
@pytest.mark.parametrize("length", ODD_LENGTHS + [2, 64])
def test_every_row_keeps_a_key(name, length):
    keep = build_fixed_mask(name, length)
    assert keep.shape == (length, length) and keep.dtype == torch.bool
    assert keep.any(dim=-1).all()


@pytest.mark.parametrize("name", [n for n in FIXED if n != "bigbird"])
def test_patterns_are_symmetric(name):
    keep = build_fixed_mask(name, 29)
    if name == "fixed":  # summary columns only: symmetric in the block part, not in the columns
        keep = build_fixed_mask(name, 29, summary=0)
    assert torch.equal(keep, keep.T)


@pytest.mark.parametrize("length", [1, 7, 13])
def test_no_diagonal_drops_exactly_the_diagonal(length):
    keep = build_fixed_mask("no_diagonal", length)
    if length == 1:
        assert keep.all()  # its only key
        return
    assert not keep.diagonal().any()
    assert int((~keep).sum()) == length  # everything else kept
    assert torch.equal(build_fixed_mask("none", length), torch.ones(length, length, dtype=torch.bool))


@pytest.mark.parametrize("length", [7, 13, 33])
def test_longformer_is_window_plus_global_rows_and_columns(length):
    keep = build_fixed_mask("longformer", length, window=2, num_global=2)
    expected = brute(length, lambda i, j: abs(i - j) <= 2 or i < 2 or j < 2)
    assert torch.equal(keep, expected)
    assert keep[:2].all() and keep[:, :2].all()
    assert not keep[3, 6] and keep[3, 5]


@pytest.mark.parametrize("length", [7, 13, 33])
def test_strided_fixed_star_logsparse_match_their_definitions(length):
    assert torch.equal(
        build_fixed_mask("strided", length, stride=3),
        brute(length, lambda i, j: abs(i - j) < 3 or abs(i - j) % 3 == 0),
    )
    assert torch.equal(
        build_fixed_mask("fixed", length, block=4, summary=1),
        brute(length, lambda i, j: i // 4 == j // 4 or j % 4 == 3),
    )
    assert torch.equal(
        build_fixed_mask("star", length, radius=1, num_global=1),
        brute(length, lambda i, j: abs(i - j) <= 1 or i == 0 or j == 0),
    )
    powers = {2**k for k in range(8)}
    assert torch.equal(
        build_fixed_mask("logsparse", length),
        brute(length, lambda i, j: i == j or abs(i - j) in powers),
    )


def test_star_ring_links_the_ends():
    keep = build_fixed_mask("star", 9, radius=1, num_global=1, ring=True)
    assert keep[1, 8] and keep[8, 1]  # first and last satellite are neighbours
    assert not build_fixed_mask("star", 9)[1, 8]


@pytest.mark.parametrize("length", [13, 33])
def test_bigbird_window_global_and_seeded_random_blocks(length):
    block, window, random_blocks = 4, 1, 1
    keep = build_fixed_mask(
        "bigbird", length, block=block, window=window, num_global=1, random_blocks=random_blocks, seed=3
    )
    assert torch.equal(
        keep,
        build_fixed_mask(
            "bigbird", length, block=block, window=window, num_global=1, random_blocks=random_blocks, seed=3
        ),
    )
    blocks = -(-length // block)
    of = torch.arange(length) // block
    for q in range(1, length):
        qb = int(of[q])
        kept_blocks = {int(of[k]) for k in range(1, length) if keep[q, k]}
        in_window = {b for b in range(blocks) if abs(b - qb) <= window}
        assert in_window <= kept_blocks
        extra = kept_blocks - in_window
        # the first block may have been drawn but hides behind the global token's column
        assert len(extra - {0}) <= random_blocks and len(extra) <= random_blocks
        assert keep[q, 0] and keep[0, q]
    others = [build_fixed_mask("bigbird", length, block=block, seed=s) for s in range(6)]
    assert any(not torch.equal(others[0], o) for o in others[1:])


def test_registry_rejects_bad_names_and_params():
    with pytest.raises(ValueError, match="unknown attention mask pattern 'diagonal'"):
        build_fixed_mask("diagonal", 8)
    with pytest.raises(ValueError, match="unknown \\['stride'\\]"):
        build_fixed_mask("longformer", 8, stride=2)
    with pytest.raises(ValueError, match="window must be >= 0, got -1"):
        build_fixed_mask("longformer", 8, window=-1)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        build_fixed_mask("strided", 8, stride=0)
    with pytest.raises(ValueError, match="block must be an integer, got '4'"):
        build_fixed_mask("bigbird", 8, block="4")
    with pytest.raises(ValueError, match="summary \\(5\\) must be <= block \\(4\\)"):
        build_fixed_mask("fixed", 8, block=4, summary=5)
    with pytest.raises(ValueError, match="length must be a positive integer, got 0"):
        build_fixed_mask("none", 0)
    with pytest.raises(ValueError, match="needs parameter"):
        build_fixed_mask("file", 8)


# ----- layouts: padding, SDPA, additive, density ------------------------------------------


def test_padding_with_no_diagonal_keeps_real_keys_except_self():
    keep = build_fixed_mask("no_diagonal", 7)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    allowed = allowed_mask(keep, pad)
    assert allowed.shape == (2, 1, 7, 7)
    for b, real in ((0, 7), (1, 5)):
        for i in range(real):
            row = allowed[b, 0, i]
            assert not row[i] and row[:real].sum() == real - 1 and not row[real:].any()
    assert density(keep, pad) == pytest.approx((7 * 6 + 5 * 4) / (49 + 25))


def _manual_attention(q, k, v, allowed):
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    p = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return p @ v


@pytest.mark.parametrize("name", ["longformer", "bigbird", "no_diagonal"])
def test_sdpa_bool_and_additive_masks_match_manual_masked_softmax(name):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 11, 8, dtype=torch.float64) for _ in range(3))
    keep = build_fixed_mask(name, 11)
    pad = torch.zeros(2, 11, dtype=torch.bool)
    pad[1, 9:] = True
    allowed = allowed_mask(keep, pad)
    reference = _manual_attention(q, k, v, allowed)
    real_rows = ~pad  # padded queries are never read
    out_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out_add = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(keep, torch.float64, pad))
    for out in (out_bool, out_add):
        assert torch.allclose(
            out[real_rows[:, None, :].expand(2, 3, 11)], reference[real_rows[:, None, :].expand(2, 3, 11)], atol=1e-10
        )


def test_allowed_mask_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="bool tensor"):
        allowed_mask(torch.ones(4, 4))
    with pytest.raises(ValueError, match="does not match 4 keys"):
        allowed_mask(torch.ones(4, 4, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.bool))


# ----- mask files -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 9), (3, 9, 9), (2, 3, 9, 9)])
def test_mask_file_round_trip_and_slicing(tmp_path, shape):
    rng = np.random.default_rng(0)
    array = rng.random(shape) > 0.5
    path = tmp_path / "m.npy"
    save_mask_file(path, array)
    assert sorted(os.listdir(tmp_path)) == ["m.npy"]  # no temporary left behind
    mask = load_mask_file(path, num_heads=3, num_layers=2)
    assert mask.dtype == torch.bool and torch.equal(mask, torch.from_numpy(array))
    short = slice_mask(mask, 5, source=str(path))
    assert torch.equal(short, mask[..., :5, :5])
    with pytest.raises(ValueError, match="sequence length 10 exceeds the 9 positions"):
        slice_mask(mask, 10, source=str(path))
    per_layer = mask_for_layer(mask, 1)
    assert per_layer.shape[-3:] in ((1, 9, 9), (3, 9, 9))
    from_registry = build_fixed_mask("file", 4, path=str(path), **({"layer": 1} if len(shape) == 4 else {}))
    assert torch.equal(from_registry, mask[1, :, :4, :4] if len(shape) == 4 else mask[..., :4, :4])


def test_mask_file_accepts_integer_and_float_zero_one(tmp_path):
    for dtype in (np.uint8, np.int64, np.float32):
        path = tmp_path / f"m_{np.dtype(dtype).name}.npy"
        np.save(path, np.eye(4, dtype=dtype))
        assert torch.equal(load_mask_file(path), torch.eye(4, dtype=torch.bool))


@pytest.mark.parametrize(
    "array, kwargs, message",
    [
        (np.ones((4, 5)), {}, "last two dimensions must be equal"),
        (np.ones(4), {}, "expected \\(n, n\\), \\(heads, n, n\\)"),
        (np.ones((1, 1, 1, 4, 4)), {}, "expected \\(n, n\\)"),
        (np.full((4, 4), 0.5), {}, "values other than 0/1: 0.5 at index \\(0, 0\\)"),
        (np.array([[1, 2], [0, 1]]), {}, "values other than 0/1: 2 at index \\(0, 1\\)"),
        (np.array([[1.0, np.nan], [0, 1]]), {}, "values other than 0/1: nan"),
        (np.ones((2, 4, 4)), {"num_heads": 3}, "has 2 heads .* the model has 3"),
        (np.ones((3, 2, 4, 4)), {"num_heads": 2, "num_layers": 12}, "has 3 layers .* the model has 12"),
        (np.array([["a", "b"], ["c", "d"]]), {}, "dtype <U1"),
    ],
)
def test_mask_file_errors_name_the_problem(tmp_path, array, kwargs, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message):
        load_mask_file(path, **kwargs)


def test_mask_file_missing_pickled_or_unsaveable(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_mask_file(tmp_path / "nope.npy")
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numpy array"):
        load_mask_file(path)
    with pytest.raises(ValueError, match="values other than 0/1"):
        save_mask_file(tmp_path / "out.npy", np.full((3, 3), 0.5))
    assert not (tmp_path / "out.npy").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


# ----- export CLI -----------------------------------------------------------------------


def _write_checkpoint(path, logits, no_diagonal=None, extra_logits=False):
    prefix = "encoder.sentence_encoder.dam."
    model = {"encoder.sentence_encoder.layers.0.fc1.weight": torch.zeros(2, 2), prefix + "dam_logits": logits}
    if no_diagonal is not None:
        model[prefix + "dam_no_diagonal"] = torch.tensor(no_diagonal)
    if extra_logits:
        model["decoder.dam.dam_logits"] = logits.clone()
    torch.save({"model": model, "args": argparse.Namespace(arch="sparsebert_tiny"), "extra_state": {}}, path)


def test_export_cli_structured_shared_mask(tmp_path, capsys):
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 20)
    ckpt, out, png = tmp_path / "checkpoint_last.pt", tmp_path / "mask.npy", tmp_path / "masks.png"
    _write_checkpoint(ckpt, logits, no_diagonal=True)
    assert export_mask.main([str(ckpt), "--out", str(out), "--png", str(png), "--length", "13"]) == 0
    report = json.loads(capsys.readouterr().out)
    mask = np.load(out)
    expected = binarize_dam_logits(logits, 13, no_diagonal=True)[0].numpy()
    assert mask.dtype == np.bool_ and mask.shape == (4, 13, 13)
    assert np.array_equal(mask, expected)
    assert not mask[:, np.arange(13), np.arange(13)].any()
    # Toeplitz: entry (i, j) is decided by logit[|i - j|]
    assert mask[2, 3, 7] == (logits[0, 2, 4] > 0) == mask[2, 9, 5]
    assert report["shape"] == [4, 13, 13] and report["no_diagonal"] and report["structure"] == "structured"
    assert report["density"] == pytest.approx(float(mask.mean()), abs=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt", "mask.npy", "masks.png"]
    assert load_mask_file(out, num_heads=4).shape == (4, 13, 13)


def test_export_cli_per_layer_unstructured_via_console_script(tmp_path):
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 10, 10)
    ckpt, out = tmp_path / "ck.pt", tmp_path / "mask.npy"
    _write_checkpoint(ckpt, logits)
    script = os.path.join(os.path.dirname(sys.executable), "fairseq-sparse-export-mask")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "fairseq_sparse.cli.export_mask"]
    result = subprocess.run(command + [str(ckpt), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    mask = np.load(out)
    assert mask.shape == (2, 3, 10, 10) and report["shape"] == [2, 3, 10, 10]
    assert np.array_equal(mask, np.transpose(mask, (0, 1, 3, 2)))  # symmetrised
    upper = torch.triu(logits) > 0
    assert np.array_equal(np.triu(mask), upper.numpy())
    assert len(report["density_per_layer"]) == 2 and len(report["density_per_head"][1]) == 3


def test_export_cli_errors(tmp_path):
    ckpt = tmp_path / "ck.pt"
    torch.save({"model": {"encoder.x": torch.zeros(1)}, "args": argparse.Namespace()}, ckpt)
    with pytest.raises(SystemExit, match="no DAM logits"):
        export_mask.main([str(ckpt), "--out", str(tmp_path / "m.npy")])
    _write_checkpoint(ckpt, torch.randn(1, 2, 8), extra_logits=True)
    with pytest.raises(SystemExit, match="several DAM logits"):
        export_mask.main([str(ckpt), "--out", str(tmp_path / "m.npy")])
    assert export_mask.main([str(ckpt), "--out", str(tmp_path / "m.npy"), "--key", "decoder.dam.dam_logits"]) == 0
    with pytest.raises(SystemExit, match="--length must be in \\[1, 8\\], got 9"):
        export_mask.main(
            [str(ckpt), "--out", str(tmp_path / "m2.npy"), "--key", "decoder.dam.dam_logits", "--length", "9"]
        )
    with pytest.raises(SystemExit, match="does not exist"):
        export_mask.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m3.npy")])
    assert not (tmp_path / "m2.npy").exists() and not (tmp_path / "m3.npy").exists()


# ----- empty masks are never silent ------------------------------------------------------


def test_empty_mask_problem_names_the_first_empty_row():
    from fairseq_sparse.masks.mask_file import empty_mask_problem

    assert empty_mask_problem(torch.ones(2, 5, 5, dtype=torch.bool)) is None
    assert "all zero" in empty_mask_problem(np.zeros((3, 4, 4), dtype=bool))
    keep = torch.ones(2, 3, 6, 6, dtype=torch.bool)
    keep[1, 2, 4] = False
    assert empty_mask_problem(keep) == (
        "1 of its 36 query rows keep no key (first: layer 1, head 2, row 4); such a query attends to nothing"
    )


def test_export_refuses_an_empty_or_row_empty_mask_unless_allowed(tmp_path, capsys):
    ckpt, out = tmp_path / "ck.pt", tmp_path / "mask.npy"
    _write_checkpoint(ckpt, torch.full((1, 2, 8), -0.01), no_diagonal=True)  # every logit just below 0
    with pytest.raises(SystemExit, match="unusable: it is all zero .*--allow-empty writes it anyway"):
        export_mask.main([str(ckpt), "--out", str(out)])
    assert not out.exists()
    assert export_mask.main([str(ckpt), "--out", str(out), "--allow-empty"]) == 0
    assert "all zero" in json.loads(capsys.readouterr().out)["empty"] and not np.load(out).any()
    logits = torch.full((1, 2, 8), -1.0)
    logits[0, :, 5] = 1.0  # only distance 5 kept: rows 3 and 4 of an 8 x 8 mask keep nothing
    _write_checkpoint(ckpt, logits, no_diagonal=True)
    with pytest.raises(SystemExit, match="4 of its 16 query rows keep no key \\(first: head 0, row 3\\)"):
        export_mask.main([str(ckpt), "--out", str(tmp_path / "m2.npy")])


def test_loading_an_empty_mask_file_is_an_error_unless_allowed(tmp_path):
    path = tmp_path / "m.npy"
    array = np.ones((2, 6, 6), dtype=bool)
    array[1, 3] = False
    np.save(path, array)
    with pytest.raises(
        ValueError,
        match="m.npy: 1 of its 12 query rows keep no key \\(first: head 1, row 3\\).*--attn-mask-allow-empty",
    ):
        load_mask_file(path, num_heads=2)
    assert torch.equal(load_mask_file(path, num_heads=2, allow_empty=True), torch.from_numpy(array))
    np.save(path, np.zeros((6, 6), dtype=bool))
    with pytest.raises(ValueError, match="all zero"):
        load_mask_file(path)
