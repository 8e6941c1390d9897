"""How fast the `takedown` command starts: `--help`, every group's help and a light command.

    .venv/bin/python bench/cli_start.py [--runs 15]

Each command runs ``--runs`` times in a fresh interpreter (``python -m takedown.cli``);
the median and the slowest wall time are reported next to two baselines measured the
same way: the bare interpreter (``python -c pass``, the floor) and importing the
runtime as every command did before start-up was made lazy (what `takedown --help`
cost then). Goal (issue "Operators and newcomers"): `takedown --help` and light
commands in 0.3 s or less. Prints JSON and writes bench/results/cli_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from takedown.cli.main import GROUPS  # every command group: `takedown GROUP --help`

RESULTS = Path(__file__).parent / "results"
GOAL_S = 0.3

COMMANDS = {
    "takedown --help": ["-m", "takedown.cli", "--help"],
    **{f"takedown {group} --help": ["-m", "takedown.cli", group, "--help"] for group in GROUPS},
    "takedown legal run --help": ["-m", "takedown.cli", "legal", "run", "--help"],
    "takedown key new": ["-m", "takedown.cli", "key", "new"],
}
BASELINES = {
    "python -c pass (floor)": ["-c", "pass"],
    "import takedown.runtime (the old start-up)": ["-c", "import takedown.runtime"],
}


def timed(
    commands: dict[str, list[str]], runs: int, env: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Each command ``runs`` times, in rounds of one run of every command (a change of
    the machine's load during the benchmark then weighs on every command alike)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": round(statistics.median(t), 3), "max_s": round(max(t), 3)}
        for name, t in times.items()
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    load_before = load()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "XDG_DATA_HOME": home, "COLUMNS": "100"}
        for args in (*COMMANDS.values(), *BASELINES.values()):  # warm the file cache
            subprocess.run([sys.executable, *args], env=env, capture_output=True)
        commands = timed(COMMANDS, runs, env)
        baselines = timed(BASELINES, runs, env)
    result = {
        "benchmark": "cli_start",
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,  # 1, 5 and 15 minutes
        "load_average": load(),  # at the end
        "goal_s": GOAL_S,
        "commands": commands,
        "baselines": baselines,
        "all_within_goal": all(c["median_s"] <= GOAL_S for c in commands.values()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_start.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
