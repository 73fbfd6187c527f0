"""Recording results in `docs/bench/<name>.json` with the machine they came from; shared by the
tools and the benchmarks (`benchmarks.common` re-exports these names)."""

import json
import platform
import subprocess
from datetime import date
from pathlib import Path

import jax

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "bench"


def machine() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": date.today().isoformat(),
        "jax": jax.__version__,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "cpu": platform.processor() or platform.machine(),
        "commit": commit,
    }


def record(name: str, payload: dict) -> Path:
    """Write `docs/bench/<name>.json` (machine info + payload) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return path
