"""A long pull's pages fetched and parsed in a child process.

python-threatexchange's NCMEC client parses each page's XML in Python (about 55 us an
entry: a million-entry list is most of a minute of one core). In the syncing process
that parsing and the database writes share one interpreter lock, so their times add up;
in a child process they overlap on two cores. The child runs the same feed (the
library's client, the same requests and checkpoints) from a checkpoint and writes each
:class:`~takedown.domain.exchanges.Page` to its standard output, pickled, in order;
the parent reads them one at a time (the pipe holds about one page: the child fetches
at most a page or two ahead).

The child ends when the feed ends, when its feed fails (the error, a sentence, is the
last thing it writes), or when it cannot write any more: the parent stopped reading or
was killed (kill -9 included), so no orphan keeps pulling. Nothing is applied in the
child; the parent applies each page with its checkpoint as before, so a kill of either
process resumes from the last applied page.

Run as ``python -m takedown.integrations.feed_process``; its one input (standard
input, pickled) is the feed's type, credentials, base URL, checkpoint and end time.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from takedown.domain.exchanges import Credentials, ExchangeType, Page

_PAGE, _END, _ERROR = "page", "end", "error"


class ChildFeedError(Exception):
    """The child's feed failed; ``message`` is its sentence (never a secret)."""

    def __init__(self, message: str, credentials: bool) -> None:
        super().__init__(message)
        self.credentials = credentials


def child_pages(
    kind: ExchangeType,
    creds: Credentials,
    base_url: str | None,
    checkpoint: Mapping[str, Any],
    now: float | None,
) -> Iterator[Page]:
    """The feed's pages from ``checkpoint``, fetched by a child process. Raises
    :class:`ChildFeedError` when the feed failed there (after the pages before it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "takedown.integrations.feed_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        pickle.dump((kind, creds, base_url, dict(checkpoint), now), proc.stdin)
        proc.stdin.close()
        while True:
            try:
                what, payload = pickle.load(proc.stdout)
            except EOFError:
                raise ChildFeedError(
                    "the process fetching its pages ended unexpectedly", False
                ) from None
            if what == _PAGE:
                yield payload
            elif what == _ERROR:
                raise ChildFeedError(*payload)
            else:
                return
    finally:
        proc.stdout.close()  # a child still writing gets a broken pipe and ends
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in a request: stop it
            proc.kill()
            proc.wait()


def _main() -> None:
    from takedown.integrations.hash_exchanges import FeedError, open_feed

    # The child only makes pages and hands them on; nothing it keeps forms cycles
    # worth a full collection's walk every few thousand objects.
    gc.freeze()
    gc.set_threshold(50_000, 20, 1000)
    kind, creds, base_url, checkpoint, now = pickle.load(sys.stdin.buffer)
    # The pages go out on the original standard output alone: anything else printed
    # (a library's warning) goes to standard error.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        feed = open_feed(kind, creds, base_url, offload=False)
        for page in feed.pages(checkpoint, now):
            pickle.dump((_PAGE, page), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        message: tuple[str, Any] = (_END, None)
    except (BrokenPipeError, OSError):
        return  # the parent stopped reading or is gone
    except FeedError as exc:
        message = (_ERROR, (str(exc), exc.credentials))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a sentence
        message = (_ERROR, (f"fetching failed: {type(exc).__name__}: {exc!s:.200}", False))
    try:
        pickle.dump(message, out)
        out.flush()
    except (BrokenPipeError, OSError):
        pass


if __name__ == "__main__":
    _main()
