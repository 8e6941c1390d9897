"""Hash-list exchanges: add one feeding a bank, sync it now, read its state."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from takedown.api.auth import require, runtime
from takedown.api.schemas import Int64
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.banks.quarantine import EntryMatchHistory, QuarantineView, entry_history
from takedown.services.exchanges.service import ExchangeView, SyncResult, confine_api_request

router = APIRouter(tags=["exchanges"])
_read = require(Permission.BANKS_READ)
_write = require(Permission.BANKS_WRITE)


class ExchangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Unique name: lowercase letters, digits, '-', '_', '.'.")
    type: str = Field(description="ncmec, stopncii, threatexchange or tat.")
    bank: str = Field(description="The bank the exchange's entries go into.")
    credentials_file: str | None = Field(
        None,
        description="A file on the server holding the credentials (NCMEC user:password; "
        "StopNCII fetch_key,subscription_key[,feedback_key]; ThreatExchange the app "
        "access token app_id|secret; TCAP username:password): its name in, or a path "
        "under, the exchange credentials directory (TAKEDOWN_EXCHANGE_CREDENTIALS_DIR); "
        "elsewhere `credentials_source_not_allowed`. Only the path is stored; the "
        "secret is never shown.",
    )
    credentials_env: str | None = Field(
        None,
        description="Or the name of an environment variable holding them: "
        "TAKEDOWN_EXCHANGE_CREDENTIALS_… (other names: `credentials_source_not_allowed`).",
    )
    base_url: str | None = Field(
        None,
        description="Another of the exchange's own environments, or a base URL the "
        "operator allowed in TAKEDOWN_EXCHANGE_BASE_URLS (otherwise "
        "`exchange_url_not_allowed`): the credentials are sent there.",
    )
    privacy_group: Int64 | None = Field(
        None, description="ThreatExchange only (and required there): the privacy group's id."
    )
    interval_seconds: Int64 = Field(3600, description="Seconds between syncs (60 to a week).")
    threshold: Int64 | None = Field(
        None,
        description="Its own PDQ distance threshold for its entries (0-128): the stricter "
        "of this and the bank's applies. None: the bank's.",
    )
    action: str | None = Field(
        None,
        description="block, review or record: the action for its entries' matches instead "
        "of the bank's. None: the bank's.",
    )


@router.get("/exchanges", response_model=list[ExchangeView], summary="List hash exchanges")
def list_exchanges(
    _: Principal = Depends(_read), rt: Runtime = Depends(runtime)
) -> list[ExchangeView]:
    return rt.exchanges.list()


@router.post(
    "/exchanges", response_model=ExchangeView, status_code=201, summary="Add a hash exchange"
)
def add_exchange(
    body: ExchangeIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> ExchangeView:
    credentials_file = confine_api_request(
        rt.settings,
        type=body.type,
        credentials_file=body.credentials_file,
        credentials_env=body.credentials_env,
        base_url=body.base_url,
    )
    view = rt.exchanges.add(
        body.name,
        type=body.type,
        bank=body.bank,
        actor=p.actor,
        credentials_file=credentials_file,
        credentials_env=body.credentials_env,
        base_url=body.base_url,
        interval_seconds=body.interval_seconds,
        threshold=body.threshold,
        action=body.action,
        privacy_group=body.privacy_group,
    )
    rt.matcher.invalidate()  # its threshold and action apply at once here
    return view


class ExchangePolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: Int64 | None = Field(
        None, description="Its own PDQ threshold (0-128); null: the bank's."
    )
    action: str | None = Field(None, description="block, review or record; null: the bank's.")


@router.put(
    "/exchanges/{name}/policy",
    response_model=ExchangeView,
    summary="Set an exchange's own threshold and action for its entries",
    description="Both are replaced (null: the bank's). The stricter of the bank's and "
    "the exchange's PDQ threshold applies; the exchange's action replaces the bank's. "
    "Audited.",
)
def set_exchange_policy(
    name: str,
    body: ExchangePolicyIn,
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> ExchangeView:
    view = rt.exchanges.set_policy(
        name, actor=p.actor, threshold=body.threshold, action=body.action
    )
    rt.matcher.invalidate()
    return view


@router.get("/exchanges/{name}", response_model=ExchangeView, summary="One exchange's state")
def get_exchange(
    name: str, _: Principal = Depends(_read), rt: Runtime = Depends(runtime)
) -> ExchangeView:
    return rt.exchanges.get(name)


@router.post(
    "/exchanges/{name}/sync",
    response_model=SyncResult,
    summary="Pull the exchange's changes since its checkpoint now",
    description="One transaction per page with its checkpoint. A refused or "
    "unreachable exchange is a 409 `exchange_sync_failed` (or "
    "`exchange_credentials_refused`), recorded on the exchange.",
)
async def sync_exchange(
    name: str, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> SyncResult:
    return await run_in_threadpool(rt.exchanges.sync, name, actor=p.actor)


class QuarantineDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    restore: bool = Field(
        description="true: the entry blocks again (the flood was real material); false: "
        "it stays disabled (a false positive)."
    )


@router.get(
    "/quarantines",
    response_model=list[QuarantineView],
    tags=["banks"],
    summary="Bank entries quarantined after a flood of matches (pending by default)",
)
def list_quarantines(
    state: str | None = "pending",
    _: Principal = Depends(_read),
    rt: Runtime = Depends(runtime),
) -> list[QuarantineView]:
    return rt.quarantine.list(state or None)


@router.post(
    "/quarantines/{quarantine_id}/decision",
    response_model=QuarantineView,
    tags=["banks"],
    summary="A child-safety specialist restores a quarantined entry or leaves it disabled",
)
def decide_quarantine(
    quarantine_id: str,
    body: QuarantineDecisionIn,
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> QuarantineView:
    return rt.quarantine.decide(quarantine_id, restore=body.restore, principal=p)


@router.get(
    "/entries/{entry_id}/matches",
    response_model=EntryMatchHistory,
    tags=["banks"],
    summary="An entry's match history: uploads matched, the last one, flood decisions",
)
def entry_matches(
    entry_id: str, _: Principal = Depends(_read), rt: Runtime = Depends(runtime)
) -> EntryMatchHistory:
    return entry_history(rt.sessions, entry_id)


class OpinionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirmed: bool = Field(
        description="true: a reviewer confirmed a match of this entry (StopNCII Blocked, "
        "NCMEC upvote); false: no violation (NotBlocked, downvote)."
    )


@router.post(
    "/entries/{entry_id}/opinion",
    tags=["exchanges"],
    summary="Tell the exchanges an entry came from what a reviewer found",
    description="Queues one feedback per live upstream entry; `takedown worker` sends "
    "them through the exchanges' clients and retries failures. Audited.",
)
def give_opinion(
    entry_id: str,
    body: OpinionIn,
    p: Principal = Depends(require(Permission.CASES_DECIDE)),
    rt: Runtime = Depends(runtime),
) -> dict[str, int]:
    return {"queued": rt.exchanges.give_opinion(entry_id, confirmed=body.confirmed, actor=p.actor)}
