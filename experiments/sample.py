"""Sample a trained run: `python -m experiments.sample --config C --workdir D --num N --out F`.

Loads the newest checkpoint (EMA weights) and writes float32 `[N, 2]` (2-D data) or
`[N, H, W, C]` in [-1, 1] (images), in the dataset's scaling.

Translation (a recipe with a `translate` extra, e.g. FDRL trained with `data.source`):
`--from SOURCE.npy` translates the images in that file (float32 `[N, H, W, C]` in [-1, 1], the
run's example shape) instead of drawing; `--num` is then ignored.

Before anything is drawn: the config must describe the run that was trained (its recorded
identity, `experiments.resume.check_sampling`; `--config.eval.allow_changes` accepts a
deliberate change), a `--from` file must hold such images (`read_images`), and the output must
fit in memory and on disk (`check_room`).

From Python: `x, stats, step = sample(config_dict, workdir, num)`.
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from absl import flags

from experiments import cli
from experiments.resume import checked_restore
from jaxgen.io import atomic_write
from jaxgen.methods.common import check_inputs
from jaxgen.runtime import available_host_memory

flags.DEFINE_integer("num", 1000, "number of samples")
flags.DEFINE_string("out", None, "output .npy file")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_bool("raw", False, "use the raw (non-EMA) parameters")
flags.DEFINE_string("from", None, "translate the images in this .npy file instead of drawing")


def sample(
    config, workdir: str, num: int, *, seed: int = 0, use_ema: bool = True, out: str | None = None
):
    """`(samples [num, ...] float32, sampler stats, checkpoint step)` of the newest checkpoint
    (`config`: an experiment ConfigDict or its `Experiment`) of the run the config describes
    (`checked_restore`); `num` samples must fit in memory and, with `out`, on its disk."""
    exp = cli.as_experiment(config)
    if num <= 0:
        raise cli.ConfigError(f"--num={num}: must be positive")
    check_room(num, exp.shape, out)
    state, _ = checked_restore(exp, workdir, what="sample")
    x, stats = exp.draw(state, num, seed=seed, use_ema=use_ema)
    return x, stats, int(state.step)


def translate_file(
    config,
    workdir: str,
    path: str,
    *,
    seed: int = 0,
    use_ema: bool = True,
    out: str | None = None,
):
    """`(translations, sampler stats, checkpoint step)` of the images in the .npy file `path`
    by the newest checkpoint; one clear error when the recipe cannot translate, the file does
    not hold the run's images (`read_images`), the config is not the run's, or (with `out`)
    the translations do not fit on its disk."""
    exp = cli.as_experiment(config)
    if "translate" not in exp.caps.extras:
        raise cli.ConfigError(f"--from: the {exp.c.recipe} recipe does not translate images")
    x0 = read_images(path, exp.shape)  # before any checkpoint is read
    check_room(len(x0), exp.shape, out)
    state, _ = checked_restore(exp, workdir, what="sample")
    x, stats = exp.translate(state, x0, seed=seed, use_ema=use_ema)
    return x, stats, int(state.step)


def read_images(path: str, shape) -> np.ndarray:
    """The images in the `.npy` file `path` as float32 `[N, *shape]`, checked like a training
    batch (`check_inputs`: finite, in [-1, 1]); else one `ConfigError` naming the file, what
    is wrong and what is expected."""
    who, dims = f"--from={path}", ", ".join(map(str, shape))
    want = f"a .npy file of float32 [N, {dims}] in [-1, 1] (numpy.save)"
    p = Path(path)
    if not p.exists():
        raise cli.ConfigError(f"{who}: no such file")
    if p.is_dir():
        raise cli.ConfigError(f"{who}: is a directory; expected {want}")
    try:
        x = np.load(p, allow_pickle=False)  # never unpickle a file given on the command line
    except (ValueError, EOFError, OSError) as e:
        raise cli.ConfigError(f"{who}: {_unreadable(p, e)}; expected {want}") from None
    if isinstance(x, np.lib.npyio.NpzFile):
        names = ", ".join(x.files) or "nothing"
        x.close()
        raise cli.ConfigError(f"{who}: is an .npz archive (of {names}); expected {want}")
    if x.dtype.kind not in "biuf":
        raise cli.ConfigError(f"{who}: holds {x.dtype} values, not numbers; expected {want}")
    if x.ndim < 2 or tuple(x.shape[1:]) != tuple(shape):
        raise cli.ConfigError(
            f"{who}: its images are {tuple(x.shape)}, this run's examples are [N, {dims}]"
        )
    if len(x) == 0:
        raise cli.ConfigError(f"{who}: holds no images (shape {x.shape}); expected {want}")
    if x.dtype.kind != "f":
        pixels = " (0..255 pixels? x / 127.5 - 1 scales them)" if x.dtype == np.uint8 else ""
        raise cli.ConfigError(f"{who}: holds {x.dtype} values{pixels}; expected {want}")
    try:
        check_inputs({"x": x}, image=len(shape) == 3, who=who)
    except ValueError as e:
        text = str(e).replace("batch['x'] has", "has")
        raise cli.ConfigError(f"{text}; expected {want}") from None
    return x.astype(np.float32)


def _unreadable(path: Path, e: Exception) -> str:
    """What is wrong with a file `np.load` refused (`e`)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        return "is empty (0 bytes)"
    if head != b"\x93NUMPY":
        return "is not a .npy file (no numpy header)"
    if "Object arrays" in str(e):
        return "holds Python objects (an object array)"
    return f"cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


def check_room(num: int, shape, out: str | None = None) -> None:
    """One `ConfigError` when `num` float32 examples of `shape` cannot be held: drawing them
    needs about twice their size in memory (the drawn chunks and their concatenation), and
    `out`'s folder (the nearest that exists) must have their size free."""
    size = num * math.prod(shape) * 4
    what = f"{num} samples of shape {tuple(shape)} take {_gb(size)}"
    free = available_memory()
    if free is not None and 2 * size > free:
        raise cli.ConfigError(
            f"--num={num}: {what} and drawing them needs about {_gb(2 * size)} of memory; "
            f"{_gb(free)} is available; draw fewer (e.g. several runs with another --seed)"
        )
    if out is None:
        return
    target = Path(out).absolute()
    folder = next(p for p in target.parents if p.exists())
    room = shutil.disk_usage(folder).free + (target.stat().st_size if target.is_file() else 0)
    if size > room:
        raise cli.ConfigError(
            f"--out={out}: {what}; {folder} has {_gb(room)} free; draw fewer or write elsewhere"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable, which counts the
    page cache the kernel can drop; else the free pages), or None when unknown."""
    found = available_host_memory()
    if found is not None:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, AttributeError, ValueError):
        return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def main(argv):
    def run():
        exp = cli.parse_flags(argv, cluster=False)
        f = flags.FLAGS
        if f.workdir is None or f.out is None:
            raise cli.ConfigError("--workdir and --out are required")
        kw = dict(seed=f.seed, use_ema=not f.raw, out=f.out)
        out = Path(f.out)
        with cli.stop_on_sigterm(f"sampling stopped; {out} was not written"):
            if f["from"].value:
                x, stats, step = translate_file(exp, f.workdir, f["from"].value, **kw)
            else:
                x, stats, step = sample(exp, f.workdir, f.num, **kw)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, lambda fh: np.save(fh, x))  # never a cut-short file
        print(json.dumps({"out": str(out), "shape": list(x.shape), "step": step, **stats}))

    cli.run_main(run)


if __name__ == "__main__":
    cli.define_common_flags()
    main(sys.argv)
