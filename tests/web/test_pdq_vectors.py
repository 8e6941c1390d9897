"""The browser-hashing vectors stay true to the server, and the JavaScript agrees bit for bit.

Two kinds of checks:

* ``pdq_vectors.json`` against the server: every committed stand-in file still gets the
  recorded MD5, PDQ, quality and size from :func:`takedown.media.hash_image_bytes`, so the
  expectations the browser test uses cannot go stale.
* The JavaScript modules in Node, away from any browser decoder: ``pdq.js`` fed the exact
  RGB pixels the server hashes (and synthetic edge cases) must give identical hashes,
  qualities and dihedral variants; the worker's PNG decoder must give the server's pixels
  for every colour type, bit depth, filter and interlacing; ``md5.js`` must equal hashlib;
  sniffing must refuse with the server's words. A difference in the browser can then only
  come from the browser's own image decoders.

Node (>= 18) is needed for the second kind; without it those tests are skipped, unless
TAKEDOWN_REQUIRE_BROWSER=1 (as in CI), where they fail. All images are benign stand-ins.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from PIL import Image

import takedown.web
from takedown.errors import MediaUnsupportedType
from takedown.media import hash_image_bytes
from takedown.media.decode import decode_reference, sample_indices, sniff_format
from takedown.media.pdq import pdq_from_pixels
from tests.web.vectors import (
    MAX_TOTAL_BYTES,
    VECTOR_DIR,
    corpus,
    encode_png,
    expected,
    load_vectors,
)

STATIC_JS = Path(takedown.web.__file__).parent / "static" / "js"
REQUIRE_NODE = os.environ.get("TAKEDOWN_REQUIRE_BROWSER") == "1"
VECTORS = load_vectors()


# -- the JSON against the server ------------------------------------------------------------
def test_vector_files_are_exactly_the_recorded_ones() -> None:
    on_disk = {path.name for path in VECTOR_DIR.iterdir()}
    assert on_disk == {v["file"] for v in VECTORS}, "run: python -m tests.web.vectors"
    assert [v["file"] for v in VECTORS] == [spec.name for spec in corpus()]
    assert sum(path.stat().st_size for path in VECTOR_DIR.iterdir()) < MAX_TOTAL_BYTES


@pytest.mark.parametrize("spec", corpus(), ids=lambda spec: spec.name)
def test_recorded_hashes_are_still_the_servers(spec: Any) -> None:
    recorded = next(v for v in VECTORS if v["file"] == spec.name)
    data = (VECTOR_DIR / spec.name).read_bytes()
    assert expected(spec, data) == recorded, (
        f"{spec.name}: the server no longer computes what pdq_vectors.json records; "
        "if that is intended, run: python -m tests.web.vectors"
    )


# -- the JavaScript in Node -----------------------------------------------------------------
@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        message = "node is not installed; the JavaScript unit checks need Node >= 18"
        if REQUIRE_NODE:
            pytest.fail(message + " (TAKEDOWN_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    if int(version.stdout.strip().lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"node {version.stdout.strip()} lacks DecompressionStream; need >= 18")
    return path


def run_node(node: str, tmp_path: Path, script: str, payload: Any) -> Any:
    """Run an ES-module ``script`` with ``payload`` (JSON) and return what it prints (JSON).

    The script sees ``payload`` and ``js(name)`` (the URL of a module in static/js).
    """
    payload_path = tmp_path / "payload.json"
    payload_path.write_text(json.dumps(payload))
    prelude = (
        'import fs from "node:fs";\n'
        f"const payload = JSON.parse(fs.readFileSync({json.dumps(str(payload_path))}));\n"
        f"const js = (name) => {json.dumps(STATIC_JS.as_uri())} + '/' + name;\n"
    )
    completed = subprocess.run(
        [node, "--input-type=module", "-e", prelude + script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _rgba(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape[:2]
    alpha = np.full((height, width, 1), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([pixels, alpha], axis=2)).tobytes()


def _synthetic() -> dict[str, np.ndarray]:
    """Edge cases for sizes, flat images (median ties) and sampling of odd shapes."""
    rng = np.random.default_rng(20240613)
    smooth = np.cumsum(rng.integers(0, 9, (700, 700, 3)), axis=1) % 256
    cases = {
        "too-small-4x4": rng.integers(0, 256, (4, 4, 3)),
        "smallest-5x5": rng.integers(0, 256, (5, 5, 3)),
        "5x9": rng.integers(0, 256, (5, 9, 3)),
        "64x64": smooth[:64, :64],
        "63x100": smooth[:63, :100],
        "flat-grey": np.full((300, 200, 3), 128),
        "noise-512": rng.integers(0, 256, (512, 512, 3)),
        "row-1x700": smooth[:1, :700],
        "column-700x1": smooth[:700, :1],
        "2x513": smooth[:2, :513],
        "wide-300x2400": np.repeat(smooth[:300, :600], 4, axis=1),
        "square-700": smooth,
    }
    return {name: np.ascontiguousarray(array.astype(np.uint8)) for name, array in cases.items()}


def _server_sampled(pixels: np.ndarray) -> np.ndarray:
    """What decode.py hands PDQ for full-size pixels: native, or the 512 x 512 samples."""
    height, width = pixels.shape[:2]
    if width <= 512 and height <= 512:
        return pixels
    return pixels[np.ix_(sample_indices(height, height), sample_indices(width, width))]


PDQ_SCRIPT = """
const { pdqDihedralFromRGBA } = await import(js("pdq.js"));
const out = {};
for (const c of payload) {
  const rgba = new Uint8Array(fs.readFileSync(c.file));
  out[c.name] = pdqDihedralFromRGBA(rgba, c.width, c.height);
}
console.log(JSON.stringify(out));
"""


def test_pdq_js_is_bit_identical_on_the_servers_pixels(node: str, tmp_path: Path) -> None:
    inputs: dict[str, np.ndarray] = {}
    expected_pixels: dict[str, np.ndarray] = {}
    for vector in VECTORS:
        pixels = decode_reference((VECTOR_DIR / vector["file"]).read_bytes())
        inputs[vector["file"]] = expected_pixels[vector["file"]] = pixels
    for name, pixels in _synthetic().items():
        inputs[name] = pixels  # full size: pdq.js must sample exactly like decode.py
        expected_pixels[name] = _server_sampled(pixels)
    payload = []
    for index, (name, pixels) in enumerate(inputs.items()):
        path = tmp_path / f"{index}.rgba"
        path.write_bytes(_rgba(pixels))
        height, width = pixels.shape[:2]
        payload.append({"name": name, "file": str(path), "width": width, "height": height})
    got = run_node(node, tmp_path, PDQ_SCRIPT, payload)
    for name, pixels in expected_pixels.items():
        want = pdq_from_pixels(np.ascontiguousarray(pixels))
        assert got[name]["hash"] == want.hash, name
        assert got[name]["quality"] == want.quality, name
        assert got[name]["dihedral"] == want.variants(), name
    assert got["too-small-4x4"] == {
        "hash": "0" * 64,
        "quality": 0,
        "dihedral": {name: "0" * 64 for name in want.variants()},
    }


def _png_flavours() -> dict[str, bytes]:
    """Every PNG colour type and bit depth, plain and Adam7, small and sampled sizes."""
    rng = np.random.default_rng(7)
    depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
    flavours: dict[str, bytes] = {}
    for height, width in ((37, 53), (3, 9), (520, 610)):
        for colour_type, allowed in depths.items():
            for depth in allowed:
                samples = rng.integers(0, 1 << depth, (height, width, channels[colour_type]))
                if colour_type in (4, 6):  # some fully transparent pixels, colour stored
                    samples[..., -1] = np.where(rng.random((height, width)) < 0.3, 0, 1)
                palette = transparency = None
                if colour_type == 3:  # fewer entries than indexes: the rest are black
                    entries = max(1, min(1 << depth, 200) - 2)
                    palette = rng.integers(0, 256, 3 * entries, dtype=np.uint8).tobytes()
                    transparency = bytes([0, 128])
                for interlace in (False, True):
                    if height > 512 and interlace and depth < 8:
                        continue  # enough big ones
                    layout = "adam7" if interlace else "plain"
                    name = f"ct{colour_type}-{depth}bit-{width}x{height}-{layout}"
                    flavours[name] = encode_png(
                        samples,
                        colour_type,
                        depth,
                        interlace=interlace,
                        palette=palette,
                        transparency=transparency,
                    )
    for vector in VECTORS:
        if vector["format"] == "PNG":
            flavours[vector["file"]] = (VECTOR_DIR / vector["file"]).read_bytes()
    return flavours


PNG_SCRIPT = """
const { decodePng, hashBlob } = await import(js("hash-worker.js"));
const out = {};
for (const c of payload) {
  const bytes = new Uint8Array(fs.readFileSync(c.file));
  const decoded = await decodePng(bytes);
  const rgb = Buffer.alloc(decoded.sampledWidth * decoded.sampledHeight * 3);
  for (let p = 0, q = 0; q < rgb.length; p += 4, q += 3) {
    rgb[q] = decoded.rgba[p]; rgb[q + 1] = decoded.rgba[p + 1]; rgb[q + 2] = decoded.rgba[p + 2];
  }
  fs.writeFileSync(c.file + ".rgb", rgb);
  const hashed = await hashBlob(new Blob([bytes]));
  out[c.name] = { width: decoded.sampledWidth, height: decoded.sampledHeight,
                  md5: hashed.md5, pdq: hashed.pdq, quality: hashed.quality,
                  decoder: hashed.decoder };
}
console.log(JSON.stringify(out));
"""


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_png_decoder_gives_the_servers_pixels(node: str, tmp_path: Path) -> None:
    flavours = _png_flavours()
    payload = []
    for index, (name, data) in enumerate(flavours.items()):
        path = tmp_path / f"{index}.png"
        path.write_bytes(data)
        payload.append({"name": name, "file": str(path)})
    got = run_node(node, tmp_path, PNG_SCRIPT, payload)
    for entry in payload:
        name, data = entry["name"], flavours[entry["name"]]
        want = decode_reference(data)
        result = got[name]
        assert (result["height"], result["width"]) == want.shape[:2], name
        rgb = np.frombuffer(Path(entry["file"] + ".rgb").read_bytes(), np.uint8)
        assert np.array_equal(rgb.reshape(want.shape), want), f"{name}: pixels differ"
        server = hash_image_bytes(data)
        assert (result["md5"], result["pdq"], result["quality"]) == (
            server.md5,
            server.pdq.hash,
            server.pdq.quality,
        ), name
        assert result["decoder"] == "javascript"


PNG_DAMAGE_SCRIPT = """
const { decodePng, HashError } = await import(js("hash-worker.js"));
const out = {};
for (const c of payload) {
  try {
    const d = await decodePng(new Uint8Array(fs.readFileSync(c.file)));
    out[c.name] = { ok: true, width: d.width };
  } catch (e) {
    out[c.name] = { ok: false, code: e.code, retry: Boolean(e.retryWithBrowser),
                    known: e instanceof HashError };
  }
}
console.log(JSON.stringify(out));
"""


def test_png_decoder_refuses_damage_like_the_server(node: str, tmp_path: Path) -> None:
    good = (VECTOR_DIR / "chelsea.png").read_bytes()
    iend = good.rindex(b"IEND") - 4
    head = good[:iend]
    # Bytes after the end of the zlib stream, inside a complete file: Pillow accepts it.
    junk_idat = b"\x00\x00\x00\x04IDATjunk\x00\x00\x00\x00"
    cases = {
        "truncated": good[: len(good) // 2],
        "bad-header-crc": good[:29] + bytes([good[29] ^ 0xFF]) + good[30:],
        "junk-after-stream": head + junk_idat + good[iend:],
        "too-big": good[:16] + (70000).to_bytes(4, "big") + good[20:],
    }
    payload = []
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        payload.append({"name": name, "file": str(tmp_path / name)})
    got = run_node(node, tmp_path, PNG_DAMAGE_SCRIPT, payload)
    assert got["truncated"] == {"ok": False, "code": "media_corrupt", "retry": False, "known": True}
    assert got["bad-header-crc"]["code"] == "media_corrupt"
    # Every row is in before the junk: decoded like Pillow does (the worker would otherwise
    # hand such a complete file to the browser's decoder, see retryWithBrowser).
    assert got["junk-after-stream"] == {"ok": True, "width": 451}
    assert got["too-big"]["code"] == "media_corrupt"  # header CRC no longer matches
    with Image.open(io.BytesIO(cases["junk-after-stream"])) as img:
        img.load()  # ...and Pillow does take it


MD5_SCRIPT = """
const { Md5, md5Hex } = await import(js("md5.js"));
const out = {};
for (const c of payload) {
  const bytes = new Uint8Array(fs.readFileSync(c.file));
  const chunked = new Md5();
  for (let o = 0; o < bytes.length; o += c.chunk) chunked.update(bytes.subarray(o, o + c.chunk));
  out[c.name] = [md5Hex(bytes), chunked.hex(), md5Hex(bytes.buffer.slice(bytes.byteOffset,
    bytes.byteOffset + bytes.length))];
}
console.log(JSON.stringify(out));
"""


def test_md5_js_equals_hashlib(node: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    blobs = {f"random-{n}": rng.bytes(n) for n in (0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000)}
    blobs.update({v["file"]: (VECTOR_DIR / v["file"]).read_bytes() for v in VECTORS[:4]})
    payload = []
    for index, (name, data) in enumerate(blobs.items()):
        (tmp_path / str(index)).write_bytes(data)
        payload.append({"name": name, "file": str(tmp_path / str(index)), "chunk": 1 + index * 7})
    got = run_node(node, tmp_path, MD5_SCRIPT, payload)
    for name, data in blobs.items():
        assert got[name] == [hashlib.md5(data).hexdigest()] * 3, name


SNIFF_SCRIPT = """
const { sniffFormat, declaredSize } = await import(js("hash-worker.js"));
const out = {};
for (const c of payload) {
  const bytes = new Uint8Array(fs.readFileSync(c.file));
  try {
    const format = sniffFormat(bytes);
    out[c.name] = { format: format.name, size: declaredSize(bytes, format.name) };
  } catch (e) {
    out[c.name] = { code: e.code, message: e.message };
  }
}
console.log(JSON.stringify(out));
"""


def test_sniffing_and_declared_sizes_match_the_server(node: str, tmp_path: Path) -> None:
    samples = {
        "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        "zip": b"PK\x03\x04\x14\x00\x06\x00",
        "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">',
        "text-with-accents": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e et plus".encode(),
        "tiff": b"II*\x00\x08\x00\x00\x00",
        "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
        "wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
        "binary": bytes(range(200, 232)),
        "bmp-text": b"BMW is a car brand, not a bitmap",
    }
    samples.update({v["file"]: (VECTOR_DIR / v["file"]).read_bytes() for v in VECTORS})
    payload = []
    for index, (name, data) in enumerate(samples.items()):
        (tmp_path / str(index)).write_bytes(data)
        payload.append({"name": name, "file": str(tmp_path / str(index))})
    got = run_node(node, tmp_path, SNIFF_SCRIPT, payload)
    for name, data in samples.items():
        try:
            fmt = sniff_format(data)
        except MediaUnsupportedType as exc:
            assert got[name] == {"code": "media_unsupported_type", "message": exc.message}, name
            continue
        assert got[name]["format"] == fmt.name, name
    for vector in VECTORS:
        size = {"width": vector["width"], "height": vector["height"]}
        assert got[vector["file"]]["size"] == size, vector["file"]


ORIENTATION_SCRIPT = """
const { withoutOrientation } = await import(js("hash-worker.js"));
for (const c of payload) {
  const bytes = new Uint8Array(fs.readFileSync(c.file));
  fs.writeFileSync(c.file + ".out", withoutOrientation(bytes, c.format));
}
console.log("{}");
"""


def _exif(orientation: int, big_endian: bool) -> bytes:
    order: Literal["big", "little"] = "big" if big_endian else "little"
    tiff = (b"MM\x00*" if big_endian else b"II*\x00") + (8).to_bytes(4, order)
    entry = (
        (0x0112).to_bytes(2, order)
        + (3).to_bytes(2, order)
        + (1).to_bytes(4, order)
        + orientation.to_bytes(2, order)
        + b"\x00\x00"
    )
    return b"Exif\x00\x00" + tiff + (1).to_bytes(2, order) + entry + bytes(4)


def test_exif_orientation_is_neutralised_in_a_copy(node: str, tmp_path: Path) -> None:
    cat = np.asarray(Image.open(VECTOR_DIR / "chelsea.png").convert("RGB"))
    cases: dict[str, tuple[str, bytes]] = {}
    for big_endian in (False, True):
        for fmt in ("JPEG", "WEBP"):
            buffer = io.BytesIO()
            Image.fromarray(cat).save(buffer, fmt, quality=90, exif=_exif(6, big_endian))
            cases[f"{fmt}-{'MM' if big_endian else 'II'}"] = (fmt, buffer.getvalue())
    plain = io.BytesIO()
    Image.fromarray(cat).save(plain, "JPEG", quality=90)
    cases["JPEG-no-exif"] = ("JPEG", plain.getvalue())
    payload = []
    for name, (fmt, data) in cases.items():
        (tmp_path / name).write_bytes(data)
        payload.append({"name": name, "file": str(tmp_path / name), "format": fmt})
    run_node(node, tmp_path, ORIENTATION_SCRIPT, payload)
    for name, (_, data) in cases.items():
        patched = (tmp_path / f"{name}.out").read_bytes()
        changed = sum(a != b for a, b in zip(data, patched, strict=True))
        with Image.open(io.BytesIO(patched)) as img:
            orientation = img.getexif().get(0x0112)
        if name == "JPEG-no-exif":
            assert patched == data
            continue
        assert changed == 1, name  # one byte of the tag's value, nothing else
        assert orientation == 1, name
        assert np.array_equal(decode_reference(patched), decode_reference(data)), name
