"""The recipe scripts' shared command-line conventions (fairseq_sparse/finetune/recipe_cli.py)."""

import sys

import pytest

from fairseq_sparse.finetune.recipe_cli import fail, input_errors_exit, show_and_run, split_passthrough, use_cuda


def test_split_passthrough_keeps_everything_after_the_first_double_dash():
    assert split_passthrough(["--data", "d", "--", "--lr", "1", "--", "x"]) == (
        ["--data", "d"],
        ["--lr", "1", "--", "x"],
    )
    assert split_passthrough(["--data", "d"]) == (["--data", "d"], [])
    assert split_passthrough(["--"]) == ([], [])


def test_split_passthrough_reads_sys_argv_by_default(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["recipe.py", "--a", "--", "--b"])
    assert split_passthrough() == (["--a"], ["--b"])


def test_errors_are_one_argparse_style_line():
    with pytest.raises(SystemExit, match=r"^finetune\.py: error: no such file$") as stop:
        fail("finetune.py", "no such file")
    assert stop.value.code != 0
    with pytest.raises(SystemExit, match=r"^run\.py: error: .*missing\.json"):
        with input_errors_exit("run.py"):
            open("/nonexistent/missing.json")
    with pytest.raises(SystemExit, match=r"^run\.py: error: no module"):
        with input_errors_exit("run.py", (ImportError,)):
            raise ImportError("no module")
    with pytest.raises(KeyError):  # anything else is a bug and keeps its traceback
        with input_errors_exit("run.py"):
            raise KeyError("x")


def test_show_and_run_prints_a_copyable_command(capfd):
    cmd = [sys.executable, "-c", "import sys; sys.exit(3)", "an arg"]
    show_and_run(cmd, dry_run=True)  # prints only
    assert capfd.readouterr().out == f"{sys.executable} -c 'import sys; sys.exit(3)' 'an arg'\n"
    with pytest.raises(SystemExit) as stop:
        show_and_run(cmd)
    assert stop.value.code == 3  # the command's own exit status


def test_cpu_wins_over_a_gpu():
    assert use_cuda(cpu=True) is False
