"""The error contract of reidjax: what a user can fix is a `UserError`.

`train.py` and `eval.py` catch exactly `USER_ERRORS` (a `UserError`, or the input
pipeline's `DataError`) and print its message as one line (no traceback): a missing
dataset, weight file or checkpoint, a config that cannot work, an evaluation with no
answer. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from input_pipeline.errors import DataError


class UserError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (unknown name, batch not divisible by the devices)."""


# What every command prints as one `error:` line: the library's and the input pipeline's.
USER_ERRORS = (UserError, DataError)
