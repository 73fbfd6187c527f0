"""Process settings that make XLA:CPU steps faster on Linux (measured in
`benchmarks/vapo_step_vs_torch.py`, see docs/results.md).

XLA allocates its temporary buffer afresh on every call of a compiled step (100 MiB for the VAPO
ResNet at batch 16). glibc's default serves such blocks with `mmap` and returns them on free,
so every step page-faults the buffer in again (~28k faults, 40 ms per step). `reuse_host_memory`
makes glibc keep and reuse them.
"""

import ctypes
import os

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def reuse_host_memory() -> bool:
    """glibc: one malloc arena, no `mmap` for large blocks, never trim the heap, the same as
    `GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`.

    Freed memory then stays with the process (its resident size does not shrink). Call it early,
    before JAX starts its threads. A no-op returning False without glibc or when the environment
    sets `JAXGEN_MALLOC=default`."""
    if os.environ.get("JAXGEN_MALLOC", "") == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    return all(mallopt(option, value) == 1 for option, value in settings)


def release_host_memory() -> None:
    """Hand the heap's free memory back to the system (glibc `malloc_trim`), e.g. after a large
    one-off host computation under `reuse_host_memory`, which otherwise keeps it. A no-op
    without glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def available_host_memory() -> int | None:
    """Bytes of host memory available to a new allocation (Linux `MemAvailable`), or None where
    the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
