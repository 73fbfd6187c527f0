"""Packaging: pyproject.toml states compatible ranges, constraints.txt the exact versions the suite
was run with; `make test`/`make demo` create the venv from both, and `.ci/run` calls `make test`,
whose `data` step installs the Fashion-MNIST package when it can."""

import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# pinned, but installed only by .ci/run (the TPU compiler); checked when present
OPTIONAL = {"libtpu"}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.extras and req.marker is None, line
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} pinned twice"
        pins[name] = spec.version
    return pins


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    return [Requirement(d) for d in deps]


def test_pins_match_the_installed_environment():
    for name, version in _constraints().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name in OPTIONAL, f"{name}: pinned {version} in constraints.txt, not installed"
            continue
        assert installed == version, f"{name}: constraints.txt {version}, installed {installed}"


def test_every_range_contains_its_pin():
    pins = _constraints()
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req}: no pin in constraints.txt"
        assert req.specifier, f"{req}: no version range"
        assert req.specifier.contains(pins[name]), f"{req} excludes the tested {name}=={pins[name]}"


@pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None, reason="no git/make"
)
def test_fresh_clone_make_targets(tmp_path):
    """What `make test` / `make demo` plan in a fresh clone of the working tree as it would be
    committed (untracked files included, ignored ones such as .venv left out)."""
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if files.returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    for rel in filter(None, files.stdout.decode().split("\0")):
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    assert (clone / "constraints.txt").is_file()
    plans = {}
    for target, command in (("test", "pytest"), ("demo", "experiments.demo")):
        plan = plans[target] = subprocess.run(
            ["make", "-n", target], cwd=clone, capture_output=True, text=True, check=True
        ).stdout
        assert "-m venv .venv" in plan
        assert "pip install -q -c constraints.txt -e '.[test]'" in plan
        assert command in plan
    # the data step: installs the Fashion-MNIST package when it can (never fails the build)
    assert "apt-get install" in plans["test"] and "dataset-fashion-mnist" in plans["test"]
    ci = (clone / ".ci" / "run").read_text()
    assert "make test" in ci and "-c constraints.txt" in ci
    assert "make demo" in (clone / "README.md").read_text()
