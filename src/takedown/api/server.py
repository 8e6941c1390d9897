"""Several serving processes, each accepting on its own socket (``SO_REUSEPORT``).

Why not uvicorn's ``--workers``: its workers share one listening socket, and the kernel
hands a new connection to whichever worker wakes first. A platform's upload service
keeps a few long-lived keep-alive connections, and measured here with 16 of them and
2 workers, one worker often ended up with 14 and the other with 2: the first worker's
core saturated while the second idled, and throughput swung between 1,270 and 1,950
requests a second from one run to the next. With one socket per worker bound with
``SO_REUSEPORT``, the kernel spreads connections over the sockets by a hash of their
addresses, independent of which worker happens to be awake (nginx's ``reuseport`` does
the same). Each worker is an ordinary ``uvicorn.Server`` on its own socket; this module
is only the supervisor: it binds, starts, restarts a worker that dies, and stops all on
SIGINT/SIGTERM.

The sockets are bound here, in the parent, and stay open here: a restarted worker takes
over its predecessor's socket, so connections queued meanwhile are not lost. Before
binding, the address is probed without ``SO_REUSEPORT``, so that a second server started
on the same port by mistake fails ("address in use") instead of silently sharing it.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("takedown.server")

APP = "takedown.api.asgi:app_factory"
STARTUP_FAILURE = 3  # uvicorn's exit status for "the app or socket could not start"
_RESTART_PAUSE_S = 1.0  # a worker that keeps dying is not restarted in a tight loop
_STOP_GRACE_S = 30.0  # uvicorn finishes in-flight requests, then the worker is killed


@dataclass(frozen=True)
class WorkerOptions:
    access_log: bool
    log_level: str = "info"
    # Behind a reverse proxy: whose X-Forwarded-For/-Proto to believe (uvicorn's options).
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1,::1"
    log_format: str = "text"  # or "json" (takedown/logs.py)
    # Settings the supervisor was given on its command line (--config, --data-dir), as
    # the environment variables that say the same: each worker reads the same settings.
    environment: dict[str, str] = field(default_factory=dict)


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to one address with ``SO_REUSEPORT``; OSError if the
    address is taken (by anything, our own servers included)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))  # fails when any socket holds the port, reuseport or not
        port = probe.getsockname()[1]  # port 0: the one the kernel chose, for all
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _run_worker(sock: socket.socket, options: WorkerOptions) -> None:  # in the child
    import os

    import uvicorn

    os.environ.update(options.environment)

    from takedown.logs import uvicorn_log_config

    config = uvicorn.Config(
        APP,
        factory=True,
        log_level=options.log_level,
        access_log=options.access_log,
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        log_config=uvicorn_log_config(options.log_format),
    )
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Runs one worker per socket until told to stop; see the module docstring."""

    def __init__(self, sockets: list[socket.socket], options: WorkerOptions) -> None:
        self._sockets = sockets
        self._options = options
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess | None] = [None] * len(sockets)
        self._stop = threading.Event()
        self.failed = False  # a worker could not start: the app or its config is broken

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w is not None and w.pid is not None]

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve until :meth:`stop` (or SIGINT/SIGTERM when installed); the exit status."""
        for i in range(len(self._sockets)):
            self._start(i)
        log.info("started %d workers: %s", len(self._workers), self.pids)
        while not self._stop.wait(0.2):
            for i, worker in enumerate(self._workers):
                if worker is None or worker.is_alive():
                    continue
                if worker.exitcode == STARTUP_FAILURE:
                    log.error("worker %s could not start; stopping", worker.pid)
                    self.failed = True
                    self._stop.set()
                    break
                log.warning("worker %s exited with %s; restarting", worker.pid, worker.exitcode)
                if self._stop.wait(_RESTART_PAUSE_S):
                    break
                self._start(i)
        self._stop_all()
        return 1 if self.failed else 0

    def install_signal_handlers(self) -> None:
        def handle(_signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def _start(self, i: int) -> None:
        worker = self._context.Process(
            target=_run_worker,
            args=(self._sockets[i], self._options),
            name=f"takedown-worker-{i}",
        )
        worker.start()
        self._workers[i] = worker

    def _stop_all(self) -> None:
        running = [w for w in self._workers if w is not None and w.is_alive()]
        for worker in running:
            worker.terminate()  # SIGTERM: uvicorn stops accepting, finishes requests
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("worker %s did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()
        for sock in self._sockets:
            sock.close()


def serve_workers(sockets: list[socket.socket], options: WorkerOptions) -> int:
    """Run one process per bound socket (``listen_sockets``) until SIGINT/SIGTERM; the
    exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    supervisor = Supervisor(sockets, options)
    supervisor.install_signal_handlers()
    return supervisor.run()
