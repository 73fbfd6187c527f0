"""The base stage of a recipe that starts from another trained run (VAEBM from a VAE): which
base run, which of its checkpoints, its config checked against this run's, and its shapes
without a finished base run. A mixin of `experiments.experiment.Experiment`: `self` is the
run's `Experiment` (`c`, `rc`, `caps`)."""

import hashlib
from pathlib import Path

import ml_collections

from experiments.configs.common import base_config, set_recipe_sections
from experiments.run_files import (
    BASE_CONFIG,
    BASE_RUN,
    load_saved_config,
    save_json,
    workdir_paths,
)
from jaxgen.methods.common import ConfigError
from jaxgen.parallel import agreed
from jaxgen.train.checkpoint import CheckpointError
from jaxgen.train.lock import lock_holder


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
        try:
            base_c = load_saved_config(path)
        except (ValueError, OSError) as e:  # cut short, emptied, not JSON
            raise ConfigError(f"{where}: {_damaged_config(path, e)}") from None
        return self._checked_base(base_c, str(path), where)

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
        of the run in `method.base_workdir` (-1: the newest readable one, which must be
        finished and idle: `_check_base_finished`), or `(None, None)` for a recipe without a
        base stage. An empty `method.base_workdir` is one `ConfigError` (`require_base_run`:
        training without the base would build on nothing)."""
        base = self.check_base_ready()
        if base is None:
            return None, None
        state = self._restore_base_state(base)
        if self.base_step < 0:  # an unreadable newest checkpoint was skipped
            self._check_base_finished(base, int(state.step))
        return base, state

    def check_base_ready(self):
        """The base run's `Experiment` once its config reads and (`method.base_step` -1) it is
        finished and idle, else one `ConfigError`; None for a recipe without a base stage.
        Cheap (no state is read): `restore_base` calls it first, so a new stage stops before
        it writes anything."""
        if self.caps.base_stage is None:
            return None
        self.require_base_run()
        base = self.base_experiment()
        if self.base_step < 0:  # the newest: the base must be finished and idle
            agreed(lambda: self._check_base_finished(base), "checking the base run")
        return base

    def _check_base_finished(self, base, step: int | None = None) -> None:
        """One `ConfigError` when the base run is still training (a live process holds its
        workdir lock; probed only without `step`) or its newest checkpoint (`step`: the one
        restored) is below its own `train.num_steps`: either would build the stage on a base
        that is still changing. `method.base_step=N` names a checkpoint instead."""
        workdir = self.base_workdir
        holder = lock_holder(workdir) if step is None else None
        if holder is not None:
            who = f"pid {holder['pid']}" if holder.get("pid") else "another process"
            who += f" on {holder['host']}" if holder.get("host") not in (None, "?") else ""
            raise ConfigError(
                f"the base run in {workdir} is still training ({who}); wait for it or name a "
                "step with --config.method.base_step=N"
            )
        num_steps = base.c.get("train", {}).get("num_steps")
        if step is None:
            step = _newest_step(base, workdir)
        if num_steps is None or step is None or step >= int(num_steps):
            return
        raise ConfigError(
            f"the base run in {workdir} is unfinished: its newest readable checkpoint is step "
            f"{step} of train.num_steps={num_steps}; finish training it, or name a step with "
            f"--config.method.base_step={step}"
        )

    def _restore_base_state(self, base):
        """The base run's state at `method.base_step`: the newest readable checkpoint (-1), or
        step N from its `checkpoints/`, else from its `best/` (model selection); a step in
        neither is one `ConfigError` naming the steps there are."""
        workdir, step = self.base_workdir, self.base_step
        if step < 0:
            try:
                return base.restore_latest(workdir)[0]
            except CheckpointError as e:  # e.g. no checkpoints: say it is the base run's
                raise CheckpointError(f"config.method.base_workdir={workdir!r}: {e}") from None
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
        with `step`, record the base run, the checkpoint step used, and that checkpoint's
        directory and `checkpoint_digest` in `DIR/base_run.json`."""
        save_json(Path(workdir) / BASE_CONFIG, base.c.to_dict())
        if step is not None:
            record = {
                "recipe": base.c.recipe,
                "workdir": self.base_workdir,
                "base_step": self.base_step,
                "step": int(step),
            }
            found = base_checkpoint(self.base_workdir, int(step))
            if found is not None:  # which files it was: a later run can check they are the same
                record.update(checkpoint=str(found), sha256=checkpoint_digest(found))
            save_json(Path(workdir) / BASE_RUN, record)


def _newest_step(base, workdir: str) -> int | None:
    """The newest checkpoint step in the base run's `checkpoints/` (None: none there)."""
    ckpt = workdir_paths(workdir)["ckpt"]
    if not ckpt.is_dir():
        return None
    store = base.checkpoints(ckpt, workdir)
    try:
        return store.latest_step()
    finally:
        store.close()


def _damaged_config(path, e: Exception) -> str:
    """One line for the base run's config `path` that cannot be read (`e`), naming the file
    and whose config it is."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    text = text if str(path) in text else f"{path}: {text}"
    return text if "base run" in text else f"the base run's config is damaged: {text}"


def base_checkpoint(workdir: str, step: int) -> Path | None:
    """The directory of checkpoint `step` of the run in `workdir`: in its `checkpoints/`, else
    its `best/` (the order `method.base_step` looks in); None when neither has it."""
    paths = workdir_paths(workdir)
    for directory in (paths["ckpt"], paths["root"] / "best"):
        if (directory / str(step)).is_dir():
            return directory / str(step)
    return None


def checkpoint_digest(directory) -> str:
    """SHA-256 over a checkpoint directory's files in sorted order: each one's relative path,
    size and bytes. The same files give the same digest, whichever machine reads them."""
    directory, h = Path(directory), hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(directory).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
