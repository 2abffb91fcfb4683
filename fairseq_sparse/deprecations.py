"""Silence the deprecation warnings fairseq 0.12 triggers on every run under current hydra and
torch (hydra.experimental, `# @package _group_`, schema matching, torch.cuda.amp, pin_memory on
a CPU). They concern fairseq's own code, not the run, and bury its log; each filter matches one
known message, so any other warning still shows. Importing the plugin (--user-dir) installs
them, before fairseq composes its hydra config."""

import warnings

_MESSAGES = (
    (UserWarning, r"hydra\.experimental\.(initialize|compose)\(\) is no longer experimental"),
    (UserWarning, r"\s*The version_base parameter is not specified"),
    (UserWarning, r"\s*'config' is validated against ConfigStore schema"),
    (UserWarning, r"In '[^']*': Usage of deprecated keyword in package header"),
    (UserWarning, r"\s*The strict flag in the compose API is deprecated"),
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
    (FutureWarning, r"`torch\.cuda\.amp\.(autocast|GradScaler)\(args\.\.\.\)` is deprecated"),
)


def silence_fairseq_deprecations():
    for category, message in _MESSAGES:
        warnings.filterwarnings("ignore", message=message, category=category)
