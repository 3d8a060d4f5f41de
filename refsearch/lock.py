"""The index's single-writer lock: an exclusive `flock` on INDEX/writer.lock.

The kernel releases the lock when its process dies, however it dies, so a lock left by a crashed or
killed writer is taken over by the next one; the file's text (pid, host, since) only names the holder in
messages. `flock` is advisory and local: two machines writing one index over NFS are not excluded.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import IndexLockedError
from .layout import LOCK


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: float
    command: str

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, since {started} ({self.command})"


def read_holder(index: Path) -> LockHolder | None:
    """Who last took the lock (it may have died since), or None."""
    try:
        data = json.loads((Path(index) / LOCK).read_text())
        return LockHolder(int(data["pid"]), str(data["host"]), float(data["since"]), str(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_locked(index: Path) -> bool:
    """Whether a live process holds the writer lock now."""
    path = Path(index) / LOCK
    if not path.exists():
        return False
    with open(path) as handle:  # read-only: a reader of a read-only index may ask too
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def writer_at_work(index: Path) -> str | None:
    """Who is writing the index now (pid, host, since when, command), or None when no one is."""
    if not is_locked(index):
        return None
    holder = read_holder(index)
    return holder.describe() if holder else "another process"


class WriterLock:
    """Held from `acquire` to `release`; `took_over` names a dead holder whose lock was taken over."""

    def __init__(self, index: Path, command: str):
        self.path = Path(index) / LOCK
        self.command = command
        self._handle = None
        self.took_over: LockHolder | None = None

    def acquire(self, wait: bool = False, on_wait=None) -> "WriterLock":
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(self.path.parent)
            described = holder.describe() if holder else "another process"
            if not wait:
                handle.close()
                raise IndexLockedError(f"{self.path.parent} is being written by {described}",
                                       "wait for it to finish, or pass --wait to queue behind it") from None
            if on_wait is not None:
                on_wait(described)
            fcntl.flock(handle, fcntl.LOCK_EX)
        previous = read_holder(self.path.parent)
        if previous is not None and previous.pid != os.getpid():
            self.took_over = previous
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                 "command": self.command}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        # Cleared before unlocking, so a holder named in the file is one that still ran or died holding it.
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
