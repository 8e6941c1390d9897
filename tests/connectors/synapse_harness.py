"""A real Synapse with the Takedown module and a real Takedown server, for the Matrix
connector's tests and bench (bench/matrix.py): Synapse on SQLite with a config written
here, Takedown by `takedown serve`, users by shared-secret registration."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from takedown.config import Settings
from takedown.runtime import open_runtime
from tests.cases.helpers import PASSWORD
from tests.conftest import start_server

SHARED_SECRET = "registration secret for the test homeserver"
WEBHOOK_SECRET = "webhook secret shared by takedown and synapse"
SERVER_NAME = "matrix.test"
USER_PASSWORD = "a password for the matrix users"
# Requests to the servers: a loaded machine (CI) can take longer to answer than httpx's
# default of 5 s (an upload is screened by Takedown before Synapse answers).
http = httpx.Client(timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait(check: Callable[[], bool], what: str, timeout: float = 240.0) -> None:
    """Until ``check`` holds; generous, as starting Synapse on a loaded machine can take
    a minute or more (it returns as soon as the check holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Homeserver:
    url: str
    takedown: str
    admin_token: str
    platform_key: str
    bank_admin: dict[str, str]
    specialists: list[dict[str, str]]
    log: Path

    def register(self, username: str, admin: bool = False) -> str:
        """A user by shared-secret registration; answers the user's id."""
        nonce = http.get(f"{self.url}/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    username.encode(),
                    USER_PASSWORD.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        r = http.post(
            f"{self.url}/_synapse/admin/v1/register",
            json={
                "nonce": nonce,
                "username": username,
                "password": USER_PASSWORD,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["user_id"])


def synapse_config(
    tmp: Path, port: int, takedown_url: str, platform_key: str, *, module: bool = True
) -> Path:
    config = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(tmp / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(tmp / "homeserver.db")}},
        "media_store_path": str(tmp / "media"),
        "signing_key_path": str(tmp / "signing.key"),
        "report_stats": False,
        "registration_shared_secret": SHARED_SECRET,
        "macaroon_secret_key": "macaroon secret of the test homeserver",
        "form_secret": "form secret of the test homeserver",
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "url_preview_enabled": False,
        "bcrypt_rounds": 4,  # fast logins in tests (the default, 12, costs ~0.3 s each)
        "rc_message": {"per_second": 1000, "burst_count": 1000},
        "rc_login": {
            "address": {"per_second": 1000, "burst_count": 1000},
            "account": {"per_second": 1000, "burst_count": 1000},
            "failed_attempts": {"per_second": 1000, "burst_count": 1000},
        },
        "rc_registration": {"per_second": 1000, "burst_count": 1000},
        "modules": [
            {
                "module": "takedown.connectors.synapse.TakedownModule",
                "config": {
                    "takedown_url": takedown_url,
                    "api_key": platform_key,
                    "webhook_secret": WEBHOOK_SECRET,
                    "admin_user": f"@takedown:{SERVER_NAME}",
                    # Written once the admin is registered (after the server starts).
                    "admin_access_token_file": str(tmp / "admin_token"),
                    "homeserver_url": f"http://127.0.0.1:{port}",
                    "report_poll_seconds": 0.5,
                    "operator_email": "abuse@matrix.test",
                },
            }
        ],
    }
    if not module:
        del config["modules"]
    path = tmp / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@contextmanager
def running(
    tmp: Path, database: Path, *, module: bool = True, takedown_env: dict[str, str] | None = None
) -> Iterator[Homeserver]:
    """Takedown (on the migrated SQLite ``database``) and Synapse, both stopped after."""
    data = tmp / "data"
    rt = open_runtime(Settings(database_url=f"sqlite:///{database}", data_dir=data), migrate=False)
    try:
        _, platform_key = rt.api_keys.create("matrix-connector", ["platform"], actor="test")
        _, bank_key = rt.api_keys.create("bank-admin", ["admin"], actor="test")
        for name in ("spec-a", "spec-b", "spec-c"):
            rt.users.create(name, PASSWORD, "child_safety_specialist", actor="test")
    finally:
        rt.close()
    synapse_port = free_port()
    takedown, port = start_server(
        {
            "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
            "TAKEDOWN_DATA_DIR": str(data),
            "TAKEDOWN_ACCESS_LOG": "false",
            "TAKEDOWN_WEBHOOK_URL": f"http://127.0.0.1:{synapse_port}/_takedown/webhook",
            "TAKEDOWN_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TAKEDOWN_DELIVERY_POLL_SECONDS": "0.2",
            **(takedown_env or {}),
        },
        workers=1,
    )
    base = f"http://127.0.0.1:{port}"
    config = synapse_config(tmp, synapse_port, base, platform_key, module=module)
    log = tmp / "synapse.log"
    from signedjson.key import generate_signing_key, write_signing_keys

    with (tmp / "signing.key").open("w") as key_file:  # what --generate-keys writes
        write_signing_keys(key_file, [generate_signing_key("a_test")])
    with log.open("w") as out:
        synapse = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{synapse_port}"
    try:
        wait(lambda: http.get(base + "/v1/health").status_code == 200, "takedown")

        def synapse_up() -> bool:
            if synapse.poll() is not None:
                raise AssertionError("Synapse stopped:\n" + log.read_text()[-3000:])
            return http.get(url + "/health").status_code == 200

        wait(synapse_up, "synapse")
        specialists = []
        for name in ("spec-a", "spec-b", "spec-c"):
            r = http.post(base + "/v1/auth/token", json={"username": name, "password": PASSWORD})
            specialists.append({"Authorization": f"Bearer {r.json()['token']}"})
        server = Homeserver(
            url, base, "", platform_key, {"Authorization": f"Bearer {bank_key}"}, specialists, log
        )
        server.register("takedown", admin=True)
        r = http.post(
            url + "/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "takedown"},
                "password": USER_PASSWORD,
            },
        )
        server.admin_token = r.json()["access_token"]
        (tmp / "admin_token").write_text(server.admin_token)
        yield server
    finally:
        for process in (synapse, takedown):
            process.send_signal(signal.SIGTERM)
        for process in (synapse, takedown):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
