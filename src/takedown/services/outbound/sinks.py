"""Where claimed actions go: the platform's webhook (one action or a batch a request) or
a NATS JetStream subject. A sink says which actions were acknowledged; the dispatcher
(``delivery.py``) records that and retries the rest.

The request and response shapes are the platform's contract:
docs/integrations/webhooks.md.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from takedown.integrations.jetstream import JetStreamPublisher
from takedown.integrations.webhooks import WebhookClient, sign


@dataclass(frozen=True)
class Claimed:
    """One claimed action, its body as the platform receives it."""

    row_id: int
    attempts: int  # after this claim: the guard against a lost lease
    public_id: str
    idempotency_key: str
    target_type: str
    target_id: str
    body: bytes


@dataclass
class SinkResult:
    """``accepted``: public ids of the actions the platform acknowledged. ``status``:
    the HTTP status (200 for JetStream), None when nothing answered. ``errors``: why an
    action was not accepted, by public id; ``error``: why for the whole request."""

    status: int | None
    accepted: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class Sink(Protocol):
    def send(self, actions: Sequence[Claimed]) -> SinkResult: ...

    def close(self) -> None: ...


def batch_key(actions: Sequence[Claimed]) -> str:
    """The batch's idempotency key: the same for a retry of the same actions."""
    digest = hashlib.sha256("\n".join(a.idempotency_key for a in actions).encode())
    return "b-" + digest.hexdigest()[:40]


def batch_body(actions: Sequence[Claimed], key: str) -> bytes:
    """``{"actions": [<action>, ...], "batch": {...}}``, each action exactly the body of
    the one-action request (keys sorted, as that body's are)."""
    head = json.dumps(
        {"count": len(actions), "id": key, "idempotency_key": key}, separators=(",", ":")
    ).encode()
    return b'{"actions":[' + b",".join(a.body for a in actions) + b'],"batch":' + head + b"}"


def accepted_in(answer: bytes, actions: Sequence[Claimed]) -> tuple[set[str], dict[str, str]]:
    """What a 2xx answer to a batch acknowledges. An empty or non-JSON body, or one
    without ``accepted``, acknowledges every action; ``{"accepted": [ids]}`` only those
    (by action ``id`` or ``idempotency_key``), and ``rejected`` (ids, or objects with
    ``id`` and ``error``) says why the others were not. Unacknowledged actions are
    retried."""
    every = {a.public_id for a in actions}
    try:
        doc = json.loads(answer) if answer.strip() else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("accepted"), list):
        return every, {}
    by_key = {a.idempotency_key: a.public_id for a in actions}
    named = {str(x) for x in doc["accepted"]}
    accepted = {by_key.get(x, x) for x in named} & every
    errors: dict[str, str] = {}
    for item in doc.get("rejected") or []:
        if isinstance(item, dict):
            rid, why = str(item.get("id", "")), str(item.get("error", "rejected"))
        else:
            rid, why = str(item), "rejected"
        rid = by_key.get(rid, rid)
        if rid in every and rid not in accepted:
            errors[rid] = f"rejected by the platform: {why}"[:1000]
    for pid in every - accepted:
        errors.setdefault(pid, "not acknowledged in the batch answer")
    return accepted, errors


class WebhookSink:
    """Signed HTTP POSTs: one action a request (``batch=False``, the original form), or
    a batch body with its own idempotency key."""

    def __init__(self, client: WebhookClient, *, batch: bool) -> None:
        self._client = client
        self._batch = batch

    def send(self, actions: Sequence[Claimed]) -> SinkResult:
        if not self._batch:
            return self._one(actions[0]) if len(actions) == 1 else self._each(actions)
        key = batch_key(actions)
        try:
            status, answer = self._client.post_answer(
                batch_body(actions, key),
                delivery_id=key,
                idempotency_key=key,
                batch_size=len(actions),
            )
        except httpx.HTTPError as exc:
            return SinkResult(None, error=f"{exc.__class__.__name__}: {exc}")
        if not 200 <= status < 300:
            return SinkResult(status, error=f"HTTP {status}")
        accepted, errors = accepted_in(answer, actions)
        return SinkResult(status, accepted, errors)

    def _one(self, action: Claimed) -> SinkResult:
        try:
            status = self._client.post(
                action.body, delivery_id=action.public_id, idempotency_key=action.idempotency_key
            )
        except httpx.HTTPError as exc:
            return SinkResult(None, error=f"{exc.__class__.__name__}: {exc}")
        ok = 200 <= status < 300
        return SinkResult(status, {action.public_id} if ok else set(), error=f"HTTP {status}")

    def _each(self, actions: Sequence[Claimed]) -> SinkResult:
        out = SinkResult(None)
        for a in actions:
            one = self._one(a)
            out.accepted |= one.accepted
            if one.status is not None:
                out.status = one.status
            if not one.accepted:
                out.errors[a.public_id] = one.error or f"HTTP {one.status}"
                if one.status is None:
                    out.error = one.error
                    break
        return out

    def close(self) -> None:
        self._client.close()


def partition_of(target_type: str, target_id: str, partitions: int) -> int:
    """A target's partition: stable, so one item's actions stay on one subject, in order."""
    if partitions <= 1:
        return 0
    return zlib.crc32(f"{target_type}:{target_id}".encode()) % partitions


class JetStreamSink:
    """Each action published to ``<subject>.<partition>`` with ``Nats-Msg-Id`` set to its
    idempotency key (JetStream drops a re-publish within the stream's duplicate window),
    signed like a webhook when a secret is given; acknowledged when JetStream has stored
    it (at least once)."""

    def __init__(
        self,
        publisher: JetStreamPublisher,
        subject: str,
        *,
        partitions: int = 1,
        secret: str | None = None,
    ) -> None:
        self._publisher = publisher
        self._subject = subject
        self._partitions = partitions
        self._secret = secret

    def send(self, actions: Sequence[Claimed]) -> SinkResult:
        messages = []
        for a in actions:
            headers = {
                "Nats-Msg-Id": a.idempotency_key,
                "Takedown-Delivery": a.public_id,
            }
            if self._secret:
                headers["Takedown-Signature"] = sign(self._secret, a.body)
            n = partition_of(a.target_type, a.target_id, self._partitions)
            messages.append((f"{self._subject}.{n}", a.body, headers))
        try:
            stored = self._publisher.publish_all(messages)
        except Exception as exc:  # noqa: BLE001 - any client failure is "no answer"
            return SinkResult(None, error=f"{exc.__class__.__name__}: {exc}"[:1000])
        result = SinkResult(200)
        for a, err in zip(actions, stored, strict=True):
            if err is None:
                result.accepted.add(a.public_id)
            else:
                result.errors[a.public_id] = err
        return result

    def close(self) -> None:
        self._publisher.close()
