"""The base stage of a recipe that starts from another trained run (VAEBM from a VAE): which
base run, which of its checkpoints, its config checked against this run's, and its shapes
without a finished base run. A mixin of `experiments.experiment.Experiment`: `self` is the
run's `Experiment` (`c`, `rc`, `caps`)."""

import json
from pathlib import Path

import ml_collections

from experiments.configs.common import base_config, set_recipe_sections
from experiments.run_files import BASE_CONFIG, BASE_RUN, load_saved_config, workdir_paths
from jaxgen.methods.common import ConfigError


class BaseStageRun:
    """What an `Experiment` knows about its base stage (all None / -1 without one)."""

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
        base = type(self)(base_c)
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
