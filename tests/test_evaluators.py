"""The evaluator registry (`experiments.evaluators`): one entry per metric, read by
`experiments.evaluate` for availability, data checks and dispatch."""

import dataclasses

import numpy as np
import pytest

from experiments import evaluators
from experiments.evaluate import available_metrics
from jaxgen import methods
from jaxgen.methods.common import EXTRAS


def test_every_entry_is_well_formed():
    for name, e in evaluators.EVALUATORS.items():
        assert e.name == name and e.data in ("toy2d", "image") and e.doc
        assert e.needs is None or e.needs in EXTRAS, name
        assert set(e.splits) <= {"train", "test"}, name
        assert e.run is not None or name == "fd"  # fd runs on the sampling rounds


@pytest.mark.parametrize("name", sorted(methods.RECIPES))
def test_available_metrics_follow_the_recipes_extras(name):
    caps = methods.RECIPES[name].CAPABILITIES
    for data in ("toy2d", "image"):
        got = evaluators.available(data, caps)
        for m in got:
            e = evaluators.EVALUATORS[m]
            assert e.data == data and (e.needs is None or caps.has(e.needs))
    assert ("energy_histogram" in evaluators.available("image", caps)) == caps.has("energy")
    assert ("log_likelihood" in evaluators.available("toy2d", caps)) == caps.has("log_density")


def test_a_new_metric_is_one_entry(monkeypatch, tmp_path):
    """Registering an `Evaluator` is all it takes for `evaluate` to offer and run a metric."""

    def spread(exp, state, x, out, seed):
        return {"sd": float(np.std(x)), "seed": seed}

    entry = evaluators.Evaluator("spread", "toy2d", spread, seed_offset=5, doc="sample sd")
    monkeypatch.setattr(evaluators, "_ALL", (*evaluators._ALL, entry))
    monkeypatch.setitem(evaluators.EVALUATORS, "spread", entry)
    exp = type("Exp", (), {"toy2d": True, "caps": methods.RECIPES["vapo"].CAPABILITIES})()
    assert "spread" in available_metrics(exp)
    x = np.arange(8.0).reshape(4, 2)
    got = evaluators.run(["spread"], exp, None, x, tmp_path, seed=1)
    assert got == {"spread": {"sd": float(np.std(x)), "seed": 6}}
    merged = dataclasses.replace(entry, key=None)
    monkeypatch.setitem(evaluators.EVALUATORS, "spread", merged)
    assert evaluators.run(["spread"], exp, None, x, tmp_path, seed=1) == {
        "sd": np.std(x),
        "seed": 6,
    }
