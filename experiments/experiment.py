"""One run's parsed configuration, built once per command, and what every CLI needs from it.

`Experiment(c)` turns the experiment ConfigDict into the recipe's typed `Config` once, reads the
recipe's declared capabilities (never the module's attributes), and keeps the jitted sampler and
extras it builds, so consecutive draws (sample figures, evaluation rounds, model selection)
reuse one compilation instead of re-tracing on every call.
"""

import contextlib
import inspect
from functools import cached_property, partial
from pathlib import Path

import jax
import numpy as np

from experiments.base_stage import BaseStageRun
from experiments.configs.common import RECIPE_SECTIONS
from experiments.run_files import (  # noqa: F401 (re-exported)
    BASE_CONFIG,
    BASE_RUN,
    DATA_FIT,
    load_saved_config,
    workdir_paths,
)
from jaxgen.data import TOY2D_NAMES, PairedStream, example_shape, make_stream, sample_toy2d
from jaxgen.data.pipeline import ClassSubsetError, load_images, to_unit_range
from jaxgen.methods import get_recipe
from jaxgen.methods.common import ConfigError, config_from_dict
from jaxgen.parallel import (
    is_primary,
    make_mesh,
    replicated,
    state_shardings,
    to_host,
)
from jaxgen.train.checkpoint import CheckpointError, Checkpoints
from jaxgen.train.fixed_fields import FixedFieldCheckpoints, host_value, load_fields, save_fields
from jaxgen.train.lock import WorkdirLock, WorkdirLockedError
from jaxgen.train.step import make_sharded_sampler


class SamplerError(RuntimeError):
    """The sampler could not finish (e.g. an adaptive ODE solve hit its step limit)."""


def recipe_config(c):
    """The recipe's frozen `Config` from the `model`, `method`, `optim` and `sample` sections.

    An `optim.<network>.total_steps` of 0 under a cosine decay becomes `train.num_steps`."""
    recipe = get_recipe(c.recipe)
    tree = {s: c[s].to_dict() for s in RECIPE_SECTIONS if s in c}
    for opt in tree.get("optim", {}).values():
        if isinstance(opt, dict) and opt.get("decay") == "cosine" and not opt.get("total_steps"):
            opt["total_steps"] = int(c.train.num_steps)
    return config_from_dict(recipe.Config, tree)


