"""Ahead-of-time compilation for a TPU topology on this CPU-only machine
(`tools/tpu_compile.py`): the trainer's own sharded, guarded, donated step and the sampler
compile for a 4-chip v5e, so a change that breaks TPU compilation is caught before a pod is
booked. Needs the TPU compiler (`pip install libtpu==0.0.51`, which `.ci/run` installs); skips
with that reason otherwise."""

import pytest

pytest.importorskip(
    "libtpu", reason="the TPU compiler is not installed (pip install libtpu==0.0.51)"
)

from tools.tpu_compile import compile_for, load_config  # noqa: E402


@pytest.mark.parametrize("config", ["gan2d/toy2d", "vapo/toy2d", "fdrl/toy2d"])
def test_toy_configs_compile_for_a_v5e_2x2(config):
    overrides = ["model.hidden=(16, 16)"] if config != "gan2d/toy2d" else []
    if config == "fdrl/toy2d":
        overrides.append("method.flow_steps=3")
    c = load_config(f"experiments/configs/{config}.py", overrides)
    row = compile_for(c, "v5e:2x2", sample_batch=64)
    step = row["train_step"]
    assert row["chips"] == 4 and row["hosts"] == 1
    assert step["tflop_per_chip"] > 0 and step["temp_mib"] < 1024 * row["hbm_gib"]
    # data parallel: the gradients (and BatchNorm's batch statistics) are all-reduced
    assert step["collectives"]["all-reduce"]["bytes"] > 0
    assert row["sample"]["num"] == 64 and row["sample"]["tflop_per_chip"] > 0


def test_a_multi_host_topology_compiles_with_the_global_batch():
    c = load_config("experiments/configs/gan2d/toy2d.py", [])
    row = compile_for(c, "v5e:4x4", sample_batch=0)
    assert row["chips"] == 16 and row["hosts"] == 4
    assert row["train_step"]["collectives"]["all-reduce"]["count"] >= 1
