"""One trainer per workdir: an exclusive lock held by process 0 of the run.

`fcntl.flock` on `WORKDIR/.lock`: the kernel releases it when the holding process exits,
however it exits (`kill -9` included), so a stale lock never blocks a restart. The file
records the holder (host, pid, start time) for the message a second trainer gets. The other
processes of a multi-host run share the workdir legitimately and take no lock. On network
file systems without flock support the lock may not hold across machines.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import time

import jax

from reidjax.errors import UserError
from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import Workdir


class WorkdirBusyError(UserError, RuntimeError):
    """Another trainer holds the workdir."""


class WorkdirLock:
    """The exclusive lock of `workdir` (a no-op on processes other than 0, and on a bucket
    workdir, `gs://...`, where no file lock exists: one trainer per such workdir is then
    the user's to keep)."""

    def __init__(self, workdir: Workdir | str):
        self.path = Workdir.of(workdir).lock
        self.fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock.

        Raises:
            WorkdirBusyError: another live trainer holds it (the message names it).
            UserError: the lock path is a symbolic link or not a regular file (it is never
                followed: the trainer would truncate whatever it points at).
        """
        if jax.process_index() != 0 or self.fd is not None or not workdir_io.is_local(self.path):
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if os.path.islink(self.path):
                raise UserError(
                    f"{self.path} is a symbolic link; the workdir lock is never followed: remove it"
                ) from None
            raise UserError(f"cannot open the workdir lock {self.path}: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{self.path} is not a regular file; remove it (the workdir lock)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WorkdirBusyError(
                f"{os.path.dirname(self.path)} is in use by another trainer ({holder}): "
                "wait for it to finish or stop it, or train into another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}"
        os.write(fd, holder.encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
