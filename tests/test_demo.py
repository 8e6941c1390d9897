"""The README's first command must keep working: the demo bank, key and try-files."""

from __future__ import annotations

import io
import re

from rich.console import Console

from takedown.demo import BLOCK_BANK, REVIEW_BANK, prepare_demo
from takedown.runtime import Runtime


def test_demo_banks_and_try_files_give_the_promised_verdicts(rt: Runtime, client):
    text = io.StringIO()
    prepare_demo(rt, Console(file=text, width=400), "http://testserver")
    printed = text.getvalue()
    key = re.search(r"(tdk_[A-Za-z0-9_-]+)", printed).group(1)
    assert "stand-in" in printed
    banks = {b.name: b for b in rt.banks.list_banks()}
    assert banks[BLOCK_BANK].match_action == "block" and banks[BLOCK_BANK].entries == 9
    assert banks[REVIEW_BANK].match_action == "review"
    demo_dir = rt.settings.data_dir.resolve() / "demo"
    expected = {
        "chelsea-reupload.jpg": "block",
        "astronaut-rotated.png": "block",
        "camera-unknown.png": "allow",
    }
    for name, verdict in expected.items():
        r = client.post(
            "/v1/screen",
            files={"file": (name, (demo_dir / name).read_bytes())},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200 and r.json()["verdict"] == verdict, (name, r.text)
    prepare_demo(rt, Console(file=io.StringIO()), "http://testserver")  # idempotent banks
    assert rt.banks.get_bank(BLOCK_BANK).entries == 9
