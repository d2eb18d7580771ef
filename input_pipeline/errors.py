"""The error contract of the input pipeline: what a user can fix is a `DataError`.

The package's own command (`python -m input_pipeline`) and the library's commands print a
`DataError` as one `error:` line, without a traceback; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations


class DataError(Exception):
    """A problem with the data or a data argument that the user can fix; the message says
    how."""


class DatasetError(DataError, ValueError):
    """A dataset on disk is missing, incomplete or malformed; the message says what and where."""


class DataArgumentError(DataError, ValueError):
    """A data argument that cannot work (an unknown sampler, fewer identities than a batch
    needs, a batch that does not split over the hosts)."""
