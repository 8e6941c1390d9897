"""The child process of :mod:`takedown.integrations.feed_process`: pulls a feed's pages
from a checkpoint and writes them, pickled, to its standard output (a module of its own
so that the feed's module, which starts it, is not imported by the module it uses)."""

from __future__ import annotations

import gc
import os
import pickle
import sys
from typing import Any

from takedown.domain.exchanges import ExchangeType
from takedown.integrations.feed_process import END, ERROR, PAGE
from takedown.integrations.hash_exchanges import FeedError, NcmecFeed


def _main() -> None:
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
        if kind is not ExchangeType.NCMEC:
            raise FeedError(f"{kind.value} is never pulled in a child process.")
        feed = NcmecFeed(creds, base_url, offload=False)
        for page in feed.pages(checkpoint, now):
            pickle.dump((PAGE, page), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        message: tuple[str, Any] = (END, None)
    except (BrokenPipeError, OSError):
        return  # the parent stopped reading or is gone
    except FeedError as exc:
        message = (ERROR, (str(exc), exc.credentials))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a sentence
        message = (ERROR, (f"fetching failed: {type(exc).__name__}: {exc!s:.200}", False))
    try:
        pickle.dump(message, out)
        out.flush()
    except (BrokenPipeError, OSError):
        pass


if __name__ == "__main__":
    _main()
