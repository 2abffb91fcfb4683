"""The command-line conventions shared by the recipe scripts under examples/.

The recipes (glue, squad, ssaf, finetune_bbc) pass the options after `--` on to
the program they wrap, print the command they run so it can be copied, offer `--dry-run`,
report bad input as one `PROG: error: ...` line, and use the GPU only when there is one and
`--cpu` was not given. One copy here keeps those behaviours the same in all of them.
"""

import contextlib
import shlex
import subprocess
import sys

INPUT_ERRORS = (FileNotFoundError, ValueError)


def split_passthrough(argv=None):
    """(the recipe's own arguments, the arguments after `--`) of argv (default: sys.argv[1:])."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def fail(prog, message):
    """Stop with exit status 1 and argparse's error form, `PROG: error: MESSAGE`."""
    sys.exit(f"{prog}: error: {message}")


@contextlib.contextmanager
def input_errors_exit(prog, errors=INPUT_ERRORS):
    """Turn the block's expected input errors (missing file, bad value) into fail(prog, error)."""
    try:
        yield
    except errors as e:
        fail(prog, e)


def show_and_run(cmd, dry_run=False):
    """Print cmd shell-quoted, then (unless dry_run) run it and exit with its exit status."""
    print(" ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    if not dry_run:
        sys.exit(subprocess.call([str(c) for c in cmd]))


def use_cuda(cpu=False):
    """Whether to put the model on the GPU: one is available and `--cpu` was not asked for."""
    if cpu:
        return False
    import torch

    return torch.cuda.is_available()
