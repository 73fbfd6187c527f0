"""One run's parsed configuration, built once per command, and what every CLI needs from it.

`Experiment(c)` turns the experiment ConfigDict into the recipe's typed `Config` once, reads the
recipe's declared capabilities (never the module's attributes), and keeps the jitted sampler and
extras it builds, so consecutive draws (sample figures, evaluation rounds, model selection)
reuse one compilation instead of re-tracing on every call.
"""

from functools import cached_property, partial
from pathlib import Path

import jax
import numpy as np

from jaxgen.data import TOY2D_NAMES, make_stream, sample_toy2d
from jaxgen.data.pipeline import to_unit_range
from jaxgen.methods import get_recipe
from jaxgen.methods.contract import config_from_dict
from jaxgen.parallel import batch_sharding, make_mesh, replicated, state_shardings
from jaxgen.train.checkpoint import CheckpointError, Checkpoints

RECIPE_SECTIONS = ("model", "method", "optim", "sample")


class SamplerError(RuntimeError):
    """The sampler could not finish (e.g. an adaptive ODE solve hit its step limit)."""


def workdir_paths(workdir: str) -> dict[str, Path]:
    root = Path(workdir)
    return {
        "root": root,
        "ckpt": root / "checkpoints",
        "samples": root / "samples",
        "eval": root / "eval",
    }


def recipe_config(c):
    """The recipe's frozen `Config` from the `model`, `method`, `optim` and `sample` sections.

    An `optim.<network>.total_steps` of 0 under a cosine decay becomes `train.num_steps`."""
    recipe = get_recipe(c.recipe)
    tree = {s: c[s].to_dict() for s in RECIPE_SECTIONS if s in c}
    for opt in tree.get("optim", {}).values():
        if isinstance(opt, dict) and opt.get("decay") == "cosine" and not opt.get("total_steps"):
            opt["total_steps"] = int(c.train.num_steps)
    return config_from_dict(recipe.Config, tree)


