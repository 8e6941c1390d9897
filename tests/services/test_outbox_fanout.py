"""A measure on many items (a viral item's copies): the items restricted in the
report's transaction, their outbox actions written after it from one fan-out row, a
chunk at a time, none lost and none twice, each item's actions still in order. The
threshold is lowered to 5 items so that a dozen copies make a fan-out."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.config import Settings
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.store import item_actions
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, DsaStatement, Item, OutboxFanout, OutboxMessage
from tests.services.test_delivery import _restrict_some, _states
from tests.services.test_delivery_batches import BatchReceiver, _batched, _restore_all


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data", outbox_fanout_min=5)


@pytest.fixture
def batch_receiver():
    r = BatchReceiver()
    yield r
    r.close()


def _fanouts(rt: Runtime) -> list[tuple[int, int, bool]]:
    with rt.sessions() as s:
        return [
            (f.total, f.written, f.finished_at is not None)
            for f in s.scalars(select(OutboxFanout).order_by(OutboxFanout.id))
        ]


def test_a_viral_measure_restricts_at_once_and_its_actions_follow(
    rt: Runtime, batch_receiver: BatchReceiver
):
    _restrict_some(rt, 12)
    with rt.sessions() as s:
        visibility = s.scalars(select(Item.visibility)).all()
        event = json.loads(
            s.scalars(select(AuditEvent.details).where(AuditEvent.action == "item.restrict")).one()
        )
        ids = s.scalars(select(Item.id)).all()
    assert visibility == ["restricted"] * 12  # restricted in the report's transaction
    assert _states(rt) == {}  # the platform's actions not written yet...
    assert _fanouts(rt) == [(12, 0, False)]
    assert rt.outbox.counts() == {"pending": 12}  # ...but counted as pending
    d = _batched(rt, batch_receiver.url, 5)
    d.deliver_due(now=utcnow())
    assert _states(rt) == {"acknowledged": 12}
    assert _fanouts(rt) == [(12, 12, True)]
    got = [a["action"] for b in batch_receiver.batches for a in b["actions"]]
    assert batch_receiver.bad == 0
    assert sorted(a["item_id"] for a in got) == sorted(["orig"] + [f"r{i}" for i in range(1, 12)])
    # The same keys as if written at once: the audit event's prefix + each item's id.
    keys = {a["idempotency_key"] for b in batch_receiver.batches for a in b["actions"]}
    assert keys == {f"{event['actions']}{i:010d}" for i in ids}
    assert all(a["statement_of_reasons"]["measure"] for a in got)


def test_a_fanout_is_written_a_chunk_a_transaction_none_lost_none_twice(rt: Runtime):
    _restrict_some(rt, 12)
    # A writer killed mid-chunk: its transaction is gone, and so is what it wrote.
    with pytest.raises(RuntimeError), unit_of_work(rt.sessions) as s:
        assert item_actions.write_next(s, 5) == 5
        raise RuntimeError("killed")
    assert _states(rt) == {}
    assert _fanouts(rt) == [(12, 0, False)]
    written = []
    for _ in range(4):
        with unit_of_work(rt.sessions) as s:
            written.append(item_actions.write_next(s, 5))
    assert written == [5, 5, 2, 0]
    assert _fanouts(rt) == [(12, 12, True)]
    with rt.sessions() as s:
        targets = s.scalars(select(OutboxMessage.target_platform_id)).all()
    assert len(targets) == len(set(targets)) == 12


def test_a_later_measure_on_the_same_items_comes_after_the_fanout(
    rt: Runtime, batch_receiver: BatchReceiver
):
    """Reviewers restore the items before any restriction was written out: the
    restrictions are written first (lower ids), and the platform gets each item's
    restriction before its restoration."""
    _restrict_some(rt, 12)
    _restore_all(rt)
    assert _fanouts(rt) == [(12, 12, True), (12, 0, False)]
    assert rt.outbox.counts() == {"pending": 24}
    with unit_of_work(rt.sessions) as s:
        assert item_actions.write_next(s, 100) == 12
    with rt.sessions() as s:
        rows = s.execute(
            select(OutboxMessage.target_platform_id, OutboxMessage.topic).order_by(OutboxMessage.id)
        ).all()
    assert [t for _, t in rows] == ["item.restrict"] * 12 + ["item.restore"] * 12
    d = _batched(rt, batch_receiver.url, 5)
    t = utcnow()
    for _ in range(6):
        d.deliver_due(now=t)
        t += timedelta(seconds=1)
    assert _states(rt) == {"acknowledged": 24}
    per_item: dict[str, list[str]] = {}
    for b in batch_receiver.batches:
        for a in b["actions"]:
            per_item.setdefault(a["target"]["id"], []).append(a["action"]["action"])
    assert len(per_item) == 12
    assert all(v == ["restrict", "restore"] for v in per_item.values()), per_item


def test_statements_of_reasons_and_transparency_count_every_action(rt: Runtime):
    """Nothing delivers here: the DSA statements and the transparency report write the
    fan-out out themselves, and count all of its actions."""
    _restrict_some(rt, 12)
    start = utcnow() - timedelta(hours=1)
    report = rt.transparency.dsa_report(start, utcnow() + timedelta(hours=1))
    assert report["actions"]["by_type"]["item.restrict"] == 12  # type: ignore[index]
    assert _fanouts(rt) == [(12, 12, True)]
    rt.dsa.collect()
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(DsaStatement)) == 12
