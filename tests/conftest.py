"""Test set-up: 8 simulated CPU devices, so sharded code paths run here.

XLA_FLAGS must be set before jax is imported. Multi-device loops must block on every step's
result (XLA:CPU aborts the process when collective programs pile up un-awaited).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# with libtpu installed (the TPU compile tests), let several processes load it at once: the CLI
# subprocesses of the smoke tests start while this one holds it
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# JAX's persistent compilation cache, shared by this process and the CLI subprocesses the smoke
# tests start (they inherit the environment): a program compiled once is read back after that.
# Every program, the ~40 ms eager ones too: reading one back takes ~1 ms, and each CLI process
# compiles ~100 of them (a warm `train` subprocess: 13.0 s at a 0.3 s floor, 9.6 s at 0)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = _REPO


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"
