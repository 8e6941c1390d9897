"""Hashing on the reporter's device: the worker in a real browser gives the server's hashes.

Each stand-in vector (``tests/web/vectors/``, expectations in ``pdq_vectors.json``) is
picked through an ``<input type=file>`` on a harness page served from the real app's
origin, hashed by ``/assets/js/hash-worker.js`` in a module Web Worker, and compared
with what the server computes: MD5 equal, PDQ bit-identical except where a vector's
``browser_max_bits`` explains why not. The browser also has to refuse what the server
refuses, with the same words, and must not send the image anywhere.

The browser is Debian's Chromium at /usr/bin/chromium; Playwright never downloads one.
Without it the browser tests are skipped with the reason, unless
TAKEDOWN_REQUIRE_BROWSER=1 (as in CI), where they fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import takedown.web
from takedown.errors import InvalidMedia
from takedown.media import hash_image_bytes
from takedown.signals import pdq_distance
from takedown.web.public import SCRIPT_NAMES
from tests.web.vectors import VECTOR_DIR, load_vectors

HARNESS = Path(__file__).parent / "harness.html"
STATIC_JS = Path(takedown.web.__file__).parent / "static" / "js"
HARNESS_PATH = "/__test__/hash-harness"
# What a report page needs to run the worker, and nothing more.
HARNESS_CSP = (
    "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self'; "
    "img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# Installs window.nextHash(options): resolves with the outcome of hashing the next file
# chosen in #file, and the progress messages seen on the way.
SETUP = """async () => {
  const { hashInWorker } = await import("/assets/js/hash-worker.js");
  const input = document.getElementById("file");
  window.nextHash = (options) => new Promise((resolve) => {
    input.addEventListener("change", () => {
      const progress = [];
      const onProgress = (p) => {
        progress.push(p);
        document.getElementById("progress").textContent = `${p.stage} ${p.loaded}/${p.total}`;
      };
      hashInWorker(input.files[0], { ...options, onProgress }).then(
        (result) => resolve({ ok: true, result, progress }),
        (error) => resolve({ ok: false, code: error.code, message: error.message, progress }),
      );
    }, { once: true });
  });
}"""


class Harness:
    """The harness page, on the app's origin, recording every request the page makes."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str, bytes | None]] = []
        self.context.on(
            "request", lambda r: self.requests.append((r.method, r.url, r.post_data_buffer))
        )
        self.page.route(
            f"{base_url}{HARNESS_PATH}",
            lambda route: route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                headers={"Content-Security-Policy": HARNESS_CSP},
                body=HARNESS.read_text(),
            ),
        )
        self.page.goto(f"{base_url}{HARNESS_PATH}")
        self.page.evaluate(SETUP)

    def hash(self, file: Path | dict[str, Any], **options: Any) -> dict[str, Any]:
        self.page.set_input_files("#file", [])
        self.page.evaluate("options => { window.pending = window.nextHash(options); }", options)
        self.page.set_input_files("#file", file if isinstance(file, dict) else str(file))
        outcome: dict[str, Any] = self.page.evaluate("window.pending")
        return outcome

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def harness(browser: Any, live_url: str) -> Iterator[Harness]:
    h = Harness(browser, live_url)
    yield h
    h.close()


def _table(rows: list[tuple[Any, ...]]) -> str:
    header = ("vector", "decoder", "bits vs server", "bits vs reference", "approximate", "ms")
    lines = [" | ".join(header)]
    lines += [" | ".join(str(cell) for cell in row) for row in rows]
    return "\n".join(lines)