class Experiment:
    """The ConfigDict `c` of one run with its recipe, typed Config `rc` and capabilities `caps`."""

    def __init__(self, c):
        self.c = c
        self.recipe = get_recipe(c.recipe)
        self.caps = self.recipe.CAPABILITIES
        self.rc = recipe_config(c)
        self._jitted: dict = {}

    # ------------------------------------------------------------------ data

    @property
    def toy2d(self) -> bool:
        return self.c.data.name in TOY2D_NAMES

    def stream(self, split: str = "train"):
        d = self.c.data
        return make_stream(
            d.name,
            d.batch_size,
            self.c.seed,
            split=split,
            flip=d.flip and split == "train",
            pad_to_32=d.pad_to_32,
            data_dir=d.data_dir or None,
        )

    @cached_property
    def shape(self) -> tuple[int, ...]:
        """The shape of one training example (reads the data set once)."""
        return tuple(self.stream().batch(0)["x"].shape[1:])

    def example_batch(self, first=None) -> dict:
        """A batch of the global batch size for `init`: `first` (this host's first batch) tiled
        over the hosts, or zeros of the data's shape when None (shapes only)."""
        if first is None:
            return {"x": np.zeros((self.c.data.batch_size, *self.shape), np.float32)}
        return {k: np.concatenate([v] * jax.process_count()) for k, v in first.items()}

    def fit_data(self, stream):
        """The recipe's fit to the whole unaugmented training set (`None` when it has none):
        the images in [-1, 1], or 100k draws of a generated 2-D set."""
        fit = self.caps.data_fit
        if fit is None or not fit.needed(self.rc):
            return None
        if stream.source is None:
            x = np.asarray(sample_toy2d(stream.name, 100_000, jax.random.PRNGKey(1)))
        else:
            x = to_unit_range(stream.source.images, stream.source.max_value)
        return fit.fit(self.rc, x)

    # ------------------------------------------------------------------ state

    def init(self, example, *, fitted=None):
        kw = {} if fitted is None else {"fitted": fitted}
        return self.recipe.init(self.rc, example, key=jax.random.PRNGKey(self.c.seed), **kw)

    def abstract_state(self):
        """The state's `ShapeDtypeStruct`s from `jax.eval_shape(init)`: no parameters, fits or
        buffers are materialised."""
        fit = self.caps.data_fit
        example = self.example_batch()
        if fit is None or not fit.needed(self.rc):
            return jax.eval_shape(lambda: self.init(example))
        shapes = fit.shapes(self.rc, self.shape)
        return jax.eval_shape(lambda f: self.init(example, fitted=f), shapes)

    def mesh(self):
        return make_mesh(self.c.train.num_devices or None)

    def state_sharding(self, mesh, abstract=None):
        """Parameters replicated; the recipe's batch-shaped state fields split over `data`."""
        abstract = self.abstract_state() if abstract is None else abstract
        return state_shardings(abstract, mesh, self.caps.batch_state)

    def restore_latest(self, workdir: str):
        """The newest checkpoint's `(state, meta)`; `CheckpointError` when there is none."""
        ckpt = workdir_paths(workdir)["ckpt"]
        if not ckpt.exists():
            raise CheckpointError(f"no checkpoints in {ckpt}; train first")
        store = Checkpoints(ckpt)
        try:
            if store.latest_step() is None:
                raise CheckpointError(f"no checkpoints in {ckpt}; train first")
            return store.restore(self.abstract_state())
        finally:
            store.close()

    # ------------------------------------------------------------------ jitted functions

    def jitted(self, name: str, **kwargs):
        """`jax.jit(partial(recipe.<name>, config=rc, **kwargs))`, built once per run."""
        key = (name, tuple(sorted(kwargs.items())))
        if key not in self._jitted:
            fn = partial(getattr(self.recipe, name), config=self.rc, **kwargs)
            static = (1,) if name in ("sample", "interpolate") else ()
            self._jitted[key] = jax.jit(fn, static_argnums=static)
        return self._jitted[key]

    def _sample_layout(self, chunk: int):
        """`(mesh, sharding)` to split a chunk of samples over all devices, or `(None, None)`."""
        n_dev = jax.device_count()
        if not self.caps.sample_sharding or n_dev == 1 or chunk % n_dev:
            return None, None
        if "sample_mesh" not in self._jitted:
            self._jitted["sample_mesh"] = make_mesh()
        mesh = self._jitted["sample_mesh"]
        return mesh, batch_sharding(mesh)

    def draw(self, state, num: int, *, seed: int, use_ema: bool = True):
        """`num` samples as float32 numpy `[num, ...]` and the sampler's statistics (`<stat>_mean`,
        `<stat>_max` for each declared stat), in chunks of `eval.batch_size`."""
        chunk = min(num, self.c.eval.batch_size)
        mesh, sharding = self._sample_layout(chunk)
        kw = dict(shape=self.shape, use_ema=use_ema)
        if sharding is not None:
            kw["sharding"] = sharding
            state = jax.device_put(state, replicated(mesh))
        fn = self.jitted("sample", **kw)
        outs, stats = [], []
        for i, start in enumerate(range(0, num, chunk)):
            x, st = fn(state, chunk, key=jax.random.fold_in(jax.random.PRNGKey(seed), i))
            outs.append(np.asarray(x)[: num - start])
            stats.append(jax.device_get(st))
        ok = self.caps.solver_ok
        failed = sum(int(np.size(s[ok]) - np.sum(s[ok])) for s in stats) if ok else 0
        if failed:
            raise SamplerError(
                f"the sampler stopped early on {failed} sample(s) ({ok}=False): raise "
                "config.sample.max_steps or loosen the tolerances (sample.rtol / sample.atol)"
            )
        summary = {}
        for k in self.caps.sampler_stats:
            v = np.concatenate([np.ravel(s[k]) for s in stats]).astype(np.float64)
            summary[f"{k}_mean"], summary[f"{k}_max"] = float(v.mean()), float(v.max())
        return np.concatenate(outs).astype(np.float32), summary
