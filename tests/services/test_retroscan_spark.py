"""Same answer both ways (issue 20): the PySpark job over the registry exported as
Parquet and the database worker find the identical set of (entry, item) matches.

One local Spark session (one JVM) for the module; small data. Stand-in photos from the
scikit-image wheel, random hashes for the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from takedown.cli import app
from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.media import ImageLimits
from takedown.media.video import hash_image_upload
from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput, MediaInput
from takedown.store.db import unit_of_work
from takedown.store.models import BankEntry, Item, ItemMedia, RetroscanMatch
from tests.conftest import encode, standin_bytes, standin_rgb

# One xdist worker runs this module, so its servers start once (scripts/test: loadgroup).
pytestmark = pytest.mark.xdist_group("spark")

pytest.importorskip("pyspark")
runner = CliRunner()


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from takedown.integrations.spark import session

    s = session("local[1]")  # one Python worker: one numba load, the data is small
    yield s
    s.stop()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(settings.data_dir))


def _media(data: bytes) -> MediaInput:
    s = hash_image_upload(data, ImageLimits())
    return MediaInput(s.sha256, s.md5, s.pdq.hash, s.pdq.quality, pdq_variants=s.pdq.dihedral)


def _flip_bits(hex_hash: str, bits: int, rng: np.random.Generator) -> str:
    value = int(hex_hash, 16)
    for b in rng.choice(256, size=bits, replace=False):
        value ^= 1 << int(b)
    return f"{value:064x}"


# One backend: the JVM is the cost here; the database worker runs on both backends in
# test_retroscan.py.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_spark_and_the_database_find_the_same_matches(
    rt: Runtime, spark: object, cli: None, tmp_path: Path
) -> None:
    rng = np.random.default_rng(11)
    astronaut = _media(standin_bytes("astronaut.png"))
    coffee = _media(standin_bytes("coffee.png"))
    mirrored = _media(encode(np.ascontiguousarray(np.fliplr(standin_rgb("astronaut.png")))))
    randoms = [
        MediaInput(rng.bytes(32).hex(), rng.bytes(16).hex(), rng.bytes(32).hex(), 90)
        for _ in range(40)
    ]
    # A PDQ below the bank's quality floor matches nothing, on either engine.
    faint = MediaInput(rng.bytes(32).hex(), None, rng.bytes(32).hex(), 20)
    items = {"astro": astronaut, "coffee": coffee, "astro-again": astronaut, "faint": faint}
    items |= {f"r{n}": m for n, m in enumerate(randoms)}
    for n, (pid, media) in enumerate(items.items()):
        rt.registry.upsert_item(
            ItemInput(platform_id=pid, account_id=f"acc{n % 5}", media=[media]), actor="test"
        )
    rt.banks.create_bank("ncmec", actor="test", source="ncmec")
    assert mirrored.pdq is not None and randoms[0].pdq and randoms[1].pdq
    entries = [
        HashRecord("pdq", mirrored.pdq),  # finds the astronaut through its variants
        HashRecord("md5", str(coffee.md5)),
        HashRecord("pdq", _flip_bits(randoms[0].pdq, 20, rng)),  # inside the radius
        HashRecord("pdq", _flip_bits(randoms[1].pdq, 40, rng)),  # outside it
        HashRecord("sha256", randoms[2].sha256),
        HashRecord("pdq", str(faint.pdq)),
    ] + [HashRecord("pdq", rng.bytes(32).hex()) for _ in range(50)]
    rt.banks.add_hashes("ncmec", entries, actor="test")

    # One machine: the database worker.
    assert rt.retroscan.run_pending() == 1
    with unit_of_work(rt.sessions, write=False) as s:
        database = set(
            s.execute(
                select(BankEntry.public_id, Item.platform_id)
                .join(RetroscanMatch, RetroscanMatch.entry_id == BankEntry.id)
                .join(ItemMedia, ItemMedia.media_id == RetroscanMatch.media_id)
                .join(Item, Item.id == ItemMedia.item_id)
            ).all()
        )
    assert {i for _, i in database} == {"astro", "astro-again", "coffee", "r0", "r2"}

    # Beyond one machine: the registry as the warehouse keeps it, scanned by Spark.
    dataset = tmp_path / "registry"
    done = runner.invoke(app, ["registry", "export", "--format", "parquet", "--out", str(dataset)])
    assert done.exit_code == 0, done.output
    assert (dataset / "signal_type=pdq").is_dir()
    matches = tmp_path / "matches.ndjson"
    done = runner.invoke(
        app,
        ["retroscan", "ncmec", "--engine", "spark", "--media", str(dataset)]
        + ["--out", str(matches)],
    )
    assert done.exit_code == 0, done.output
    lines = [json.loads(x) for x in matches.read_text().splitlines()]
    assert {(x["entry_id"], x["item_id"]) for x in lines} == database
    assert all(x["account_id"].startswith("acc") for x in lines)

    # Ingested, they are the pairs already acted on: nothing happens twice.
    done = runner.invoke(app, ["retroscan", "ncmec", "--ingest", str(matches), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    # Pairs are (entry, media): "astro" and "astro-again" carry the same file.
    assert result["new_pairs"] == 0 and result["already_known"] == len(database) - 1

    # A bank the database has not scanned yet: Spark's matches are acted on when
    # ingested (restrict first), and the database's own scan then acts on none again.
    rt.banks.create_bank("urgent", actor="test", source="ncmec", restrict_on_match=True)
    rt.banks.add_hashes("urgent", [HashRecord("sha256", randoms[3].sha256)], actor="test")
    urgent = tmp_path / "urgent.ndjson"
    done = runner.invoke(
        app,
        ["retroscan", "urgent", "--engine", "spark", "--media", str(dataset)]
        + ["--out", str(urgent)],
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["retroscan", "urgent", "--ingest", str(urgent), "--json"])
    result = json.loads(done.stdout)
    assert result["new_pairs"] == 1 and len(result["cases"]) == 1
    assert rt.registry.get_item("r3").visibility == "restricted"
    assert rt.retroscan.run_pending() == 1
    assert rt.retroscan.list_jobs("urgent")[0].matches == 0

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"entry_id": 1}\n')
    done = runner.invoke(app, ["retroscan", "ncmec", "--ingest", str(bad)])
    assert done.exit_code == 2 and "invalid_match_line" in done.output
