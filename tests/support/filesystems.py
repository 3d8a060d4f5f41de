"""Small file systems for tests: a tmpfs mounted on a folder (as root; the test is skipped, with the
reason, where mounting is refused), remounted read-only or resized, and filled to leave little room."""
from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: 8m) on `folder` while the block runs; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=False)


def remount(folder: Path, options: str) -> None:
    """Remount the tmpfs on `folder` with `options` (ro, rw, size=...)."""
    done = _mount("-o", f"remount,{options}", str(folder))
    assert done.returncode == 0, done.stderr


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def fill(folder: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of the file system holding `folder`; delete it to free them."""
    gc.collect()  # deleted files still mapped by unreachable objects free their room when these go
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        handle.truncate(0)
        remaining = max(0, free_bytes(folder) - leave)
        block = bytes(1 << 20)
        while remaining:
            remaining -= handle.write(block[:min(remaining, len(block))])
    return filler
