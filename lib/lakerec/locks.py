"""File locks for the few things two jobs on one lake must not do at the same moment: create the MLflow store,
create a table, and delete the staging folder of a write that may still be running.

`filelock` takes an OS lock (flock) on the file: the kernel drops it when its process dies, even by SIGKILL, so a
killed job never leaves a lock that blocks the next one. Local paths only: on an object store there is no such
lock, and Delta's own commit protocol is what protects a table there.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

WAIT_S = 600.0  # longer than a first run takes to create a store or a table; past it, something is stuck


class LockTimeout(RuntimeError):
    """Another process held a lock for longer than anyone should; the message says which and what to do."""


@contextlib.contextmanager
def held(path: str | Path, doing: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the lock file `path` (created with its folder) while the block runs; waits for another holder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"waited {wait_s:.0f} s for {path}, held by another process that is {doing}: check for a stuck lakerec "
            "job on this lake and stop it, then rerun") from None
    try:
        yield
    finally:
        lock.release()


def try_hold(path: str | Path) -> FileLock | None:
    """The lock, acquired, if no live process holds it (release it when done); None if one does."""
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock
