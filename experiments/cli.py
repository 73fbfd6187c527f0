"""Shared CLI plumbing: flags, the checks every config gets, the workdir layout, error exits.

Library functions (`experiments.train.train`, `experiments.sample.sample`,
`experiments.evaluate.evaluate`) raise exceptions with one-line messages; only each CLI's `main`
turns them into `error: ...` and exit status 2 (`run_main`).
"""

import contextlib
import errno
import logging
import re
import signal
import sys
import traceback
from pathlib import Path

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from experiments import cluster
from experiments.experiment import Experiment, SamplerError, workdir_paths
from experiments.run_files import check_workdir, save_json

__all__ = [
    "USER_ERRORS",
    "ConfigError",
    "as_experiment",
    "experiment",
    "parse_flags",
    "run_main",
    "workdir_paths",
]
from jaxgen.data import DATASET_NAMES, IMAGE_NAMES, TOY2D_NAMES, example_shape
from jaxgen.data.images import DatasetMissingError
from jaxgen.methods.common import RENAMED_FIELDS, ConfigError, renamed_message
from jaxgen.parallel import ClusterError
from jaxgen.train.checkpoint import CheckpointError
from jaxgen.train.lock import WorkdirLockedError
from jaxgen.train.loop import NonFiniteError

FLAGS = flags.FLAGS

# what a user can cause: each is reported as one line (`error: ...`) with exit status 2
USER_ERRORS = (
    ConfigError,
    CheckpointError,
    NonFiniteError,
    SamplerError,
    DatasetMissingError,
    ClusterError,
    WorkdirLockedError,
    OSError,
)  # and a ValueError raised by jaxgen's own checks (`_our_check`); any other is internal


def define_common_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, samples)")


def parse_flags(argv: list[str], *, cluster: bool = True) -> Experiment:
    """Parse `argv` into the run's `Experiment` (its ConfigDict is `.c`); raises `ConfigError`
    naming the field on any bad flag or config field. `cluster=False` (sample, evaluate: one
    process) ignores `train.multihost`, so a training command line can be reused. A multi-host
    config joins its cluster here (`parse_config` parses without joining)."""
    c = parse_config(argv, cluster=cluster)
    try:
        return experiment(c)
    except (AttributeError, KeyError) as e:  # a field the config lacks
        raise ConfigError(_unknown_field_message(e, argv)) from None


def parse_config(argv: list[str], *, cluster: bool = True) -> ml_collections.ConfigDict:
    """`argv` parsed into the run's ConfigDict (the smoke variant with `runlocal`), without
    building the `Experiment` or joining a cluster; `ConfigError` naming a bad flag."""
    path = _config_path(argv)
    if path is not None:
        _check_config_file(path)
    try:
        try:
            FLAGS(argv)
        except (flags.Error, AttributeError, KeyError):
            raise
        except Exception as e:  # the config file's get_config() raised
            raise ConfigError(f"config file {path}: {_first_line(e)}") from None
        if FLAGS.config is None:
            raise ConfigError("--config is required")
        if FLAGS.workdir is not None:
            check_workdir(FLAGS.workdir)
        config = FLAGS.config
        if config.runlocal:
            config = _smoke_keeping_overrides(config, argv)
        if not cluster:
            config.train.multihost = False
            config.train.coordinator, config.train.num_processes = "", 0
        return config
    except (AttributeError, KeyError) as e:  # an override names a field the config lacks
        raise ConfigError(_unknown_field_message(e, argv)) from None
    except flags.Error as e:
        raise ConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def _config_path(argv: list[str]) -> str | None:
    """The file given to `--config` (without a `:argument` suffix), or None."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            value = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        return value.split(":", 1)[0]
    return None


def _check_config_file(path: str) -> None:
    """`ConfigError` for a config file that is missing or not valid Python (file and line)."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}")
    try:
        compile(p.read_bytes(), str(p), "exec")
    except SyntaxError as e:
        raise ConfigError(
            f"config file {path}, line {e.lineno}: {type(e).__name__}: {e.msg}"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_main(fn) -> None:
    """Call `fn()`; a user error becomes one line on stderr and exit status 2."""
    from jaxgen.runtime import reuse_host_memory

    reuse_host_memory()
    _drop_closed_loop_noise()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - sorted below; anything else is re-raised
        if line := cluster.peer_lost_line(e):
            _die(line)
        if isinstance(e, OSError):
            _die(_os_error_line(e))
        if isinstance(e, USER_ERRORS) or _our_check(e):
            _die(str(e).splitlines()[0] if str(e) else type(e).__name__)
        if jax.distributed.is_initialized():  # no shutdown barrier waiting for the others
            traceback.print_exc()
            cluster.exit_now(1)
        raise


_OUR_CODE = tuple(str(Path(__file__).resolve().parents[1] / d) for d in ("jaxgen", "experiments"))


def _our_check(e: BaseException) -> bool:
    """Whether `e` is a `ValueError` raised by jaxgen's own code (its argument checks, written
    as one-line messages for the user), not by JAX, numpy or another library inside it: those
    are internal errors and keep their traceback."""
    if not isinstance(e, ValueError) or e.__traceback__ is None:
        return False
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_OUR_CODE)


def _os_error_line(e: OSError) -> str:
    """`/path: Read-only file system (a writable --workdir is needed)` for a file system error;
    an `OSError` subclass of ours (a missing data set) keeps its own message."""
    if e.strerror is None:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    hint = {
        errno.EROFS: " (choose a writable --workdir)",
        errno.EACCES: " (choose a writable --workdir)",
        errno.ENOSPC: " (free some space; the same command resumes)",
    }.get(e.errno, "")
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror}{hint}"


def _drop_closed_loop_noise() -> None:
    """After a failed checkpoint write (a full disk), tensorstore completes its pending writes
    on orbax's closed event loop; each prints a "RuntimeError: Event loop is closed" traceback
    that says nothing (the failed save is reported once, with its cause)."""

    # and the writes' asyncio tasks, collected at exit, log "Task exception was never retrieved"
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    def is_noise(exc) -> bool:
        return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"

    previous_except, previous_unraisable = sys.excepthook, sys.unraisablehook

    def excepthook(kind, exc, tb):
        if not is_noise(exc):
            previous_except(kind, exc, tb)

    def unraisablehook(info):
        if not is_noise(info.exc_value):
            previous_unraisable(info)

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def _unknown_field_message(e: Exception, argv: list[str]) -> str:
    """One line for ml_collections' unknown-field errors, whose text arrives repr-escaped."""
    text = str(e.args[0] if e.args else e)
    mean = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', text)
    found = re.search(r"(\w+)", text)
    key = mean.group(2) if mean else (found.group(1) if found else "?")
    given = [a.split("=")[0].lstrip("-") for a in argv if a.startswith("--config.")]
    named = [g for g in given if key in g.split(".")]
    if not named and not mean:  # raised inside the config file's get_config()
        return f"config file {_config_path(argv)}: {type(e).__name__}: {text.splitlines()[0]}"
    for flag in named:  # e.g. --config.train.num_steps beside a renamed --config.method.num_steps
        renamed = _renamed_message(flag, argv)
        if renamed:
            return renamed
    field = named[0] if named else f"config.{key}"
    if not named and (renamed := _renamed_message(field, argv)):
        return renamed
    return f"unknown config field {field}" + (f' (did you mean "{mean.group(1)}"?)' if mean else "")


def _renamed_message(field: str, argv: list[str]) -> str | None:
    """One line when `field` ("config.method.num_steps") is a field renamed on 2026-12-07
    (`jaxgen.methods.common.RENAMED_FIELDS`) of the config file's recipe (of any recipe when
    the file cannot be read)."""
    dotted = field.removeprefix("config.")
    recipes = [r for r, m in RENAMED_FIELDS.items() if dotted in m]
    if not recipes:
        return None
    try:  # the config file's recipe, to name the one new field
        import importlib.util

        spec = importlib.util.spec_from_file_location("_jaxgen_config", _config_path(argv))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        recipes = [module.get_config().recipe] if module.get_config().recipe in recipes else []
    except Exception:  # noqa: BLE001 (any failure: name every recipe's new field)
        pass
    return renamed_message(dotted, recipes)


def _smoke_keeping_overrides(config, argv):
    """The smoke variant, with fields given explicitly on the command line left as given."""
    from experiments.configs.common import set_field, smoke

    paths = [a[len("--config.") :].split("=")[0] for a in argv if a.startswith("--config.")]
    kept = {p: _get(config, p) for p in paths if p != "runlocal"}
    config = smoke(config)
    for p, value in kept.items():
        set_field(config, p, value)
    return config


def _get(config, path: str):
    for name in path.split("."):
        config = config[name]
    return config


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if jax.distributed.is_initialized():
        cluster.exit_now(2)
    sys.exit(2)


