"""The fresh-clone path: `make test`/`make demo` create the venv from the pinned pyproject, and
`.ci/run` installs the data package then calls `make test`."""

import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pins_match_the_installed_environment():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", dep).groups()
        assert metadata.version(name) == version, f"{name}: pinned {version}"


@pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None, reason="no git/make"
)
def test_fresh_clone_make_targets(tmp_path):
    if subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True
    ).returncode:
        pytest.skip("not a git checkout with commits")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    for target, command in (("test", "pytest"), ("demo", "experiments.demo")):
        plan = subprocess.run(
            ["make", "-n", target], cwd=clone, capture_output=True, text=True, check=True
        ).stdout
        assert "-m venv .venv" in plan and "pip install -q -e '.[test]'" in plan
        assert command in plan
    ci = (clone / ".ci" / "run").read_text()
    assert "make test" in ci and "dataset-fashion-mnist" in ci
    assert "make demo" in (clone / "README.md").read_text()
