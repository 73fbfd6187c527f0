"""Process settings: glibc keeps XLA's per-call buffers for reuse (opt-out by environment)."""

import sys

import pytest

from jaxgen.runtime import reuse_host_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_reuse_host_memory_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    assert reuse_host_memory() is True
    monkeypatch.setenv("JAXGEN_MALLOC", "default")
    assert reuse_host_memory() is False
