"""The newcomer's first minute: a demo bank built from benign stand-in photos.

The photos ship inside the scikit-image wheel (an astronaut portrait, a cat, a cup of
coffee, a rocket). They stand in for known material; there is no abuse material
anywhere in this project, its tests or its demos.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from takedown.errors import NotFound
from takedown.runtime import Runtime
from takedown.services.banks.service import Provenance

BLOCK_BANK = "demo-standins-block"
REVIEW_BANK = "demo-standins-review"
_BLOCKED = ("astronaut.png", "chelsea.png", "coffee.png")
_REVIEWED = ("rocket.jpg",)


def standin_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def prepare_demo(rt: Runtime, console: Console, base_url: str) -> None:
    src = standin_dir()
    _ensure_bank(rt, BLOCK_BANK, "block", _BLOCKED, src)
    _ensure_bank(rt, REVIEW_BANK, "review", _REVIEWED, src)
    try_dir = rt.settings.data_dir.resolve() / "demo"
    try_dir.mkdir(parents=True, exist_ok=True)
    files = _write_try_files(src, try_dir)
    _, key = rt.api_keys.create("demo", ["admin"], actor="demo")
    console.print(_instructions(base_url, key, files), soft_wrap=True)


def _ensure_bank(rt: Runtime, name: str, action: str, photos: tuple[str, ...], src: Path) -> None:
    try:
        rt.banks.get_bank(name)
        return
    except NotFound:
        pass
    rt.banks.create_bank(
        name,
        actor="demo",
        source="own",
        match_action=action,
        description="DEMO: benign stand-in photos from the scikit-image wheel, banked as if "
        "they were confirmed material. Not abuse material.",
    )
    for photo in photos:
        rt.banks.add_media(
            name,
            (src / photo).read_bytes(),
            Provenance(
                source_id=f"standin:{photo}",
                category="demo-standin",
                note="benign stand-in image for the demo",
            ),
            actor="demo",
        )


def _write_try_files(src: Path, dest: Path) -> dict[str, Path]:
    """Copies a platform might see: a re-encoded resize, a rotation, an unknown photo."""
    chelsea = Image.open(src / "chelsea.png").convert("RGB")
    reupload = chelsea.resize((chelsea.width * 3 // 4, chelsea.height * 3 // 4))
    buf = io.BytesIO()
    reupload.save(buf, "JPEG", quality=70)
    files = {
        "reupload": dest / "chelsea-reupload.jpg",
        "rotated": dest / "astronaut-rotated.png",
        "unknown": dest / "camera-unknown.png",
    }
    files["reupload"].write_bytes(buf.getvalue())
    astronaut = np.asarray(Image.open(src / "astronaut.png").convert("RGB"))
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut))).save(files["rotated"])
    Image.open(src / "camera.png").save(files["unknown"])
    return files


def _instructions(base: str, key: str, files: dict[str, Path]) -> str:
    """Plain lines, never wrapped or boxed, so every command can be copied whole."""
    auth = '-H "Authorization: Bearer $TAKEDOWN_KEY"'
    return "\n".join(
        [
            "",
            "[bold]Takedown demo[/bold] — the photos are benign stand-ins from scikit-image, "
            "not abuse material.",
            "",
            "An API key with all scopes (shown once; set it in your shell):",
            f"  export TAKEDOWN_KEY={key}",
            f"API reference: {base}/docs",
            "",
            "A re-encoded, resized copy of a banked stand-in → block:",
            f"  curl -s {auth} -F file=@{files['reupload']} {base}/v1/screen",
            "A rotated copy → block (all 8 rotations/flips are checked):",
            f"  curl -s {auth} -F file=@{files['rotated']} {base}/v1/screen",
            "A photo in no bank → allow:",
            f"  curl -s {auth} -F file=@{files['unknown']} {base}/v1/screen",
            "The banks:",
            f"  curl -s {auth} {base}/v1/banks",
            "Hash a file locally, in another shell:",
            f"  .venv/bin/takedown hash {files['reupload']}",
            "",
        ]
    )
