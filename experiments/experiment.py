"""One run's parsed configuration, built once per command, and what every CLI needs from it.

`Experiment(c)` turns the experiment ConfigDict into the recipe's typed `Config` once, reads the
recipe's declared capabilities (never the module's attributes), and keeps the jitted sampler and
extras it builds, so consecutive draws (sample figures, evaluation rounds, model selection)
reuse one compilation instead of re-tracing on every call.
"""

import contextlib
import inspect
import json
from functools import cached_property, partial
from pathlib import Path

import jax
import ml_collections
import numpy as np

from experiments.configs.common import RECIPE_SECTIONS, base_config, set_recipe_sections
from jaxgen.data import TOY2D_NAMES, PairedStream, example_shape, make_stream, sample_toy2d
from jaxgen.data.pipeline import ClassSubsetError, load_images, to_unit_range
from jaxgen.methods import get_recipe
from jaxgen.methods.common import ConfigError, config_from_dict, migrate_renamed_tree
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

BASE_CONFIG = "base_config.json"  # a base stage's config, copied into the run that builds on it
BASE_RUN = "base_run.json"  # which base run and checkpoint step the run started from
DATA_FIT = "data_fit.npz"  # the recipe's data fit (FDRL's prior), once per run


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


def load_saved_config(path) -> ml_collections.ConfigDict:
    """A run's saved `config.json` as a ConfigDict, fields renamed since it was written under
    their new names (`jaxgen.methods.common.RENAMED_FIELDS`)."""
    tree = json.loads(Path(path).read_text())
    return ml_collections.ConfigDict(migrate_renamed_tree(tree.get("recipe", ""), tree))


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
        is deterministic) and rewritten, with one line, when that file is gone."""
        path = Path(workdir) / DATA_FIT
        if path.exists():
            return load_fields(path)
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
        return FixedFieldCheckpoints(store, self.fixed_fields, lambda: self._load_fit(workdir, say))

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

    # ------------------------------------------------------------------ base stage

    @property
    def base_workdir(self) -> str:
        if self.caps.base_stage is None:
            return ""
        return self.rc.method.base_workdir

    @property
    def base_step(self) -> int:
        """`method.base_step`: the base run's checkpoint to start from (-1: the newest)."""
        if self.caps.base_stage is None:
            return -1
        return int(getattr(self.rc.method, "base_step", -1))

    def require_base_run(self) -> None:
        """Training a recipe with a base stage needs its base run: an empty
        `method.base_workdir` (or a `method.base_step` below -1) is one `ConfigError` naming
        the field. `train` calls this before any work."""
        stage = self.caps.base_stage
        if stage is None:
            return
        if not self.base_workdir:
            raise ConfigError(
                f"config.method.base_workdir is empty: {self.c.recipe} starts from a trained "
                f"{stage.allowed()} run; set --config.method.base_workdir=DIR"
            )
        if self.base_step < -1:
            raise ConfigError(
                f"config.method.base_step={self.base_step}: -1 (the newest checkpoint) or a "
                "checkpoint step >= 0"
            )

    def abstract_base(self, workdir: str | None = None):
        """The `ShapeDtypeStruct`s of the base state `init` takes as `base=` (None without a
        base stage): of the base run's config (`base_experiment`) or, without a base run, of
        the stage's `default_config` (`default_base_experiment`), so abstract init, the
        ahead-of-time compile and traced tests need no finished base run."""
        if self.caps.base_stage is None:
            return None
        base = self.base_experiment(workdir) or self.default_base_experiment()
        return base.abstract_state()

    def base_experiment(self, workdir: str | None = None):
        """The base run's `Experiment` from the copy of its config kept in this run's `workdir`
        if there is one, else from `method.base_workdir`; None without a base stage or without
        either. Checked against this run (one `ConfigError` naming both configs)."""
        if self.caps.base_stage is None:
            return None
        copy = Path(workdir) / BASE_CONFIG if workdir else None
        if copy is not None and copy.exists():
            path = copy
        elif self.base_workdir:
            path = Path(self.base_workdir) / "config.json"
        else:
            return None
        where = f"config.method.base_workdir={self.base_workdir!r}"
        if not path.exists():
            raise ConfigError(f"{where}: no {path} (not a finished jaxgen run?)")
        return self._checked_base(load_saved_config(path), str(path), where)

    def default_base_experiment(self):
        """The `Experiment` of the base stage's `default_config` (shapes only, never trained
        on): this run's seed, data and length with the default base recipe's sections."""
        stage = self.caps.base_stage
        try:
            name, base_rc = stage.default_base(self.rc)
        except ValueError as e:
            raise ConfigError(
                f"config.method.base_workdir is empty and {e}; set --config.method.base_workdir=DIR"
            ) from None
        c = self.c
        base_c = base_config(
            name, dataset=c.data.name, batch_size=c.data.batch_size, num_steps=c.train.num_steps
        )
        base_c.seed, base_c.data = c.seed, ml_collections.ConfigDict(c.data.to_dict())
        set_recipe_sections(base_c, base_rc)
        what = f"{c.recipe}'s BaseStage.default_config"
        return self._checked_base(base_c, what, f"the default base ({what})")

    def _checked_base(self, base_c, source: str, where: str):
        """`Experiment(base_c)` once it is a run of an allowed base recipe on this run's data
        set that the stage's `check` accepts; else one `ConfigError` starting with `where` and
        naming `source` (the base config's file)."""
        stage = self.caps.base_stage
        if base_c.recipe not in stage.recipes:
            raise ConfigError(
                f"{where}: {source} is a {base_c.recipe!r} run; {self.c.recipe} starts from a "
                f"{stage.allowed()} run"
            )
        if base_c.data.name != self.c.data.name:
            raise ConfigError(
                f"{where}: this run's data.name={self.c.data.name!r}, the base run's ({source}) "
                f"data.name={base_c.data.name!r}"
            )
        base = Experiment(base_c)
        reason = stage.check(self.rc, base.rc)
        if reason:
            raise ConfigError(f"{where}: {reason} (this run's config against {source})")
        return base

    def restore_base(self):
        """`(base Experiment, its state)` for `init(base=...)`: checkpoint `method.base_step`
        of the run in `method.base_workdir` (-1: the newest readable one), or `(None, None)` for
        a recipe without a base stage. An empty `method.base_workdir` is one `ConfigError`
        (`require_base_run`: training without the base would build on nothing)."""
        if self.caps.base_stage is None:
            return None, None
        self.require_base_run()
        base = self.base_experiment()
        return base, self._restore_base_state(base)

    def _restore_base_state(self, base):
        """The base run's state at `method.base_step`: the newest readable checkpoint (-1), or
        step N from its `checkpoints/`, else from its `best/` (model selection); a step in
        neither is one `ConfigError` naming the steps there are."""
        workdir, step = self.base_workdir, self.base_step
        if step < 0:
            return base.restore_latest(workdir)[0]
        paths, there = workdir_paths(workdir), []
        for directory in (paths["ckpt"], paths["root"] / "best"):
            if not directory.exists():
                continue
            store = base.checkpoints(directory, workdir)
            try:
                steps = store.all_steps()
                if step in steps:
                    return store.restore(base.abstract_state(workdir), step)[0]
            finally:
                store.close()
            there.append(f"{directory}: {', '.join(map(str, sorted(steps))) or 'none'}")
        raise ConfigError(
            f"config.method.base_step={step}: the base run has no checkpoint at step {step} "
            f"({'; '.join(there) or f'no checkpoints in {workdir}'})"
        )

    def save_base_config(self, base, workdir: str, *, step: int | None = None) -> None:
        """Keep the base run's config beside this run's, so its checkpoints restore without it;
        with `step`, record the base run and the checkpoint step used in `DIR/base_run.json`."""
        path = Path(workdir) / BASE_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(base.c.to_dict(), indent=1, default=str))
        if step is not None:
            record = {
                "recipe": base.c.recipe,
                "workdir": self.base_workdir,
                "base_step": self.base_step,
                "step": int(step),
            }
            (Path(workdir) / BASE_RUN).write_text(json.dumps(record, indent=1) + "\n")

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
