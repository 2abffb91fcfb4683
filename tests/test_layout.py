"""The package's layers (../shared/spec/layout.md, README "Layout"): the math imports without
fairseq, and no import runs back up the layers.

The directions are read from the source with `ast`, so an import inside a function counts too.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fairseq_sparse"

# The math: pure torch. masks may use normalizers (masked rows are normalised there); both may use
# the package's compiled C++ kernels (_C); masks writes mask files through atomic_files (stdlib only).
MATH = {"normalizers": {"_C"}, "masks": {"normalizers", "_C", "atomic_files"}}
# For every other part: the parts of fairseq_sparse it must not import (higher layers).
ENTRY = {"cli"}
TOP = {"analysis", "finetune", "environment"}  # use models, data and convert; only cli uses them
FORBIDDEN = {
    "modules": {"models", "criterions", "tasks", "convert", "data", "optim"} | TOP,
    "kernels": {"modules", "models", "criterions", "tasks", "convert", "data", "optim"} | TOP,
    "optim": {"models", "modules", "criterions", "tasks", "convert", "data"} | TOP,
    "apex_fallbacks": {"models", "modules", "criterions", "tasks", "convert", "data"} | TOP,
    "checkpoint_reader": {"models", "modules", "criterions", "tasks", "convert", "data", "optim"} | TOP,
    "models": {"criterions", "tasks", "convert", "data"} | TOP,
    "criterions": {"tasks", "convert"} | TOP,
    "tasks": {"convert"} | TOP,
    "data": {"models", "modules", "criterions", "tasks", "convert"} | TOP,
    "convert": {"criterions", "tasks"} | TOP,
    "analysis": {"convert", "criterions", "finetune", "environment"},
    "finetune": {"analysis", "environment"},
    "environment": {"models", "modules", "criterions", "tasks", "convert", "data", "analysis", "finetune"},
}
# Known exceptions, each a remaining item of issue 13: (file, part it imports).
KNOWN = set()


def _imports(path, text=None):
    """(top-level module, part of fairseq_sparse or None) for every import in the file."""
    rel = path.relative_to(PACKAGE)
    here = ["fairseq_sparse"] + list(rel.with_suffix("").parts)
    here = here[:-1]  # the package `from .x` resolves against (for __init__.py: itself)
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1]
            names = [".".join(base + ([node.module] if node.module else [a.name])) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            yield parts[0], (parts[1] if parts[0] == "fairseq_sparse" and len(parts) > 1 else None)


def _part(path):
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _violations(allowed_or_forbidden):
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        rel = str(path.relative_to(PACKAGE))
        for top, target in _imports(path):
            if target == part or (top, target) == ("fairseq_sparse", None):
                continue
            bad = allowed_or_forbidden(part, top, target)
            if bad and (rel, target) not in KNOWN:
                found.append(f"{rel} imports {top}{'.' + target if target else ''}: {bad}")
    return found


def test_parse_finds_relative_and_absolute_imports():
    # the checker itself: it must see both spellings of an upward import, also inside functions
    found = list(
        _imports(
            PACKAGE / "modules" / "probe.py",
            textwrap.dedent("""
        from ..models import sparse_roberta
        def f():
            import fairseq_sparse.cli.env
            from fairseq.data import Dictionary
    """),
        )
    )
    assert ("fairseq_sparse", "models") in found and ("fairseq_sparse", "cli") in found and ("fairseq", None) in found


def test_math_imports_nothing_from_fairseq_or_the_rest_of_the_package():
    def rule(part, top, target):
        if part not in MATH:
            return None
        if top == "fairseq":
            return "the math must not need fairseq"
        if top == "fairseq_sparse" and target not in MATH[part]:
            return f"{part}/ may import only {sorted(MATH[part]) or 'itself'}"
        return None

    assert _violations(rule) == []


def test_no_import_runs_back_up_the_layers():
    def rule(part, top, target):
        if top != "fairseq_sparse" or target is None:
            return None
        if target in ENTRY and part not in ENTRY:
            return "only cli/ imports cli/"
        if target in FORBIDDEN.get(part, ()):
            return f"{part} sits below {target}"
        return None

    assert _violations(rule) == []


@pytest.mark.parametrize("package", sorted(MATH))
def test_math_imports_where_fairseq_cannot(package):
    """`import fairseq_sparse.<package>` (all its modules) with fairseq made unimportable."""
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        sys.modules["fairseq"] = None  # any `import fairseq` now raises ImportError
        import torch
        pkg = importlib.import_module("fairseq_sparse.{package}")
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(pkg.__name__ + "." + info.name)
        from fairseq_sparse.normalizers import sparsemax
        p = sparsemax(torch.tensor([[1.0, 0.5, -2.0]]))
        assert p[0, 2] == 0 and abs(float(p.sum()) - 1) < 1e-6
        loaded = sorted(m for m in sys.modules if m.startswith("fairseq_sparse."))
        print(" ".join(loaded))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = {m.split(".")[1] for m in proc.stdout.split()}
    assert package in loaded
    needs_fairseq = {_part(path) for path in PACKAGE.rglob("*.py") if ("fairseq", None) in _imports(path)}
    assert not loaded & needs_fairseq, f"importing {package} loaded parts that need fairseq: {loaded & needs_fairseq}"


# ----- sizes, package docstrings, the README's map --------------------------------------------

MAX_LINES = 400  # a file longer than this holds more than one idea (issue 13)
MAX_CLI_LINES = 150  # a console script parses and calls
# Files allowed past MAX_LINES, each with the reason a reader would accept.
_ONE_AREA = "the tests of one feature area around shared fixtures (real data built once per module)"
LONG_FILES = {
    f"tests/{name}": _ONE_AREA
    for name in (
        "test_analysis.py",
        "test_preprocess.py",
        "test_pretraining.py",
        "test_convert.py",
        "test_glue.py",
        "test_dam.py",
    )
}


def _python_files():
    for top in ("fairseq_sparse", "scripts", "examples", "benchmarks", "tests"):
        yield from sorted((REPO / top).rglob("*.py"))


def test_no_file_is_too_long_to_read():
    long = [
        f"{p.relative_to(REPO)}: {n} lines"
        for p in _python_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(REPO)) not in LONG_FILES
    ]
    assert long == [], f"files over {MAX_LINES} lines (split them by idea): {long}"


def test_console_scripts_only_parse_and_call():
    long = [
        f"{p.name}: {n} lines"
        for p in sorted((PACKAGE / "cli").glob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_CLI_LINES
    ]
    assert long == [], f"console scripts over {MAX_CLI_LINES} lines (move the work into the package): {long}"


def test_every_package_says_in_two_lines_what_lives_there():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(REPO)} has no docstring"
        assert len(doc.strip().splitlines()) <= 2, f"{init.relative_to(REPO)}: docstring over two lines"


def _readme_layout_block():
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_readme_layout_matches_the_tree():
    block = _readme_layout_block()
    # every top-level part of the package is on the map ...
    parts = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if not p.name.startswith(("_", ".")) and (p.is_dir() or p.suffix == ".py")
    )
    missing = [
        p for p in parts if not any(line.lstrip().startswith(p) or f" {p}" in line for line in block.splitlines())
    ]
    assert missing == [], f"README Layout lacks {missing}"
    # ... and every file or folder the map names exists
    named = set()
    for line in block.splitlines():
        for word in line.replace(",", " ").replace("(", " ").replace(")", " ").split():
            if word.endswith((".py", "/")) and not word.startswith(("http", "--")) and "<" not in word:
                named.add(word.rstrip(","))
    stale = sorted(
        w
        for w in named
        if not any(
            (base / w).exists() for base in [REPO, PACKAGE, REPO / "examples", *PACKAGE.iterdir()] if base.is_dir()
        )
    )
    assert stale == [], f"README Layout names files that do not exist: {stale}"
