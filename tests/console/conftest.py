from __future__ import annotations

import pytest

from takedown.console_demo import DemoCases, seed_console_demo
from takedown.runtime import Runtime


@pytest.fixture
def demo(rt: Runtime) -> DemoCases:
    """Users of every role and three cases made of benign stand-in photos."""
    return seed_console_demo(rt, users=())
