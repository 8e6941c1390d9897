"""ThreatExchange and TCAP: a first sync and an incremental one, in-process.

    .venv/bin/python bench/exchanges_te_tat.py [--n 50000] [--changes 2000]
                                               [--database-url URL]

Starts the local servers speaking each protocol (tests/exchanges/threatexchange_server.py,
tests/exchanges/tat_server.py) holding N entries each (a PDQ each, stand-in random
values; pages of 500 for ThreatExchange, the feed's page size, and 1,000 for TCAP), and
syncs each into its own bank of a fresh database through ``ExchangeService.sync``:
first the whole list, then CHANGES changes (half new entries, half deletions).

Prints JSON and writes bench/results/exchanges_te_tat.json (…-postgresql.json with
--database-url), with the machine's load average. No goal is set for these two
exchanges (the issue's goals are for NCMEC's list); this measures what they cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.exchanges.tat_server import PASSWORD, USER, TatServer  # noqa: E402
from tests.exchanges.threatexchange_server import GROUP, TOKEN, ThreatExchangeServer  # noqa: E402

from takedown.config import Settings  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402
from takedown.store.blobs import new_key_text  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--changes", type=int, default=2_000)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="bench-te-tat-"))
    data = work / "data"
    data.mkdir()
    url = args.database_url or f"sqlite:///{work / 'takedown.sqlite3'}"
    if args.database_url:
        (data / "master.key").write_text(new_key_text() + "\n")
        os.chmod(data / "master.key", 0o600)
    rt = open_runtime(Settings(database_url=url, data_dir=data), migrate=True)
    te = ThreatExchangeServer(page_size=500).start()
    tat = TatServer(page_size=1000).start()
    base = int(time.time()) - 86_400
    for i in range(args.n):
        te.put(10_000 + i, "HASH_PDQ", _pdq(rng), base + i // 100)
        tat.put(10_000 + i, "PDQ", _pdq(rng), base + i / 100)
    (work / "te.token").write_text(TOKEN + "\n")
    (work / "tat.creds").write_text(f"{USER}:{PASSWORD}\n")
    for name in ("te", "tat"):
        rt.banks.create_bank(name, actor="bench")
    rt.exchanges.add("te", type="threatexchange", bank="te", actor="bench", base_url=te.url,
                     privacy_group=GROUP, credentials_file=str(work / "te.token"))  # fmt: skip
    rt.exchanges.add("tat", type="tat", bank="tat", actor="bench", base_url=tat.url,
                     credentials_file=str(work / "tat.creds"))  # fmt: skip
    out: dict[str, object] = {"n": args.n, "changes": args.changes, "database": url.split(":")[0]}
    for name in ("te", "tat"):
        t = time.perf_counter()
        first = rt.exchanges.sync(name, actor="bench")
        first_s = time.perf_counter() - t
        later = base + args.n  # after everything so far
        half = args.changes // 2
        for i in range(half):
            if name == "te":
                te.put(900_000 + i, "HASH_PDQ", _pdq(rng), later + 1)
                te.delete(10_000 + i, later + 1)
            else:
                tat.put(900_000 + i, "PDQ", _pdq(rng), later + 1 + i / 1000)
                tat.delete(10_000 + i, later + 2 + i / 1000)
        t = time.perf_counter()
        inc = rt.exchanges.sync(name, actor="bench")
        inc_s = time.perf_counter() - t
        out[name] = {
            "first_sync_s": round(first_s, 2),
            "first_entries_per_s": round(first.added / first_s),
            "first_pages": first.pages,
            "incremental_s": round(inc_s, 2),
            "incremental_added": inc.added,
            "incremental_disabled": inc.disabled,
        }
    te.stop()
    tat.stop()
    rt.close()
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(out, indent=2)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "-postgresql" if args.database_url else ""
    (RESULTS / f"exchanges_te_tat{suffix}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
