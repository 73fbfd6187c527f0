"""`tools.tpu_compile.collectives` tells a collective that runs once per step from one
inside a while loop's body, which runs once per iteration: on a data-parallel gradient through
a rolled `lax.scan` the weight gradient's all-reduce sits in the backward loop; unrolled, it is
one all-reduce after it. Checked on XLA:CPU's SPMD programs over the 8 simulated devices."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tools.tpu_compile import collectives, loop_collective_sources


def _gradient_hlo(unroll) -> str:
    """HLO of ∇_w Σ tanh(...tanh(x w)...)² (5 steps) with x split over 8 devices."""
    mesh = jax.make_mesh((8,), ("data",))

    def loss(w, x):
        y, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=5, unroll=unroll)
        return jnp.sum(y**2)

    grad = jax.jit(
        jax.grad(loss),
        in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))),
        out_shardings=NamedSharding(mesh, P()),
    )
    return grad.lower(jnp.ones((16, 16)), jnp.ones((64, 16))).compile().as_text()


def test_an_all_reduce_in_the_backward_loop_is_counted_as_in_loop():
    if jax.device_count() < 8:
        pytest.skip("needs the 8 simulated devices of tests/conftest.py")
    rolled_hlo = _gradient_hlo(unroll=1)
    rolled = collectives(rolled_hlo)["all-reduce"]
    assert rolled["in_loop"] >= 1
    # and each is named by the traced operation it came from: the loop body's weight gradient
    sources = loop_collective_sources(rolled_hlo)
    assert len(sources) == rolled["in_loop"] and all(s.startswith("all-reduce") for s in sources)
    assert any("while/body" in s and "dot_general" in s for s in sources), sources
    unrolled = collectives(_gradient_hlo(unroll=True))["all-reduce"]
    assert unrolled["in_loop"] == 0 and unrolled["count"] >= 1
    assert unrolled["bytes"] >= 16 * 16 * 4  # the weight gradient, reduced once


def test_collectives_of_a_module_without_loops():
    hlo = (
        "ENTRY %main (p: f32[4]) -> f32[4] {\n"
        "  %p = f32[4]{0} parameter(0)\n"
        "  ROOT %all-reduce.1 = f32[4]{0} all-reduce(%p), to_apply=%add\n"
        "}\n"
    )
    assert collectives(hlo) == {"all-reduce": {"count": 1, "bytes": 16, "in_loop": 0}}


def test_a_rolled_langevin_chain_over_a_sharded_batch_has_no_collective_in_its_loop():
    """The chain's trace (mean energy and gradient norm per step) is averaged after the scan:
    a batch mean inside the loop would be an all-reduce at every chain step on a pod."""
    if jax.device_count() < 8:
        pytest.skip("needs the 8 simulated devices of tests/conftest.py")
    from jaxgen.samplers.langevin import langevin

    mesh = jax.make_mesh((8,), ("data",))

    def chain(w, x0, key):
        energy = lambda x: jnp.sum(jnp.tanh(x @ w) ** 2, axis=-1)  # noqa: E731  [B]
        x, trace = langevin(energy, x0, key, step=0.01, noise_std=0.1, num_steps=5, unroll=1)
        return x, trace

    data = NamedSharding(mesh, P("data"))
    fn = jax.jit(
        chain,
        in_shardings=(NamedSharding(mesh, P()), data, NamedSharding(mesh, P())),
        out_shardings=(data, NamedSharding(mesh, P())),
    )
    args = (jnp.ones((16, 16)), jnp.ones((64, 16)), jax.random.PRNGKey(0))
    found = collectives(fn.lower(*args).compile().as_text())
    assert all(c["in_loop"] == 0 for c in found.values()), found
    x, trace = fn(*args)
    assert trace["energy"].shape == (5,) and trace["grad_norm"].shape == (5,)
