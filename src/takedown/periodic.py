"""The one shape of a serving process's background work: a daemon thread that runs a
round every few seconds (mail, platform actions, index reads, index snapshots).

Each round's failure is logged and the next round tries again -- a database restart or
a bug in one round must not stop the work for the life of the process. A round can ask
to go again at once (a backlog); ``stop()`` is still checked in between. The thread is
a daemon, so it never keeps the process alive on its own; ``start()`` after ``stop()``
starts a new one.
"""

from __future__ import annotations

import logging
import threading
from typing import Self

log = logging.getLogger(__name__)


class PeriodicWorker:
    """Subclasses implement :meth:`round`. ``wait_first``: the first round comes one
    interval after ``start()`` (not while the process is still starting up)."""

    def __init__(self, interval_s: float, *, name: str, wait_first: bool = False) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._name = name
        self._wait_first = wait_first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # completed rounds, failed ones included (for tests and health)

    def round(self) -> bool:
        """One round of work; True to go again at once instead of after the interval."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    stop_timeout_s = 30.0  # how long stop() waits for the round under way, by default

    def stop(self, timeout: float | None = None) -> None:
        """Let the round under way finish, waiting up to ``timeout`` s (default
        :attr:`stop_timeout_s`)."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s still busy after %s s; left to finish", self._name, timeout)
            else:
                self._thread = None

    def _run(self) -> None:
        if self._wait_first and self._stop.wait(self.interval_s):
            return
        while not self._stop.is_set():
            again = False
            try:
                again = self.round()
            except Exception:  # noqa: BLE001 - a worker must survive any round
                log.exception("%s: a round failed; retrying in %s s", self._name, self.interval_s)
            self.rounds += 1
            if not again:
                self._stop.wait(self.interval_s)