@contextlib.contextmanager
def _reader_lock(workdir: str):
    """Yields whether this reader (sample / evaluate) holds the workdir's lock: only then may it
    move an unreadable checkpoint aside (no trainer is using the directory)."""
    lock = WorkdirLock(workdir, say=lambda *_: None)
    if jax.process_count() > 1:  # the processes would disagree on who moves
        yield False
        return
    try:
        lock.acquire()
    except (WorkdirLockedError, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _named(field: str, classes, make, *args, **kwargs):
    """`make(*args, classes=classes, **kwargs)`; its error about a class subset re-raised as a
    `ConfigError` naming the config `field`."""
    try:
        return make(*args, classes=classes, **kwargs)
    except ClassSubsetError as e:
        raise ConfigError(f"config.{field}={tuple(classes)}: {e}") from None


class Experiment(BaseStageRun):
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
        """The batch stream of `split`; with `data.source`, the source domain's images beside
        each batch under "source" (`PairedStream`, the source drawn in its own order)."""
        d = self.c.data
        kw = dict(
            split=split,
            flip=d.flip and split == "train",
            pad_to_32=d.pad_to_32,
            data_dir=d.data_dir or None,
        )
        classes = d.get("classes", ())
        target = _named(
            "data.classes",
            classes,
            make_stream,
            *(d.name, d.batch_size, self.c.seed),
            train_limit=d.get("train_limit", 0),
            **kw,
        )
        if not d.get("source", ""):
            return target
        args = (d.source, d.batch_size, self.c.seed + 1)
        source = _named("data.source_classes", d.source_classes, make_stream, *args, **kw)
        return PairedStream(target, source)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one training example (known without reading the data)."""
        return example_shape(self.c.data.name, pad_to_32=self.c.data.pad_to_32)

    def example_batch(self, first=None) -> dict:
        """A batch of the global batch size for `init`: `first` (this host's first batch) tiled
        over the hosts, or zeros of the data's shape when None (shapes only)."""
        if first is None:
            return {"x": np.zeros((self.c.data.batch_size, *self.shape), np.float32)}
        return {k: np.concatenate([v] * jax.process_count()) for k, v in first.items()}

    def fit_data(self, stream):
        """The recipe's fit to the whole unaugmented training set (`None` when it has none):
        the images in [-1, 1] as chunks of 4096, or 100k draws of a generated 2-D set."""
        fit = self.caps.data_fit
        if fit is None or not fit.needed(self.rc):
            return None
        if stream.image_source is None:
            x = np.asarray(sample_toy2d(stream.name, 100_000, jax.random.PRNGKey(1)))
        else:  # in chunks: no float copy of the whole set
            images, top, n = stream.image_source.images, stream.image_source.max_value, 4096
            x = (to_unit_range(images[i : i + n], top) for i in range(0, len(images), n))
        return fit.fit(self.rc, x)

    @property
    def fixed_fields(self) -> tuple[str, ...]:
        """The State fields holding the data fit, kept once per run in `DIR/data_fit.npz`
        rather than in each checkpoint (empty when the recipe or config has none)."""
        fit = self.caps.data_fit
        return tuple(fit.fields) if fit is not None and fit.needed(self.rc) else ()

    def save_fit(self, workdir: str, fitted) -> None:
        """Write the data fit `fitted` (the value `init` took) to `DIR/data_fit.npz`."""
        if self.fixed_fields:
            leaves = [host_value(v) for v in jax.tree.leaves(fitted)]
            save_fields(Path(workdir) / DATA_FIT, dict(zip(self.fixed_fields, leaves, strict=True)))

    def _load_fit(self, workdir: str, say=print) -> dict:
        """The run's data fit from `DIR/data_fit.npz`; refitted on the training data (the fit
        is deterministic) and rewritten, with one line, when that file is gone. A fit holding
        NaN or Inf is one `CheckpointError` naming the file, the field and the fix."""
        path = Path(workdir) / DATA_FIT
        if path.exists():
            fields = load_fields(path)
            for name, value in fields.items():
                bad = np.size(value) - np.isfinite(value).sum() if value.dtype.kind in "fc" else 0
                if bad:
                    raise CheckpointError(
                        f"{path}: the data fit's field {name!r} has {bad} non-finite value(s); "
                        "delete the file: the next command refits it bit-identically on the "
                        "training data"
                    )
            return fields
        say(f"{path} is missing: refitting {', '.join(self.fixed_fields)} on the training data")
        fitted = self.fit_data(self.stream())
        if is_primary():
            self.save_fit(workdir, fitted)
        return dict(zip(self.fixed_fields, jax.tree.leaves(fitted), strict=True))

    def checkpoints(self, directory, workdir: str, *, say=print, **kwargs):
        """The `Checkpoints` store in `directory` for the run in `workdir`; with fixed fields,
        wrapped so that its checkpoints hold stubs for them (`jaxgen.train.fixed_fields`)."""
        store = Checkpoints(directory, **kwargs)
        if not self.fixed_fields:
            return store
        source = f"{Path(workdir) / DATA_FIT} (delete it: the trainer refits it on the data)"
        load = lambda: self._load_fit(workdir, say)  # noqa: E731
        return FixedFieldCheckpoints(store, self.fixed_fields, load, source)

    # ------------------------------------------------------------------ state

    def init(self, example, *, fitted=None, base=None):
        kw = {} if fitted is None else {"fitted": fitted}
        kw.update({} if base is None else {"base": base})
        return self.recipe.init(self.rc, example, key=jax.random.PRNGKey(self.c.seed), **kw)

    def abstract_state(self, workdir: str | None = None):
        """The state's `ShapeDtypeStruct`s from `jax.eval_shape(init)`: no parameters, fits,
        buffers or base runs are materialised (a base stage's shapes: `abstract_base`)."""
        fit = self.caps.data_fit
        needs_fit = fit is not None and fit.needed(self.rc)
        fitted = fit.shapes(self.rc, self.shape) if needs_fit else None
        base = self.abstract_base(workdir)
        example = self.example_batch()
        return jax.eval_shape(lambda f, b: self.init(example, fitted=f, base=b), fitted, base)

    def mesh(self):
        return make_mesh(self.c.train.num_devices or None)

    def state_sharding(self, mesh, abstract=None):
        """Parameters replicated; the recipe's batch-shaped state fields split over `data`."""
        abstract = self.abstract_state() if abstract is None else abstract
        return state_shardings(abstract, mesh, self.caps.batch_state)

    def restore_latest(self, workdir: str, step: int | None = None):
        """The newest readable checkpoint's `(state, meta)` (an unreadable newer one is moved
        aside with a warning), or exactly checkpoint `step`; `CheckpointError` when there is
        none, or no checkpoint `step` (naming the steps there are)."""
        ckpt = workdir_paths(workdir)["ckpt"]
        if not ckpt.exists():
            raise CheckpointError(f"no checkpoints in {ckpt}; train first")
        store = self.checkpoints(ckpt, workdir)
        try:
            steps = store.all_steps()
            if not steps:
                raise CheckpointError(f"no checkpoints in {ckpt}; train first")
            if step is not None:
                if step not in steps:
                    raise CheckpointError(
                        f"no checkpoint at step {step} in {ckpt}; there are steps "
                        f"{', '.join(map(str, sorted(steps)))}"
                    )
                return store.restore(self.abstract_state(workdir), step)
            with _reader_lock(workdir) as holds_lock:  # move nothing under a live trainer
                return store.restore_newest(self.abstract_state(workdir), move_aside=holds_lock)
        finally:
            store.close()

    # ------------------------------------------------------------------ jitted functions

    def jitted(self, name: str, **kwargs):
        """`jax.jit(partial(recipe.<name>, config=rc, **kwargs))`, built once per run. A count
        argument (the recipe function's second parameter named `num`: `sample`, `interpolate`)
        sets array shapes, so it is static."""
        key = (name, tuple(sorted(kwargs.items())))
        if key not in self._jitted:
            recipe_fn = getattr(self.recipe, name)
            fn = partial(recipe_fn, config=self.rc, **kwargs)
            params = list(inspect.signature(recipe_fn).parameters)
            static = (1,) if params[1:2] == ["num"] else ()
            self._jitted[key] = jax.jit(fn, static_argnums=static)
        return self._jitted[key]

    def _sample_layout(self, chunk: int):
        """The mesh to split a chunk of samples over all devices, or None (one device, or a
        chunk the devices do not divide)."""
        n_dev = jax.device_count()
        if n_dev == 1 or chunk % n_dev:
            return None
        return self.sample_mesh

    def sharded_sampler(self, use_ema: bool):
        """The recipe's `sample` traced under `sample_mesh` (`make_sharded_sampler`): its draws
        (`batch_normal`) and the chains that follow run on each device's share of the chunk.
        Built once per run."""
        key = ("sharded_sample", use_ema)
        if key not in self._jitted:
            fn = partial(self.recipe.sample, config=self.rc, shape=self.shape, use_ema=use_ema)
            self._jitted[key] = make_sharded_sampler(fn, self.sample_mesh)
        return self._jitted[key]

    @cached_property
    def sample_mesh(self):
        """A `data` mesh over every device, for sharded sampling (built once per run)."""
        return make_mesh()

    @property
    def translating(self) -> bool:
        """Whether this run's prior is its `data.source` images (unpaired translation): its
        samples are translations of the source domain's test images."""
        return bool(self.c.data.get("source", "")) and "translate" in self.caps.extras

    def source_images(self, num: int, *, seed: int) -> np.ndarray:
        """`num` test images `[num, ...]` of the source domain (`data.source`, only
        `data.source_classes`), in an order drawn from `seed` (cycled if the split is smaller)."""
        d = self.c.data
        src = load_images(
            d.source,
            "test",
            pad_to_32=d.pad_to_32,
            data_dir=d.data_dir or None,
            classes=d.source_classes,
        )
        order = np.random.default_rng([seed, 7]).permutation(len(src))
        idx = order[np.arange(num) % len(src)]
        return to_unit_range(src.images[idx], src.max_value)

    def check_examples(self, x, who: str) -> np.ndarray:
        """`x` as float32 `[N, *shape]` of this run's examples, or one `ConfigError` naming
        `who` (e.g. the file it came from)."""
        x = np.asarray(x, np.float32)
        if x.ndim < 2 or tuple(x.shape[1:]) != tuple(self.shape):
            raise ConfigError(
                f"{who}: its images are {tuple(x.shape)}, this run's examples are "
                f"[N, {', '.join(map(str, self.shape))}]"
            )
        return x

    def translate(self, state, x0, *, seed: int, use_ema: bool = True):
        """The images `x0` `[N, ...]` (this run's example shape, `check_examples`) translated
        by the recipe's `translate` extra, in chunks of `eval.batch_size` (one compiled
        program): float32 numpy `[N, ...]` and the sampler's statistics, as `draw`."""
        x0 = self.check_examples(x0, "the images to translate")
        chunk = min(len(x0), self.c.eval.batch_size)
        fn = self.jitted("translate", use_ema=use_ema)
        outs, stats = [], []
        for i, start in enumerate(range(0, len(x0), chunk)):
            part = x0[start : start + chunk]
            padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), 0)])
            x, st = fn(state, padded, key=jax.random.fold_in(jax.random.PRNGKey(seed), i))
            n = len(part)
            outs.append(to_host(x)[:n])
            stats.append({k: to_host(v)[:n] for k, v in st.items()})
        return np.concatenate(outs).astype(np.float32), self._summary(stats)

    def draw(self, state, num: int, *, seed: int, use_ema: bool = True):
        """`num` samples as float32 numpy `[num, ...]` and the sampler's statistics (`<stat>_mean`,
        `<stat>_max` for each declared stat), in chunks of `eval.batch_size`. A translating run
        (`translating`) draws translations of `num` source test images."""
        if self.translating:
            x0 = self.source_images(num, seed=seed)
            return self.translate(state, x0, seed=seed, use_ema=use_ema)
        chunk = min(num, self.c.eval.batch_size)
        mesh = self._sample_layout(chunk)
        if mesh is None:
            fn = self.jitted("sample", shape=self.shape, use_ema=use_ema)
        else:
            fn = self.sharded_sampler(use_ema)
            state = jax.device_put(state, replicated(mesh))
        outs, stats = [], []
        for i, start in enumerate(range(0, num, chunk)):
            x, st = fn(state, chunk, key=jax.random.fold_in(jax.random.PRNGKey(seed), i))
            outs.append(to_host(x)[: num - start])  # gathered from every process
            stats.append(to_host(st))
        ok = self.caps.solver_ok
        failed = sum(int(np.size(s[ok]) - np.sum(s[ok])) for s in stats) if ok else 0
        if failed:
            raise SamplerError(
                f"the sampler stopped early on {failed} sample(s) ({ok}=False): raise the "
                "solver's max_steps or loosen its tolerances (rtol / atol in config.sample or "
                "config.method)"
            )
        return np.concatenate(outs).astype(np.float32), self._summary(stats)

    def _summary(self, stats: list) -> dict:
        """`<stat>_mean`, `<stat>_max` over the chunks' statistics of each declared stat."""
        summary = {}
        for k in self.caps.sampler_stats:
            v = np.concatenate([np.ravel(s[k]) for s in stats]).astype(np.float64)
            summary[f"{k}_mean"], summary[f"{k}_max"] = float(v.mean()), float(v.max())
        return summary
