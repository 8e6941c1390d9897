"""Schemathesis over the whole OpenAPI, in-process, on SQLite and PostgreSQL: no input,
valid or not, makes the API answer 5xx.

Every operation in /openapi.json is called with valid credentials (an admin's user
token: every permission, deciding cases and the evidence vault included) with requests
schemathesis generates from the schema, valid (``positive``) and invalid
(``negative``), derandomized and bounded (``MAX_EXAMPLES`` a mode and operation). An
operation whose path names a resource runs twice more, with the path naming one that
exists (a bank, an entry, an account, an item, a case, a user, evidence and its hold,
made first), so that its body and query get past the 404. Each answer is held to
``not_a_server_error`` alone: response-schema conformance and the like are other
questions. A failing example is not shrunk (that can take minutes); the report names
the operation, the exception and the request.

Nothing is excluded. The public HTML pages (/report, /status) are not in the OpenAPI;
tests/api/test_bad_input.py holds them to the same rule.

Why not ``schemathesis.pytest.from_fixture`` with ``@schema.parametrize()``: it sets a
private attribute of pytest's items that pytest 9 no longer has; the operations are run
here with the documented ``APIOperation.as_strategy`` and ``Case.call``, through
schemathesis's in-process ASGI client.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient

from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.runtime import Runtime
from tests.cases.helpers import PASSWORD, parent_report, platform_headers, user_headers

# Examples a pass, operation and set of path parameters. Measured on the 2-core machine:
# about 50 s a backend quiet, 200 s loaded (55 operations, 36 of them also with existing
# resources) -- the suite's longest test, so the operations are dealt out to ``SHARDS``
# tests a backend, which the suite's workers share.
MAX_EXAMPLES = 6
SHARDS = 4
MUTATED_EXAMPLES = 3
BASE_URL = "http://testserver"
LOGOUT = "/v1/auth/logout"
MD5 = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:  # conftest's, and more reports
    # Public reports are rate-limited per address; the fuzzer files many from one.
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        report_rate_limit_per_hour=1_000_000,
        allow_clock_override=True,  # the clock routes past their switch, into the service
    )


def _existing(client: TestClient, rt: Runtime, admin: dict[str, str]) -> dict[str, str]:
    """One of each resource a path names, by its path parameter."""
    rt.banks.create_bank("fuzz-bank", actor="fuzz")
    entry = rt.banks.add_hashes("fuzz-bank", [HashRecord("md5", MD5)], actor="fuzz").entries[0]
    p = platform_headers(rt)
    client.put("/v1/accounts/fuzz-account", json={"handle": "f"}, headers=p).raise_for_status()
    item = {"account_id": "fuzz-account", "url": "https://social.example/p/fuzz"}
    client.put("/v1/items/fuzz-item", json=item, headers=p).raise_for_status()
    case = client.post("/v1/reports", json=parent_report(["fuzz-item"])).json()["case_number"]
    user = rt.users.create("fuzz-other", PASSWORD, "moderator", actor="fuzz")
    evidence = client.post(
        "/v1/evidence", json={"case_id": case, "purpose": "fuzzing the API"}, headers=admin
    ).json()["id"]
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    hold = client.post(
        f"/v1/evidence/{evidence}/holds",
        json={"until": until, "reason": "fuzzing"},
        headers=admin,
    ).json()["id"]
    return {
        "bank": "fuzz-bank",
        "entry_id": entry.id,
        "account_id": "fuzz-account",
        "item_id": "fuzz-item",
        "case_id": case,
        "user_id": user.id,
        "evidence_id": evidence,
        "hold_id": hold,
    }


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_input_makes_the_api_fail(client: TestClient, rt: Runtime, shard: int) -> None:
    """Operations ``shard``, ``shard + SHARDS``, ... of the OpenAPI, in its order."""
    admin = user_headers(rt, "fuzz-admin", "admin")
    existing = _existing(client, rt, admin)
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    # Not entered as a context manager: the ``client`` fixture runs the app's lifespan.
    session = ASGIClient(client.app)
    failures: list[str] = []
    operations = 0
    for number, result in enumerate(schema.get_all_operations()):
        operation = result.ok()
        operations += 1
        if number % SHARDS != shard:
            continue
        names = [p.name for p in operation.path_parameters]
        runs: list[dict[str, str] | None] = [None]
        if names and all(name in existing for name in names):
            runs.append({name: existing[name] for name in names})
        for path_parameters in runs:
            for mode, mutation in PASSES:
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters
                )
                try:
                    _run(strategy, mutation, session, admin, rt)
                except Unsatisfiable:
                    continue  # no invalid request exists (an operation without parameters)
                except Exception as exc:  # noqa: BLE001 - every failure is collected, then shown
                    where = "existing resources" if path_parameters else "generated paths"
                    what = f"{mode.value}{', ' + mutation.__name__ if mutation else ''}"
                    failures.append(f"{operation.label} ({what}, {where}): {exc}")
    assert operations > 50, "the OpenAPI was not read"
    assert not failures, f"{len(failures)} runs found a 5xx:\n\n" + "\n\n".join(failures)


def _run(
    strategy, mutation: Mutation | None, session: ASGIClient, admin: dict[str, str], rt: Runtime
) -> None:
    @hypothesis_settings(
        max_examples=MUTATED_EXAMPLES if mutation else MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        if mutation is not None:
            case.path_parameters = _mutated(case.path_parameters, mutation)
            case.query = _mutated(case.query, mutation)
            if isinstance(case.body, dict | list):
                case.body = _mutated(case.body, mutation)
        headers = dict(admin)
        if case.operation.path == LOGOUT:
            # Signing out revokes the token it is sent with: a fresh one each time, so the
            # operations after it still run signed in.
            token = rt.users.sign_in("fuzz-admin", PASSWORD).token
            headers = {"Authorization": f"Bearer {token}"}
        try:
            response = case.call(session=session, base_url=BASE_URL, headers=headers)
        except Exception as exc:
            # In-process, the framework re-raises what it answered 500 to.
            raise AssertionError(f"500 ({exc!r}) for {_request(case)}") from exc
        case.validate_response(response, checks=[not_a_server_error])

    run()


def with_nul(value: object) -> object:
    return value + "\x00" if isinstance(value, str) else value


def beyond_64_bits(value: object) -> object:
    return 2**63 if isinstance(value, int) and not isinstance(value, bool) else value


Mutation = Callable[[object], object]


# What each operation is called with: data valid for the schema, data that is not, and
# valid data with a kind of value random generation seldom reaches: every string (path,
# query, form or JSON) with a NUL character in it, or every integer one past 64 bits.
# Either is refused (422); neither may reach the database.
PASSES: list[tuple[GenerationMode, Mutation | None]] = [
    (GenerationMode.POSITIVE, None),
    (GenerationMode.NEGATIVE, None),
    (GenerationMode.POSITIVE, with_nul),
    (GenerationMode.POSITIVE, beyond_64_bits),
]


def _mutated(value: Any, mutation: Mutation) -> Any:
    if isinstance(value, dict):
        return {k: _mutated(v, mutation) for k, v in value.items()}
    if isinstance(value, list):
        return [_mutated(v, mutation) for v in value]
    return mutation(value)


def _request(case: schemathesis.Case) -> str:
    body = "" if case.body is None or type(case.body).__name__ == "NotSet" else case.body
    return (
        f"{case.method} {case.formatted_path} query={case.query!r} "
        f"body={str(body)[:300]!r} ({case.media_type})"
    )
