"""The build folder belongs to the runner: a marker says it made the folder, a lock keeps a second runner out."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ihlib.book.folders import RUN_RECORD
from ihlib.model.errors import BookError

BUILD_MARKER = ".ihlib-book-build"  # written by the runner into a build folder it made or adopted
LOCK_FILE = ".ihlib-book.lock"  # held (fcntl.flock) by the runner using the build folder; names its pid and start


def claim_build_dir(build_dir: Path) -> None:
    """Make `build_dir` the runner's own: create it with a marker, or adopt an empty folder or one an earlier runner
    built (it holds `run.json`); raise BookError for a file or a non-empty folder without the marker."""
    if build_dir.exists() and not build_dir.is_dir():
        raise BookError(f"--build-dir {build_dir} is a file: choose a folder, such as _build.")
    marker = build_dir / BUILD_MARKER
    if marker.is_file():
        return
    if build_dir.is_dir() and any(build_dir.iterdir()) and not (build_dir / RUN_RECORD).is_file():
        raise BookError(
            f"--build-dir {build_dir} is not empty and the book runner did not make it (it holds no {BUILD_MARKER}); "
            "the runner would delete folders such as source/ and html/ in it. Choose a new or empty folder, such "
            "as _build, or move your files out of it."
        )
    build_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"made_by": "python -m ihlib.book", "date": _now()}, indent=1))


@contextlib.contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Hold the build folder's lock while the block runs; raise BookError naming the runner that holds it."""
    path = build_dir / LOCK_FILE
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a runner that did not say its pid"
            raise BookError(
                f"Another book runner ({holder}) is using --build-dir {build_dir}: wait for it to finish, stop it, "
                "or choose another --build-dir."
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, started {_now()}")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    """The current time, `2026-01-31 12:00:00 UTC`."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
