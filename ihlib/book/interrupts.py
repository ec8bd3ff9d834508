"""SIGINT and SIGTERM during a run: stop the running kernels at once, let the runner mark what was cut short."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from jupyter_client.manager import KernelManager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):  # noqa: N818 (a stop asked for by the user, not an error of the runner)
    """The run was stopped by a signal; carries the signal's name (SIGINT, SIGTERM)."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(signal_name)


class Interruption:
    """The kernels a run has started, and whether a stop signal arrived; thread-safe."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.raise_at_once = False  # outside chapter execution the signal raises RunInterrupted in the main thread
        self._kernels: set[KernelManager] = set()
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signal_name is not None

    def add_kernel(self, manager: KernelManager) -> None:
        """Track a kernel manager whose kernel must die on a stop."""
        with self._lock:
            self._kernels.add(manager)

    def remove_kernel(self, manager: KernelManager) -> None:
        """Stop tracking a kernel manager (its chapter ended)."""
        with self._lock:
            self._kernels.discard(manager)

    def kill_kernels(self) -> None:
        """Kill the process of every tracked kernel that has one (the chapter executing in it then fails at once)."""
        with self._lock:
            managers = list(self._kernels)
        for manager in managers:
            process = getattr(manager.provisioner, "process", None)
            if process is not None and process.poll() is None:
                process.kill()

    def stop(self, signum: int, frame: object) -> None:
        """The signal handler: remember the first signal, kill the kernels, raise when told to (an exception raised
        where Python swallows it, in a weakref callback say, is caught up with by `raising_at_once`'s last check)."""
        self.signal_name = self.signal_name or signal.Signals(signum).name
        self.kill_kernels()
        if self.raise_at_once:
            raise RunInterrupted(self.signal_name)

    def check(self) -> None:
        """Raise RunInterrupted when a stop signal arrived."""
        if self.signal_name is not None:
            raise RunInterrupted(self.signal_name)


@contextlib.contextmanager
def stop_signals_caught(interruption: Interruption) -> Iterator[Interruption]:
    """Route SIGINT and SIGTERM to `interruption` while the block runs (main thread only); restore the handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield interruption
        return
    previous = {sig: signal.signal(sig, interruption.stop) for sig in STOP_SIGNALS}
    try:
        yield interruption
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def raising_at_once(interruption: Interruption) -> Iterator[None]:
    """Let a stop signal raise RunInterrupted at once while the block runs (no chapter is executing), and after it
    when a signal arrived during it."""
    interruption.check()
    interruption.raise_at_once = True
    try:
        yield
    finally:
        interruption.raise_at_once = False
    interruption.check()
