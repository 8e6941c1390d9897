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

The child is ``python -m takedown.integrations.feed_child``; its one input (standard
input, pickled) is the feed's type, credentials, base URL, checkpoint and end time.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from takedown.domain.exchanges import Credentials, ExchangeType, Page

PAGE, END, ERROR = "page", "end", "error"  # what the child writes, in pickled pairs


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
        [sys.executable, "-m", "takedown.integrations.feed_child"],
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
            if what == PAGE:
                yield payload
            elif what == ERROR:
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
