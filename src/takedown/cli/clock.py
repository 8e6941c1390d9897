"""``takedown clock …``: set a report's received time or a decision's time by hand, to
exercise the TAKE IT DOWN 48 hours and the six-month appeal window in a test or staging
deployment. Refused unless ``TAKEDOWN_ALLOW_CLOCK_OVERRIDE=1`` and no filing goes to a
production CyberTipline or DSA database; each change is an audit event (old and new).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from takedown.cli.common import CLI_ACTOR, fail, runtime
from takedown.errors import InvalidRequest, TakedownError

if TYPE_CHECKING:
    from takedown.runtime import Runtime
    from takedown.services.cases.service import ClockChange

clock_app = typer.Typer(
    rich_markup_mode=None,
)

_TIME = Annotated[str, typer.Argument(help="ISO time with a zone, e.g. 2026-05-01T09:00:00Z.")]


def _time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{value[:40]!r} is not an ISO time.", code="invalid_time") from None


@clock_app.command("set-received")
def set_received(report_id: str, time: _TIME) -> None:
    """Set a report's received time; the case's clocks derived from it move with it."""
    _run(lambda rt: rt.cases.set_received(report_id, _time(time), CLI_ACTOR))


@clock_app.command("set-decided")
def set_decided(decision_id: str, time: _TIME) -> None:
    """Set a decision's time; the appeal window and the removal it made move with it."""
    _run(lambda rt: rt.cases.set_decided(decision_id, _time(time), CLI_ACTOR))


def _run(change: Callable[[Runtime], ClockChange]) -> None:
    rt = runtime()
    try:
        sys.stdout.write(json.dumps(change(rt).__dict__) + "\n")
    except TakedownError as exc:
        raise fail(exc) from None
    finally:
        rt.close()
