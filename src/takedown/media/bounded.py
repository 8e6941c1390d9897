"""Run untrusted-input work in a child process that is killed at a deadline.

Why a process, not a thread with a time budget: a budget checked between packets and
frames (which the video decoder also does) cannot interrupt a decoder stuck *inside*
one FFmpeg call -- a demuxer looping on a crafted index, a codec spinning on a
malformed slice. A Python thread cannot be stopped from outside, so such a hang would
hold a web worker's thread forever. A child process can always be killed. The same
isolation turns a decoder crash (a segfault on hostile input) into a refused upload
instead of a dead server process.

Why ``forkserver``: a fresh interpreter per video (``spawn``) pays ~0.3 s of imports
(numpy, PyAV, pdqhash) each time; plain ``fork`` of a multi-threaded web server is
unsafe (locks held by other threads are copied locked). The fork server is a small
single-threaded process started once, which imports the decoding modules once; each
job is a fork of *it*: a few milliseconds, clean state, nothing shared with the
server's threads.

The caller's thread waits on a pipe with a timeout, so it is blocked for at most the
deadline (plus a kill), never by the child.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from takedown.errors import MediaCorrupt, TakedownError, VideoDecodeTimeout

# Modules the fork server imports once, so that each forked job starts warm. ``__main__``
# first, as multiprocessing does by default: the server imports the program's main
# script once, and forked jobs then find it already there instead of re-importing it
# (for ``takedown serve`` that would be the whole application, per video).
PRELOAD: Final = ["__main__", "takedown.media.video_decode"]

_context: Any = None
_context_lock = threading.Lock()


def _forkserver() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def run_bounded(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """``fn(*args)`` in a child process; its result, or its :class:`TakedownError`.

    ``fn`` must be a module-level function (it is pickled by reference). Past
    ``timeout_s`` the child is killed and :class:`VideoDecodeTimeout` raised. A child
    that dies without answering (crash, out of memory) is reported as
    :class:`MediaCorrupt`: the input made the decoder fail.
    """
    ctx = _forkserver()
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(sender, fn, args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise VideoDecodeTimeout(
                f"Decoding took longer than {timeout_s:g} s and was stopped.",
                limit_seconds=timeout_s,
            )
        try:
            status, value = receiver.recv()
        except EOFError:
            child.join(5)
            raise MediaCorrupt(
                "The decoder stopped without an answer on this file (it crashed or ran "
                "out of memory); the file is corrupt or hostile.",
                exit_code=child.exitcode,
            ) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if status == "error":
        raise value
    if status == "bug":
        raise RuntimeError(f"Video decoding failed with a bug: {value}")
    return value


def _child(sender: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args))
    except TakedownError as exc:
        outcome = ("error", exc)
    except Exception as exc:  # a bug, not the input's fault: the caller answers 500
        outcome = ("bug", f"{type(exc).__name__}: {exc}"[:500])
    sender.send(outcome)
    sender.close()