def _check(ok: bool, field: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}={value!r}: {why}")


def _check_domains(d) -> None:
    """`data.classes` / `data.source` / `data.source_classes` (unpaired translation): label
    subsets of image sets, a source domain that is an image set of the data's shape."""
    image = d.name not in TOY2D_NAMES
    _check(
        not d.get("classes", ()) or image,
        "data.classes",
        d.get("classes"),
        "2-D sets have no labels",
    )
    if not d.get("source", ""):
        _check(
            not d.get("source_classes", ()),
            "data.source_classes",
            d.source_classes,
            "set data.source",
        )
        return
    _check(
        d.source in IMAGE_NAMES and image,
        "data.source",
        d.source,
        f"translation is between image sets: choose one of {list(IMAGE_NAMES)} (and an image "
        "data.name)",
    )
    want = example_shape(d.name, pad_to_32=d.pad_to_32)
    got = example_shape(d.source, pad_to_32=d.pad_to_32)
    _check(
        got == want,
        "data.source",
        d.source,
        f"its images are {got}, the data's ({d.name}) are {want}",
    )


def experiment(c: ml_collections.ConfigDict) -> Experiment:
    """Check the fields every config has, then build the run's `Experiment` (the recipe's
    `Config` checks the rest). Raises `ConfigError` naming the field."""
    if not c.train.multihost and (c.train.coordinator or c.train.num_processes):
        raise ConfigError(
            "config.train.coordinator / num_processes are set without "
            "config.train.multihost=True: each process would train alone"
        )
    if c.train.multihost:  # before anything asks JAX for its devices
        cluster.join(c)
    _check(
        c.data.name in DATASET_NAMES,
        "data.name",
        c.data.name,
        f"choose one of {list(DATASET_NAMES)}",
    )
    _check_domains(c.data)
    n_dev = c.train.num_devices or jax.device_count()
    _check(
        0 < n_dev <= jax.device_count(),
        "train.num_devices",
        c.train.num_devices,
        f"this machine has {jax.device_count()} devices",
    )
    _check(
        c.data.batch_size > 0 and c.data.batch_size % n_dev == 0,
        "data.batch_size",
        c.data.batch_size,
        f"must be positive and divisible by the number of devices ({n_dev})",
    )
    _check(c.train.num_steps >= 0, "train.num_steps", c.train.num_steps, "must be >= 0")
    for f in ("log_every", "keep", "steps_per_call"):
        _check(c.train[f] > 0, f"train.{f}", c.train[f], "must be > 0")
    _check(
        c.train.select_samples > 0, "train.select_samples", c.train.select_samples, "must be > 0"
    )
    for f in ("ckpt_every", "sample_every", "select_every"):
        _check(c.train[f] >= 0, f"train.{f}", c.train[f], "must be >= 0 (0 = never)")
    _check(
        c.train.nonfinite in ("stop", "skip", "rollback"),
        "train.nonfinite",
        c.train.nonfinite,
        "choose stop, skip or rollback",
    )
    _check(
        c.train.progress in ("auto", "bar", "lines", "off"),
        "train.progress",
        c.train.progress,
        "choose auto, bar, lines or off",
    )
    _check(c.train.max_nonfinite > 0, "train.max_nonfinite", c.train.max_nonfinite, "must be > 0")
    for f in ("num_samples", "batch_size", "round_size"):
        _check(c.eval[f] > 0, f"eval.{f}", c.eval[f], "must be > 0")
    try:
        return Experiment(c)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"config.recipe={c.recipe!r}: {e}") from None


def as_experiment(config) -> Experiment:
    """`config` itself when it is an `Experiment`, else `experiment(config)`."""
    return config if isinstance(config, Experiment) else experiment(config)


def save_config(c, workdir: str) -> None:
    """Write the run's `config.json` (atomically: a cut-short record is never left)."""
    save_json(Path(workdir) / "config.json", c.to_dict())


class _Stopped(BaseException):
    """SIGTERM reached a CLI (not an `Exception`: nothing in between may swallow it)."""


@contextlib.contextmanager
def stop_on_sigterm(said: str):
    """Within the block SIGTERM (preemption) stops the command at once with `SIGTERM: <said>`
    and exit status 143 (for commands whose files are written atomically, so any moment is a
    safe one: `evaluate`, `sample`); the previous handler is back afterwards."""

    def handler(signum, frame):
        raise _Stopped

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Stopped:
        print(f"SIGTERM: {said}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, old)
