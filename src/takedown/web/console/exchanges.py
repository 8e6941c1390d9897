"""The hash exchanges page: every exchange feeding a bank, its policy (threshold and
action, its own or its bank's), its last and next sync, the entries it added, disabled
and rejected, the live upstream signals, staleness, its last error; a "sync now" button.
An exchange's own page adds the negative banks and the flood quarantine in front of it
and the match history of its entries (``services/exchanges/history.py``).
Who: ``banks:read`` sees the pages, ``banks:write`` syncs and adds an exchange: the
same form as ``POST /v1/exchanges``, under the same confinement (credentials only from
the exchange credentials directory or TAKEDOWN_EXCHANGE_CREDENTIALS_… variables, base
URLs only the exchange's own or those the operator allowed); a mistake re-shows the
form with its sentence."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import Permission
from takedown.domain.exchanges import DEFAULT_INTERVAL_S, ExchangeType
from takedown.errors import Forbidden, InvalidRequest, TakedownError
from takedown.runtime import Runtime
from takedown.services.exchanges.history import exchange_detail
from takedown.services.exchanges.service import confine_api_request
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import SECURITY_HEADERS
from takedown.web.console.session import Visitor, base_context, poster, runtime, visitor

router = APIRouter(prefix="/console/exchanges", route_class=ConsoleRoute, include_in_schema=False)


_FIELDS = ("name", "type", "bank", "credentials_file", "credentials_env", "base_url",
           "privacy_group", "interval_seconds", "threshold", "action")  # fmt: skip


def _list_page(
    rt: Runtime, v: Visitor, *, notice: str = "", error: str = "", error_code: str = "",
    form: dict[str, str] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    banks = [b.name for b in rt.banks.list_banks()] if v.can(Permission.BANKS_WRITE) else []
    return page(
        "exchanges.html",
        status,
        **base_context(
            rt,
            v,
            exchanges=rt.exchanges.list(),
            notice=notice[:300],
            error=error,
            error_code=error_code,
            form=form or {"interval_seconds": str(DEFAULT_INTERVAL_S)},
            banks=banks,
            types=[k.value for k in ExchangeType],
            credentials_dir=str(rt.settings.exchange_credentials_directory),
        ),
    )


@router.get("", response_class=HTMLResponse)
def exchanges(request: Request, notice: str = "", v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.BANKS_READ):
        raise Forbidden("Only bank curators and admins see the exchanges.", code="forbidden")
    return _list_page(runtime(request), v, notice=notice)


def _number(form: dict[str, str], name: str, label: str) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(
            f"The {label} must be a whole number; got {text[:30]!r}.", code="invalid_number"
        ) from None


@router.post("", response_class=HTMLResponse)
def add_exchange(request: Request, v: Visitor = Depends(poster)) -> Response:
    """The console's ``POST /v1/exchanges``: the same checks, the same confinement."""
    if not v.can(Permission.BANKS_WRITE):
        raise Forbidden("Only bank curators and admins add exchanges.", code="forbidden")
    rt = runtime(request)
    form = {f: v.text(f, 1000).strip() for f in _FIELDS}
    try:
        interval = _number(form, "interval_seconds", "interval between syncs")
        credentials_env = form["credentials_env"] or None
        base_url = form["base_url"] or None
        credentials_file = confine_api_request(
            rt.settings,
            type=form["type"],
            credentials_file=form["credentials_file"] or None,
            credentials_env=credentials_env,
            base_url=base_url,
        )
        view = rt.exchanges.add(
            form["name"],
            type=form["type"],
            bank=form["bank"],
            actor=v.principal.actor,
            credentials_file=credentials_file,
            credentials_env=credentials_env,
            base_url=base_url,
            interval_seconds=DEFAULT_INTERVAL_S if interval is None else interval,
            threshold=_number(form, "threshold", "PDQ threshold"),
            action=form["action"] or None,
            privacy_group=_number(form, "privacy_group", "privacy group id"),
        )
    except TakedownError as exc:
        return _list_page(
            rt, v, error=exc.message, error_code=exc.code, form=form, status=exc.status
        )
    rt.matcher.invalidate()  # its threshold and action apply at once here
    notice = f"Exchange {view.name} added: it syncs at the worker's next round."
    return RedirectResponse(
        f"/console/exchanges?notice={quote(notice)}", 303, headers=SECURITY_HEADERS
    )


@router.get("/{name}", response_class=HTMLResponse)
def exchange_page(request: Request, name: str, v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.BANKS_READ):
        raise Forbidden("Only bank curators and admins see the exchanges.", code="forbidden")
    rt = runtime(request)
    detail = exchange_detail(rt.sessions, name, flood_uploads=rt.quarantine.uploads)
    return page("exchange.html", **base_context(rt, v, d=detail))


@router.post("/{name}/sync")
def sync(request: Request, name: str, v: Visitor = Depends(poster)) -> Response:
    if not v.can(Permission.BANKS_WRITE):
        raise Forbidden("Only bank curators and admins sync exchanges.", code="forbidden")
    try:
        r = runtime(request).exchanges.sync(name, actor=v.principal.actor)
        notice = (
            f"{r.exchange}: {r.pages} page(s), {r.added} added, {r.disabled} disabled, "
            f"{r.rejected} rejected."
        )
    except TakedownError as exc:
        notice = exc.message
    return RedirectResponse(
        f"/console/exchanges?notice={quote(notice)}", 303, headers=SECURITY_HEADERS
    )