def test_worker_hashes_every_vector_like_the_server(harness: Harness, live_url: str) -> None:
    rows: list[tuple[Any, ...]] = []
    problems: list[str] = []
    for vector in load_vectors():
        path = VECTOR_DIR / vector["file"]
        started = time.monotonic()
        # Small chunks, so that even these files report reading progress several times.
        outcome = harness.hash(path, chunkSize=64 * 1024)
        elapsed = round((time.monotonic() - started) * 1000)
        assert outcome["ok"], f"{vector['file']}: {outcome}"
        result = outcome["result"]
        name = vector["file"]
        for key in ("md5", "width", "height", "format", "bytes"):
            if result[key] != vector[key]:
                problems.append(f"{name}: {key} {result[key]!r} != server {vector[key]!r}")
        to_server = pdq_distance(result["pdq"], vector["pdq"])
        to_reference = pdq_distance(result["pdq"], vector["reference_pdq"])
        rows.append(
            (name, result["decoder"], to_server, to_reference, result["approximate"], elapsed)
        )
        if to_server > vector["browser_max_bits"]:
            problems.append(f"{name}: {to_server} bits from the server's PDQ")
        if vector["browser_max_bits"] == 0 and result["dihedral"] != vector["dihedral"]:
            problems.append(f"{name}: dihedral variants differ from the server's")
        if to_server == 0 and result["quality"] != vector["quality"]:
            problems.append(f"{name}: quality {result['quality']} != {vector['quality']}")
        # Chromium has WebCodecs: partial transparency is read exactly, never approximated.
        if result["approximate"]:
            problems.append(f"{name}: approximate result")
        stages = [p["stage"] for p in outcome["progress"]]
        reading = [p for p in outcome["progress"] if p["stage"] == "reading"]
        if stages[-1] != "hashing" or reading[-1]["loaded"] != vector["bytes"]:
            problems.append(f"{name}: progress {outcome['progress'][-3:]}")
        if vector["bytes"] > 3 * 64 * 1024 and len(reading) < 3:
            problems.append(f"{name}: only {len(reading)} reading progress messages")

        decoders = {result["decoder"]}
        if vector["format"] == "PNG":
            # The same file through the browser's own decoder: the canvas for opaque images
            # (this exercises the row-by-row 512-sampling on exact data), WebCodecs for
            # transparent ones.
            via_browser = harness.hash(path, decoder="browser")["result"]
            decoders.add(via_browser["decoder"])
            bits = pdq_distance(via_browser["pdq"], vector["pdq"])
            rows.append((name, via_browser["decoder"], bits, "", via_browser["approximate"], ""))
            if via_browser["md5"] != vector["md5"]:
                problems.append(f"{name} via the browser's decoder: md5")
            if via_browser["approximate"] or bits:
                problems.append(f"{name} via the browser's decoder: {bits} bits from the server")
        if "webcodecs" in decoders:
            # Without WebCodecs (Safari), partial transparency goes through a canvas's
            # premultiplied alpha: the result must say it is approximate.
            via_canvas = harness.hash(path, decoder="canvas")["result"]
            bits = pdq_distance(via_canvas["pdq"], vector["pdq"])
            rows.append((name, "canvas only", bits, "", via_canvas["approximate"], ""))
            if not via_canvas["approximate"]:
                problems.append(f"{name} via a canvas only: not flagged approximate")

    print("\n" + _table(rows))
    assert not problems, "\n".join(problems) + "\n\n" + _table(rows)

    # Nothing but the page and its three scripts was requested, and nothing was sent.
    for method, url, body in harness.requests:
        assert method == "GET" and body is None, (method, url)
        path = url.removeprefix(live_url)
        assert path == HARNESS_PATH or path.removeprefix("/assets/js/") in SCRIPT_NAMES, url


def _server_refusal(data: bytes) -> str:
    with pytest.raises(InvalidMedia) as caught:
        hash_image_bytes(data)
    return caught.value.message


def test_worker_refuses_what_the_server_refuses(harness: Harness) -> None:
    png = (VECTOR_DIR / "chelsea.png").read_bytes()
    jpeg = (VECTOR_DIR / "rocket.jpg").read_bytes()
    cases: list[tuple[str, bytes, dict[str, Any], str, bool]] = [
        # name, bytes, options, expected code, same message as the server
        ("empty.png", b"", {}, "media_empty", True),
        (
            "notes.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
            {},
            "media_unsupported_type",
            True,
        ),
        (
            "page.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"/>',
            {},
            "media_unsupported_type",
            True,
        ),
        (
            "clip.mov",
            b"\x00\x00\x00\x18ftypqt  \x00\x00\x02\x00qt  ",
            {},
            "media_unsupported_type",
            True,
        ),
        ("cut.png", png[: len(png) // 2], {}, "media_corrupt", True),
        ("cut.jpg", jpeg[: len(jpeg) // 2], {}, "media_corrupt", True),
        ("big.png", png, {"limits": {"maxBytes": 10_000}}, "media_too_large", False),
        ("wide.png", png, {"limits": {"maxPixels": 10_000}}, "media_too_many_pixels", False),
    ]
    for name, data, options, code, same_message in cases:
        file = {"name": name, "mimeType": "application/octet-stream", "buffer": data}
        outcome = harness.hash(file, **options)
        assert not outcome["ok"], f"{name} was hashed: {outcome}"
        assert outcome["code"] == code, (name, outcome)
        if same_message:
            assert outcome["message"] == _server_refusal(data), name
        else:
            assert outcome["message"].startswith("The "), outcome["message"]


def test_scripts_are_served_as_modules_that_cannot_reach_the_network(client: TestClient) -> None:
    for name in SCRIPT_NAMES:
        response = client.get(f"/assets/js/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        # The worker's own policy: it may import its siblings and nothing else.
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert response.content == (STATIC_JS / name).read_bytes()
    for name in ("public.css", "nope.js", "pdq.mjs", "PDQ.JS", ".hash-worker.js"):
        response = client.get(f"/assets/js/{name}")
        assert response.status_code == 404, name
        assert response.headers["x-content-type-options"] == "nosniff"
    # A path outside the folder never reaches the route at all.
    for path in ("/assets/js/..%2Fpublic.py", "/assets/js/..%2F..%2Fpublic.py", "/assets/js/"):
        assert client.get(path).status_code == 404, path
