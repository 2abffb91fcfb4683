"""Result files that are either complete or absent: write a temporary sibling, then rename.

A sweep killed half-way (Ctrl-C during a long ablation) must not leave a truncated JSON or
PNG that a later plot or a README would silently read.
"""

import csv
import io
import json
import math

import numpy as np

from ..atomic_files import atomic_output


def _atomic(path, data: bytes):
    with atomic_output(path, "wb") as f:
        f.write(data)
    return path


def _jsonable(value):
    """numpy / torch scalars and arrays -> Python; NaN -> None (JSON has no NaN)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _dumps(value, indent=0):
    """JSON with nested containers indented but lists of plain numbers on one line (matrices stay readable)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, float):
        return json.dumps(float(f"{value:.6g}"))
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v, indent + 1) for v in value) + "]"
    return json.dumps(value)


def write_json(path, obj):
    return _atomic(path, (_dumps(_jsonable(obj)) + "\n").encode("utf-8"))


def write_figure(path, fig, dpi=100):
    """Save a matplotlib Figure as PNG (Figures made without pyplot need no closing)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return _atomic(path, buf.getvalue())


def write_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return _atomic(path, buf.getvalue())


def write_csv(path, header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return _atomic(path, buf.getvalue().encode("utf-8"))


def write_torch(path, obj):
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return _atomic(path, buf.getvalue())


def write_text(path, text):
    return _atomic(path, text.encode("utf-8"))
