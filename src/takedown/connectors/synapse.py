"""A Synapse module that connects a Matrix homeserver to Takedown.

Configured in homeserver.yaml (docs/integrations/matrix.md)::

    modules:
      - module: takedown.connectors.synapse.TakedownModule
        config:
          takedown_url: https://takedown.example
          api_key: tdk_…                 # scope `platform`
          webhook_secret: …              # TAKEDOWN_WEBHOOK_SECRET
          admin_user: "@takedown:example.org"
          admin_access_token: syt_…
          homeserver_url: http://127.0.0.1:8008
          report_poll_seconds: 30

What it does, through Takedown's public API and webhooks only:

- every local upload is screened (`POST /v1/screen`); a `block` verdict refuses it with
  a message (thumbnails, remote media and URL previews are not uploads: skipped);
- every local message with media registers its sender (`PUT /v1/accounts`) and the event
  with its file (`PUT /v1/items`, `POST /v1/items/{id}/media`);
- Matrix abuse reports, polled from the admin API, become Takedown reports;
- Takedown's actions, received at `/_takedown/webhook`, are carried out with Synapse's
  admin API (quarantine, redact, suspend, deactivate, unquarantine).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from io import BytesIO
from typing import Any

import httpx
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import NOT_SPAM, DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import ConfigError as SynapseConfigError

from takedown.connectors.synapse_takedown import (
    MEDIA_MSGTYPES,
    ConfigError,
    ConnectorConfig,
    SynapseAdmin,
    SynapseAdminError,
    TakedownClient,
    TakedownError,
    category_for,
    event_media,
    is_upload,
    iso_ms,
    signature_ok,
)

logger = logging.getLogger(__name__)

BLOCKED_MESSAGE = (
    "This file cannot be uploaded: it matches material this server does not allow "
    "(Takedown screening)."
)
ACCOUNT_DATA_TYPE = "org.takedown.connector"
MINOR_SAFETY = ("csam", "minor_sexual_exploitation")
_TABLE = "takedown_connector_items"


class TakedownModule:
    def __init__(self, config: ConnectorConfig, api: ModuleApi):
        self._config = config
        self._api = api
        self._takedown = TakedownClient(config)
        self._admin = SynapseAdmin(config)
        self._done: OrderedDict[str, None] = OrderedDict()  # acknowledged deliveries
        self._polling = False
        self._table_ready = False
        api.register_spam_checker_callbacks(
            check_media_file_for_spam=self.check_media_file_for_spam
        )
        api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)
        api.register_web_resource("/_takedown/webhook", _WebhookResource(self))
        api.looping_background_call(
            self.poll_reports, config.report_poll_seconds * 1000, desc="takedown_poll_reports"
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ConnectorConfig:
        try:
            return ConnectorConfig.parse(config)
        except ConfigError as e:
            raise SynapseConfigError(str(e)) from None

    # -- uploads ---------------------------------------------------------------------
    async def check_media_file_for_spam(self, file_wrapper: Any, file_info: Any) -> Any:
        if not is_upload(file_info.server_name, file_info.url_cache, file_info.thumbnail):
            return NOT_SPAM
        buffer = BytesIO()
        await file_wrapper.write_chunks_to(buffer.write)
        ref = f"mxc://{self._api.server_name}/{file_info.file_id}"
        try:
            answer = await self._api.defer_to_thread(self._takedown.screen, buffer.getvalue(), ref)
        except TakedownError as e:
            if e.status < 500 and e.status not in (401, 403, 429):
                # Not an image or video, or over Takedown's limits: nothing to screen.
                logger.info("Takedown did not screen %s: %s", ref, e)
                return NOT_SPAM
            return self._unscreened(ref, e)  # Takedown down, or the key refused
        except httpx.HTTPError as e:
            return self._unscreened(ref, e)
        if answer.get("verdict") == "block":
            logger.info("Upload %s refused: Takedown's verdict is block", ref)
            raise SynapseError(403, BLOCKED_MESSAGE, Codes.FORBIDDEN)
        return NOT_SPAM

    def _unscreened(self, ref: str, error: Exception) -> Any:
        logger.warning("Takedown could not screen %s: %s", ref, error)
        if self._config.fail_closed:
            raise SynapseError(
                503, "Uploads are paused: the screening service cannot be reached.", Codes.UNKNOWN
            )
        return NOT_SPAM

    async def on_new_event(self, event: Any, state_events: Any) -> None:
        if event.type not in ("m.room.message", "m.sticker") or not self._api.is_mine(event.sender):
            return
        content = event.content
        if event.type == "m.room.message" and content.get("msgtype") not in MEDIA_MSGTYPES:
            return
        media = event_media(content)
        if not media:
            return
        join_rules = state_events.get(("m.room.join_rules", "")) if state_events else None
        public = join_rules is not None and join_rules.content.get("join_rule") == "public"
        info = {
            "event_id": event.event_id,
            "room_id": event.room_id,
            "sender": event.sender,
            "ts": int(event.origin_server_ts),
            "media": [list(m) for m in media],
            "file_name": str(content.get("body") or ""),
            "visibility": "public" if public else "private",
        }
        self._api.run_as_background_process("takedown_register_item", self._register, info)

    async def _register(self, info: dict[str, Any]) -> None:
        try:
            await self._remember(info)
            await self._api.defer_to_thread(self._register_sync, info)
        except Exception:
            logger.exception("Registering %s with Takedown failed", info["event_id"])

    def _register_sync(self, info: dict[str, Any]) -> None:
        sender, event_id = info["sender"], info["event_id"]
        self._takedown.put_account(sender, {"handle": sender})
        self._takedown.put_item(
            event_id,
            {
                "account_id": sender,
                "url": f"https://matrix.to/#/{info['room_id']}/{event_id}",
                "posted_at": iso_ms(info["ts"]),
                "visibility": info.get("visibility", "private"),
            },
        )
        if not info["media"]:
            return
        server, media_id = info["media"][0]
        data = self._admin.download(server, media_id)
        name = "".join(c for c in info.get("file_name", "") if c.isprintable() and c not in "/\\")
        try:
            self._takedown.add_media(event_id, data, (name or media_id)[:255])
        except TakedownError as e:
            if e.status >= 500:
                raise
            logger.info("Takedown did not take the media of %s: %s", event_id, e)

    # -- reports ---------------------------------------------------------------------
    async def poll_reports(self) -> None:
        if self._polling or not self._admin.ready():
            return
        self._polling = True
        try:
            manager = self._api.account_data_manager
            state = await manager.get_global(self._config.admin_user, ACCOUNT_DATA_TYPE) or {}
            last = int(state.get("last_report_id", 0))
            reports = await self._api.defer_to_thread(self._admin.event_reports, last)
            for report in sorted(reports, key=lambda r: int(r["id"])):
                await self._file_report(report)
                last = int(report["id"])
                await manager.put_global(
                    self._config.admin_user, ACCOUNT_DATA_TYPE, {**state, "last_report_id": last}
                )
        except Exception:
            logger.exception("Polling Matrix reports failed; trying again at the next poll")
        finally:
            self._polling = False

    async def _file_report(self, report: dict[str, Any]) -> None:
        event_id = str(report["event_id"])
        exists = await self._api.defer_to_thread(self._takedown.item_exists, event_id)
        if not exists:
            # A message without media (text: grooming, a link) is registered as an item
            # without files, so the report reaches review and an action can redact it.
            info = await self._event_info(event_id)
            if info is None:
                logger.info("Report %s is about an event this server lacks", report["id"])
                return
            await self._remember(info)
            await self._api.defer_to_thread(self._register_sync, info)
        reason = report.get("reason")
        category = category_for(reason, self._config.keywords, self._config.default_category)
        body: dict[str, Any] = {
            "category": category,
            "reporter_role": "user",
            "item_ids": [event_id],
            "explanation": f"Reported on Matrix by {report.get('user_id')}: "
            + (reason or "(no reason given)"),
            "good_faith": True,
        }
        if category not in MINOR_SAFETY:
            body["reporter_name"] = str(report.get("user_id"))
            body["reporter_email"] = self._config.operator_email
        try:
            await self._api.defer_to_thread(self._takedown.report, body)
        except TakedownError as e:
            if e.status >= 500:
                raise
            logger.warning("Takedown refused Matrix report %s: %s", report["id"], e)

    # -- actions ---------------------------------------------------------------------
    async def apply(self, delivery: dict[str, Any]) -> str:
        topic = str(delivery.get("topic"))
        target = str((delivery.get("target") or {}).get("id"))
        reason = f"Takedown case {delivery.get('case')}: {topic}"
        admin = self._admin
        if topic in ("item.restrict", "item.remove", "item.restore"):
            info = await self._item_info(target)
            if info is None:
                return "unknown item"
            for server, media_id in info["media"]:
                if topic == "item.restore":
                    await self._api.defer_to_thread(admin.unquarantine, server, media_id)
                else:
                    await self._api.defer_to_thread(admin.quarantine, server, media_id)
            if topic == "item.remove" or (
                topic == "item.restrict" and self._config.redact_on_restrict
            ):
                await self._api.defer_to_thread(
                    admin.redact, info["sender"], info["room_id"], info["ts"], reason
                )
            return "done"
        calls: dict[str, Callable[[str], None]] = {
            "account.suspend": lambda user: admin.suspend(user, True),
            "account.reinstate": lambda user: admin.suspend(user, False),
            "account.terminate": admin.deactivate,
        }
        if topic not in calls:  # item.demonetize, account.warn: nothing Synapse can do
            return "nothing to do"
        if not self._api.is_mine(target):
            return "not a user of this server"  # its own server decides about it
        try:
            await self._api.defer_to_thread(calls[topic], target)
        except SynapseAdminError as e:
            if e.status == 404:
                return "unknown user"
            raise
        return "done"

    async def _item_info(self, event_id: str) -> dict[str, Any] | None:
        await self._ensure_table()
        rows = await self._api.run_db_interaction("takedown_item_info", _select_item, event_id)
        if rows:
            return dict(json.loads(rows[0][0]))
        return await self._event_info(event_id)

    async def _event_info(self, event_id: str) -> dict[str, Any] | None:
        try:
            event = await self._api.defer_to_thread(self._admin.fetch_event, event_id)
        except SynapseAdminError as e:
            if e.status == 404:
                return None
            raise
        content = event.get("content") or {}
        return {
            "event_id": event_id,
            "room_id": event["room_id"],
            "sender": event["sender"],
            "ts": int(event["origin_server_ts"]),
            "media": [list(m) for m in event_media(content)],
            "file_name": str(content.get("body") or ""),
            "visibility": "private",
        }

    async def _remember(self, info: dict[str, Any]) -> None:
        """Keep what an action needs (room, sender, time, media) in Synapse's database:
        after a redaction the event no longer says which media it carried."""
        await self._ensure_table()
        await self._api.run_db_interaction(
            "takedown_remember_item", _insert_item, info["event_id"], json.dumps(info)
        )

    async def _ensure_table(self) -> None:
        if not self._table_ready:
            await self._api.run_db_interaction("takedown_create_table", _create_table)
            self._table_ready = True

    @property
    def webhook_secret(self) -> str:
        return self._config.webhook_secret

    def seen(self, key: str) -> bool:
        return key in self._done

    def mark(self, key: str) -> None:
        self._done[key] = None
        while len(self._done) > 10_000:
            self._done.popitem(last=False)


def _create_table(txn: Any) -> None:
    txn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (event_id TEXT PRIMARY KEY, info TEXT)")


def _insert_item(txn: Any, event_id: str, info: str) -> None:
    txn.execute(
        f"INSERT INTO {_TABLE} (event_id, info) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING",
        (event_id, info),
    )


def _select_item(txn: Any, event_id: str) -> list[Any]:
    txn.execute(f"SELECT info FROM {_TABLE} WHERE event_id = ?", (event_id,))
    return list(txn.fetchall())


class _WebhookResource(DirectServeJsonResource):
    """`POST /_takedown/webhook`: Takedown's signed actions (docs/integrations/webhooks.md)."""

    def __init__(self, module: TakedownModule):
        super().__init__()
        self._module = module

    async def _async_render_POST(self, request: Any) -> tuple[int, dict[str, Any]]:
        body = request.content.read()
        header = request.getHeader("Takedown-Signature") or ""
        if not signature_ok(self._module.webhook_secret, header, body):
            raise SynapseError(401, "Bad or missing Takedown-Signature.", Codes.UNAUTHORIZED)
        try:
            delivery = json.loads(body)
        except ValueError:
            raise SynapseError(400, "The body is not JSON.", Codes.NOT_JSON) from None
        if isinstance(delivery, dict) and isinstance(delivery.get("actions"), list):
            return 200, await self._batch(delivery["actions"])
        if not isinstance(delivery, dict):
            raise SynapseError(400, "The body is not a JSON object.", Codes.NOT_JSON)
        key = request.getHeader("Idempotency-Key") or delivery.get("idempotency_key")
        if not key:  # else every keyless delivery would share one key ("None")
            raise SynapseError(400, "No Idempotency-Key.", Codes.MISSING_PARAM)
        key = str(key)
        if self._module.seen(key):
            return 200, {"result": "already done"}
        try:
            result = await self._module.apply(delivery)
        except (SynapseAdminError, httpx.HTTPError) as e:
            logger.warning("Takedown action %s failed: %s", delivery.get("topic"), e)
            raise SynapseError(502, f"The action failed: {e}", Codes.UNKNOWN) from None
        self._module.mark(key)
        return 200, {"result": result}

    async def _batch(self, actions: list[Any]) -> dict[str, Any]:
        """A batch (TAKEDOWN_WEBHOOK_BATCH_MAX > 1): each action carried out in order,
        once per key; the answer names those done, and Takedown retries only the rest."""
        accepted: list[str] = []
        rejected: list[dict[str, str]] = []
        for doc in actions:
            if not isinstance(doc, dict) or not doc.get("idempotency_key"):
                continue  # not an action: never acknowledged, so Takedown keeps it
            key = str(doc["idempotency_key"])
            ident = str(doc.get("id") or key)
            if not self._module.seen(key):
                try:
                    await self._module.apply(doc)
                except (SynapseAdminError, httpx.HTTPError) as e:
                    logger.warning("Takedown action %s failed: %s", doc.get("topic"), e)
                    rejected.append({"id": ident, "error": f"The action failed: {e}"[:300]})
                    continue
                self._module.mark(key)
            accepted.append(ident)
        return {"accepted": accepted, "rejected": rejected}
