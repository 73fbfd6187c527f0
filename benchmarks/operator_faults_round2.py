"""Operator faults, round two (issue #30): the 83 cases of the reliability review of 2026-12-06
(`/work/shared/reviews/reliability-2026-12-06.md`) re-run as real CLI subprocesses, each judged
by the review's rules; the table `docs/bench/operator_faults_round2.md`.

    python -m benchmarks.operator_faults_round2 [--out] [--cases N01,H4,...] [--areas N,R,...]

Each case runs in a fresh temporary folder, with a timeout per process (a process past it is
killed and the case recorded as HANG), and records the exit status, the non-empty stderr lines,
the decisive line (the `error:` / `warning:` line, else the exception a traceback ends with,
else the first stderr line), the wall time, and what was lost, checked on disk where the review
checked it (checkpoint steps and `config.json`'s MD5 before and after a refusal, metrics rows,
eval rounds, samples written). Its verdict follows the review: clean (one clear line, or the
correct behaviour), unclear (one line that does not say what is wrong; here: it does not name
what the case is about, or several lines), traceback, silent (a bad input accepted with exit 0),
lost, hang. Documented progress lines of a multi-host join (`... waiting for the others ...`) are
not counted as faults.

The review's commands are adapted to today's fields (DDGAN's T is `method.diffusion_steps`, the
short-run EBM's K `method.langevin_steps`; sample / evaluate overrides need
`--config.eval.allow_changes`). Settings are tiny: `--config.runlocal=True` and a few steps; one
base run per recipe is trained once and copied (`BASES`). The base stage (BS) is driven, as in
the review, through the real `experiments.train` with the test double `tilt2d` of
`tests/test_base_stage.py` registered first. Multi-host cases run 2 processes × 1 CPU device on
127.0.0.1, each on a free port; H4 / H09 pass `train.heartbeat_timeout=10 train.join_timeout=20`.
E11 / E12 mount tmpfs file systems (root needed, else recorded as skipped).

The processes, their logs and the on-disk helpers are round one's (`tools.operator_faults`:
`Ctx`, `Job`, `ckpt_steps`, `tree_digest`, `mangle`); the page's writing reuses
`benchmarks.operator_faults` (`git_state`, `md_cell`). One module of about 1,300 lines (over the
style's 400): 83 cases, most a few lines each, kept beside the table and the rules that judge
them.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.operator_faults import git_state, md_cell
from tools import operator_faults as of

OUT_DIR = of.REPO / "docs" / "bench"
REVIEW = "/work/shared/reviews/reliability-2026-12-06.md"
CONF = "experiments/configs/"
GLF, DDGAN = CONF + "glf/digits.py", CONF + "ddgan/25gaussians.py"
SRE, FDRL = CONF + "shortrun_ebm/swissroll.py", CONF + "fdrl/toy2d.py"
TR, GAN = CONF + "fdrl/fashion_translation.py", CONF + "gan2d/toy2d.py"
RL = "--config.runlocal=True"
# the review's fdrl_ddp run: FDRL with the data-dependent prior (writes data_fit.npz)
FD = ("--config.method.prior=ddp", "--config.method.flow_steps=5", "--config.data.batch_size=64")
# the review's EA: 20 rounds of 200 samples, Fréchet distance only
EA = ("--config.eval.num_samples=4000", "--config.eval.round_size=200",
      '--config.eval.metrics=("fd",)')  # fmt: skip
# the gan2d base a tilt2d stage starts from (the double's generator: latent 4, one layer of 8)
GAN_BASE = ("--config.data.batch_size=16", "--config.model.latent=4",
            "--config.model.gen_hidden=(8,)", "--config.model.disc_hidden=(8,)")  # fmt: skip
MH_ENV = {**of.ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
MH_BOUNDS = ("--config.train.heartbeat_timeout=10", "--config.train.join_timeout=20")
PROGRESS = re.compile(r"waiting for the others")  # a multi-host join's documented progress line
VERDICTS = ("clean", "unclear", "traceback", "silent", "lost", "hang")  # worse to the right
# `python -m experiments.<argv[1]> <argv[2:]>` with tests/test_base_stage.py's tilt2d double
# registered (the review's tilt_cli.py)
TILT_CODE = (
    "import runpy, sys, warnings; sys.path.insert(0, 'tests'); "
    # runpy's note that experiments.train was imported (by the double's module) before it runs
    "warnings.filterwarnings('ignore', '.*found in sys.modules after import'); "
    "from test_base_stage import TILT; from jaxgen import methods; "
    "methods.RECIPES['tilt2d'] = TILT; "
    "m = 'experiments.' + sys.argv[1]; sys.argv = [m, *sys.argv[2:]]; "
    "runpy.run_module(m, run_name='__main__', alter_sys=True)"
)
# the review's tilt_cfg.py: the double on 8 Gaussians, 2 steps
TILT_CFG = """from experiments.configs.common import base_config


def get_config():
    c = base_config("tilt2d", dataset="8gaussians", batch_size=16, num_steps=2)
    c.train.update(dict(ckpt_every=1, sample_every=0, log_every=1, steps_per_call=1))
    c.eval.update(dict(num_samples=64, batch_size=64, metrics=("mmd",)))
    return c
"""
AREAS = {  # as the review's Totals table names them
    "N": "N: the new methods' own fields",
    "R": "R: cross-recipe and changed identity",
    "D": "D: `data_fit.npz`",
    "F": "F: `sample --from`",
    "E": "E: `evaluate --step`, interrupts, disk full",
    "U": "U: `experiments.curves`",
    "W": "W: workdir, TensorBoard, metrics",
    "H": "H: multi-host",
    "S": "S: sample",
    "BS": "BS: base stage",
}


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One case's record: what ran (`command`, `rc`, `err_lines`: non-empty stderr lines, the
    `decisive` line, `seconds`), what was `lost` on disk, and the verdict now and the review's
    (`before`); `why` says what a verdict other than clean rests on, `skip` why it did not run."""

    case: str
    area: str
    summary: str
    before: str
    command: str = ""
    rc: str = "—"
    err_lines: str = "—"
    decisive: str = ""
    seconds: float | None = None
    lost: str = ""
    hang: bool = False
    verdict: str = "—"
    why: str = ""
    skip: str = ""


@dataclass(frozen=True)
class Spec:
    """A case of the review: its id, the fault in short, the review's verdict, and the function
    that runs it in a `Case` and returns its `Result`."""

    case: str
    summary: str
    before: str
    fn: Callable

    @property
    def area(self) -> str:
        m = re.match(r"[A-Z]+", self.case)
        return m.group(0) if m else ""


def counted(job: of.Job) -> list[str]:
    """`job`'s stderr lines less a multi-host join's documented progress lines."""
    return [x for x in job.err_lines if not PROGRESS.search(x)]


def decisive_line(job: of.Job) -> str:
    """The `error:` / `warning:` / signal line (round one's `decisive`), else a traceback's last
    line, else the first stderr line, else the last stdout line."""
    marks = ("error:", "warning:", "SIGTERM:", "SIGINT:", "taking over")
    if job.traceback or any(x.startswith(marks) for x in job.err_lines + job.out_lines):
        return of.decisive(job)
    lines = counted(job)
    return lines[0] if lines else (job.out_lines or ["(nothing printed)"])[-1]


def judge(job, *, refuse, names=(), ok=True, lost=False, max_lines=1) -> tuple[str, str]:
    """`(verdict, why)` of one process by the review's rules. `refuse`: the input is bad, so one
    `error:` line naming each regex of `names` is clean and exit 0 is silent; otherwise the
    command must succeed (`ok`, at most `max_lines` stderr lines, e.g. one warning)."""
    lines = counted(job)
    if job.hang:
        return "hang", "killed at the timeout"
    if lost:
        return "lost", ""
    if job.traceback:
        return "traceback", f"{len(job.err_lines)} stderr lines"
    if refuse:
        if job.rc == 0:
            return "silent", "exit 0"
        if len(lines) != 1 or not lines[0].startswith("error:"):
            return "unclear", f"{len(lines)} stderr lines, not one `error:` line"
        missing = [n for n in names if not re.search(n, lines[0], re.I)]
        if missing:
            return "unclear", "the line does not name " + " / ".join(missing)
        return "clean", "" if job.rc == 2 else f"exit {job.rc}"
    if job.rc != 0:
        return "unclear", f"a correct command failed (exit {job.rc})"
    if len(lines) > max_lines:
        return "unclear", f"{len(lines)} stderr lines"
    return ("clean", "") if ok else ("unclear", "exit 0 but the result is wrong")


def worst(*verdicts: tuple[str, str]) -> tuple[str, str]:
    """The worse of several `(verdict, why)` (e.g. both processes of a multi-host case)."""
    return max(verdicts, key=lambda v: VERDICTS.index(v[0]))


def snapshot(wd: Path | None) -> dict | None:
    """What a refusal must not change in the run `wd`: its checkpoint steps and files, the MD5 of
    its `config.json`."""
    if wd is None or not Path(wd).is_dir():
        return None
    return dict(
        steps=of.ckpt_steps(wd),
        files=of.tree_digest(Path(wd) / "checkpoints"),
        cfg=of.file_md5(Path(wd) / "config.json"),
    )


def changes(before: dict | None, after: dict | None, rewrite: bool = False) -> tuple[bool, str]:
    """`(lost, text)`: whether a checkpoint file or `config.json` changed between two snapshots
    (`rewrite`: a resume that starts may rewrite `config.json`, so a change is not lost)."""
    if before is None:
        return False, "nothing to lose (fresh workdir)"
    after = after or dict(steps=[], files={}, cfg=None)
    gone = {k: v for k, v in before["files"].items() if after["files"].get(k) != v}
    same_cfg = before["cfg"] == after["cfg"]
    text = f"checkpoints {before['steps']} → {after['steps']}; config.json md5 " + (
        "unchanged" if same_cfg else "changed (rewritten at the start)" if rewrite else "CHANGED"
    )
    if gone:
        text += f"; {len(gone)} checkpoint file(s) removed or changed"
    return bool(gone) or not (same_cfg or rewrite), text


def npy_note(path: Path) -> str:
    """What a written `.npy` holds (shape, share of NaN), or that none was written."""
    if not path.exists():
        return f"{path.name} not written"
    try:
        x = np.load(path)
        nan = float(np.isnan(x).mean()) if x.dtype.kind == "f" else 0.0
        return f"{path.name} written: {list(x.shape)}, {nan:.1%} NaN"
    except Exception as e:  # a partial file
        return f"{path.name} written but unreadable ({type(e).__name__})"


# --------------------------------------------------------------------------- one case


class Case:
    """One case's fresh folder `root` (a round-one `Ctx`: its processes are killed and its
    tmpfs unmounted on `close`), the base runs it may copy, and the run it works on (`wd`)."""

    def __init__(self, spec: Spec, root: Path, bases: dict[str, Path]):
        self.spec, self.bases, self.wd = spec, bases, None
        self.ctx = of.Ctx(root, echo=False)
        self.root = self.ctx.root

    def copy(self, base: str, name: str = "run") -> Path:
        """A copy of base run `base` at `root/name`; it becomes `wd`."""
        if base not in self.bases:
            raise RuntimeError(f"the base run {base!r} is not available (its setup failed)")
        self.wd = self.root / name
        shutil.copytree(self.bases[base], self.wd)
        return self.wd

    def cli(self, module: str, config: str, *args, wd=None, rl=True) -> list[str]:
        """`python -m experiments.<module> --config <config> --workdir <wd> [runlocal] args`
        (`wd`: the case's run, else `root/run`)."""
        wd = wd or self.wd or self.root / "run"
        return [*self.ctx.cli(module, config), f"--workdir={wd}", *([RL] if rl else []), *args]

    def out(self, name: str = "o.npy") -> tuple[Path, str]:
        """`(path, "--out=path")` of an output file in `root/out/`."""
        path = self.root / "out" / name
        path.parent.mkdir(exist_ok=True)
        return path, f"--out={path}"

    def start(self, cmd, tag: str = "job", env=None) -> of.Job:
        return self.ctx.start(cmd, tag, env=env)

    def run(self, cmd, tag: str = "job", env=None, timeout: float = of.TIMEOUT) -> of.Job:
        return self.ctx.run(cmd, tag, env=env, timeout=timeout)

    def short(self, text: str) -> str:
        """A command or line with the interpreter, the CLIs, the tilt wrapper and `root`
        abbreviated (T_ / S_ / E_ = train / sample / evaluate --config experiments/configs/)."""
        text = text.replace(shlex.quote(TILT_CODE), "tilt_cli.py")
        for module, letter in (("train", "T"), ("sample", "S"), ("evaluate", "E")):
            text = text.replace(f"{of.PY} -m experiments.{module} --config {CONF}", f"{letter}_")
        text = text.replace(f"{of.PY} -m experiments.", "python -m experiments.")
        return text.replace(str(self.root), "$TMP").replace(of.PY, "python")

    def result(self, jobs, lost: str, verdict: tuple[str, str], *, shown=None) -> Result:
        """The case's `Result` from its processes `jobs` (one or several: rc and stderr lines
        are joined with ` / `, the decisive line is the first job's unless `shown`)."""
        jobs = jobs if isinstance(jobs, list | tuple) else [jobs]
        line = shown if shown is not None else decisive_line(jobs[0])
        return Result(
            self.spec.case,
            self.spec.area,
            self.spec.summary,
            self.spec.before,
            command=" ; ".join(self.short(shlex.join(j.cmd)) for j in jobs)[:600],
            rc=" / ".join("HANG" if j.hang else str(j.rc) for j in jobs),
            err_lines=" / ".join(str(len(j.err_lines)) for j in jobs),
            decisive=self.short(line)[:300],
            seconds=round(sum(j.seconds or 0 for j in jobs), 1),
            lost=lost,
            hang=any(j.hang for j in jobs),
            verdict=verdict[0],
            why=verdict[1],
        )

    def refuse(self, cmd, *names, out: Path | None = None, rewrite: bool = False) -> Result:
        """Run `cmd`, which must be refused in one `error:` line naming `names` (regexes)
        without changing the run `wd`; `out`: an output file that must not be written;
        `rewrite`: the refusal comes after the start, which rewrites `config.json`."""
        before = snapshot(self.wd)
        job = self.run(cmd)
        lost, text = changes(before, snapshot(self.wd), rewrite)
        if out is not None:
            text += "; " + npy_note(out)
        return self.result(job, text, judge(job, refuse=True, names=names, lost=lost))

    def skipped(self, why: str) -> Result:
        s = self.spec
        return Result(s.case, s.area, s.summary, s.before, lost="not run", verdict="skipped",
                      why=why, skip=why)  # fmt: skip


# --------------------------------------------------------------------------- base runs


BASES = {  # name: (config, arguments, the checkpoint steps it must have)
    "glf": (GLF, (RL, "--config.train.num_steps=4", "--config.train.ckpt_every=2"), [2, 4]),
    "ddgan": (DDGAN, (RL, "--config.train.num_steps=6", "--config.train.ckpt_every=2"), [2, 4, 6]),
    "fdrl_ddp": (FDRL, (*FD, *of.F, "--config.train.num_steps=20",
                        "--config.train.ckpt_every=10"), [10, 20]),
    "fdrl_tr": (TR, (RL,), [1, 2]),
    "gan": (GAN, (*GAN_BASE, *of.F, "--config.train.num_steps=2",
                  "--config.train.ckpt_every=1"), [1, 2]),
}  # fmt: skip


def setup_row(c: Case, job: of.Job, ok: bool, checked: str) -> Result:
    """A setup run's row: "ok", or "failed" with the end of its stderr."""
    return c.result(job, checked, ("ok", "") if ok else ("failed", job.err[-600:]))


def train_bases(root: Path) -> tuple[dict[str, Path], list[Result]]:
    """The runs the cases copy (`BASES`), the uninterrupted 20-round evaluation E08-E10 compare
    against and E12 / E15 start from (`glf_eval`, the review's E07ref), and a tilt2d stage on
    the finished gan2d base (BS0: the wrapper works); one setup row each."""
    bases, rows = {}, []
    for name, (config, args, want) in BASES.items():
        c = Case(Spec(f"base {name}", "", "—", None), root / f"base_{name}", bases)
        job = c.run([*c.ctx.cli("train", config), f"--workdir={c.root / 'run'}", *args])
        steps = of.ckpt_steps(c.root / "run")
        ok = job.rc == 0 and steps == want
        rows.append(setup_row(c, job, ok, f"checkpoints {steps}"))
        if ok:
            bases[name] = c.root / "run"
    if "glf" in bases:
        c = Case(Spec("E07ref", "", "—", None), root / "base_glf_eval", bases)
        wd = c.copy("glf")
        job = c.run(c.cli("evaluate", GLF, *EA))
        fd = fd_metrics(wd)
        ok = job.rc == 0 and fd is not None
        rows.append(setup_row(c, job, ok, f"eval rounds {len(rounds(wd))}"))
        if ok:
            bases["glf_eval"] = wd
    if "gan" in bases:
        c = Case(Spec("BS0", "", "—", None), root / "base_stage0", bases)
        job = c.run(tilt(c, c.bases["gan"]))
        ok = job.rc == 0 and (c.root / "run" / "base_run.json").exists()
        rows.append(setup_row(c, job, ok, f"base_run.json written: {ok}"))
    return bases, rows


# --------------------------------------------------------------------------- N, R: fields, identity


def new_field(config: str, override: str, *names: str) -> Callable:
    """A case: train `config` (runlocal) in a fresh workdir with `override`; refused naming
    `names`."""
    return lambda c: c.refuse(c.cli("train", config, override), *names)


def n06(c: Case) -> Result:
    """A scalar for a tuple field: taken as a 1-tuple and trained."""
    job = c.run(c.cli("train", DDGAN, "--config.model.hidden=16"))
    wd = c.root / "run"
    saved = json.loads((wd / "config.json").read_text()) if (wd / "config.json").exists() else {}
    hidden, steps = saved.get("model", {}).get("hidden"), of.ckpt_steps(wd)
    ok = hidden == [16] and bool(steps)
    return c.result(job, f"model.hidden recorded as {hidden}; checkpoints {steps}",
                    judge(job, refuse=False, ok=ok))  # fmt: skip


def on_copy(base: str, build: Callable, *names: str, out: bool = False) -> Callable:
    """A case: copy base run `base`, run `build(c)` on it (with `--out` appended when `out`);
    refused naming `names`, the run unchanged, no output written."""

    def case(c: Case) -> Result:
        c.copy(base)
        path, flag = c.out()
        cmd = [*build(c), *([flag] if out else [])]
        return c.refuse(cmd, *names, out=path if out else None)

    return case


# --------------------------------------------------------------------------- D: data_fit.npz


def damaged_fit(how: str, module: str, *names: str) -> Callable:
    """A case: copy the fdrl_ddp run, damage its `data_fit.npz` (`how`), then run `module`
    (train resumes to 30, sample writes 10, evaluate); refused naming `names`."""

    def case(c: Case) -> Result:
        wd = c.copy("fdrl_ddp")
        damage_fit(wd / "data_fit.npz", how)
        path, flag = c.out()
        return c.refuse(fdrl_cmd(c, module, flag), *names, out=path if module == "sample" else None)

    return case


def damage_fit(path: Path, how: str) -> None:
    """Cut `path` to 200 bytes, fill it with 300 random bytes, empty it, put a NaN in its
    `prior_mean`, or give `prior_mean` shape (3,)."""
    if how == "cut":
        with open(path, "r+b") as f:
            f.truncate(200)
    elif how == "garbage":
        path.write_bytes(os.urandom(300))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        fit = dict(np.load(path))
        mean = fit["prior_mean"].copy()
        if how == "nan":
            mean[0] = np.nan
        else:
            mean = np.zeros(3, np.float32)
        with open(path, "wb") as f:
            np.savez(f, **{**fit, "prior_mean": mean})


def fdrl_cmd(c: Case, module: str, out_flag: str) -> list[str]:
    """The fdrl_ddp run's command: train resumes to step 30, sample draws 10 to `out_flag`,
    evaluate on 500 samples."""
    if module == "train":
        extra = (*of.F, "--config.train.ckpt_every=10", "--config.train.num_steps=30")
    elif module == "sample":
        extra = ("--num=10", out_flag)
    else:
        extra = ("--config.eval.num_samples=500",)
    return c.cli(module, FDRL, *FD, *extra, rl=False)


def d04(c: Case) -> Result:
    """`data_fit.npz` deleted, then resume: refitted (bit-identical) and resumed from 20."""
    wd = c.copy("fdrl_ddp")
    original = dict(np.load(wd / "data_fit.npz"))
    (wd / "data_fit.npz").unlink()
    job = c.run(fdrl_cmd(c, "train", ""))
    refit = dict(np.load(wd / "data_fit.npz")) if (wd / "data_fit.npz").exists() else {}
    same = bool(refit) and all(np.array_equal(refit[k], v) for k, v in original.items())
    resumed = f"resuming from {wd / 'checkpoints' / '20'}" in job.out
    done = "done: step 30" in job.out
    ok = same and resumed and done
    lost = f"refit bit-identical: {same}; resumed from 20: {resumed}; reached 30: {done}"
    return c.result(job, lost, judge(job, refuse=False, ok=ok))


# --------------------------------------------------------------------------- F: sample --from


def from_file(make: Callable[[Path], Path], *names: str, base="fdrl_tr", config=TR) -> Callable:
    """A case: `sample --from` the file `make(folder)` writes, on a copy of `base`; refused
    naming `names` (else: what was written)."""

    def case(c: Case) -> Result:
        c.copy(base)
        src = make(c.root / "from")
        path, flag = c.out()
        return c.refuse(c.cli("sample", config, f"--from={src}", flag), *names, out=path)

    return case


def images(shape, *, kind="float", fill=None) -> Callable[[Path], Path]:
    """A writer of `folder/x.npy`: uniform floats in [-1, 1] of `shape` (`kind`: "float",
    "0..255" floats, "uint8"), with `fill(x)` applied last."""

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        r = np.random.default_rng(0)
        if kind == "uint8":
            x = r.integers(0, 256, shape).astype(np.uint8)
        else:
            lo, hi = (0.0, 255.0) if kind == "0..255" else (-1.0, 1.0)
            x = r.uniform(lo, hi, shape).astype(np.float32)
        if fill is not None:
            fill(x)
        np.save(folder / "x.npy", x)
        return folder / "x.npy"

    return make


def odd_file(kind: str) -> Callable[[Path], Path]:
    """A writer of a file that is not a `.npy` of images: "text" named `.npy`, an ".npz", an
    "object" array, a "missing" file, a "directory"."""

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("x.npz" if kind == "npz" else "x.npy")
        if kind == "text":
            path.write_text("x y z\n1 2 3\n")
        elif kind == "npz":
            np.savez(path, x=np.zeros((5, 32, 32, 1), np.float32))
        elif kind == "object":
            np.save(path, np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
        elif kind == "missing":
            path = folder / "nope.npy"
        elif kind == "directory":
            path = folder / "fr"
            path.mkdir()
        return path

    return make


def _nan_pixel(x):
    x[0, 3, 3, 0] = np.nan


# --------------------------------------------------------------------------- E: evaluate


def e_step(step: str, *names: str) -> Callable:
    """A case: evaluate a copy of the GLF run with `--step <step>`; refused naming `names`."""
    arg = ["--step", step] if not step.startswith("-") else [f"--step={step}"]
    return on_copy("glf", lambda c: c.cli("evaluate", GLF, *arg), *names)


def rounds(wd: Path) -> list[str]:
    """The eval round files of run `wd` (`eval/rounds_*/round_NNNN.npz`)."""
    return sorted(p.name for p in Path(wd).glob("eval/rounds_*/round_*.npz"))


def strays(wd: Path) -> list[str]:
    """Files under `wd/eval` that are none of evaluate's own (temporary or partial files)."""
    own = re.compile(r"(round_\d{4}\.npz|protocol\.json|metrics\.(json|md)|reference_.*|\.lock)$")
    return sorted(str(p.relative_to(wd)) for p in Path(wd).glob("eval/**/*")
                  if p.is_file() and not own.match(p.name))  # fmt: skip


def fd_metrics(wd: Path) -> dict | None:
    """The `fd` section of `wd/eval/metrics.json` (what E08-E10 compare with E07ref)."""
    path = Path(wd) / "eval" / "metrics.json"
    try:
        return json.loads(path.read_text()).get("fd")
    except (OSError, ValueError):
        return None


def e06(c: Case) -> Result:
    """`--step 2` (an older step): evaluated, written under eval/step_2/."""
    wd = c.copy("glf")
    job = c.run(c.cli("evaluate", GLF, "--step", "2"))
    written = (wd / "eval" / "step_2" / "metrics.json").exists()
    return c.result(job, f"eval/step_2/metrics.json written: {written}",
                    judge(job, refuse=False, ok=written))  # fmt: skip


def interrupted_eval(sig: int) -> Callable:
    """E08 / E09: EA stopped by `sig` once round 5 exists, then the same command again: the
    rounds are reused and the metrics equal E07ref's."""

    def case(c: Case) -> Result:
        wd = c.copy("glf")
        cmd = c.cli("evaluate", GLF, *EA)
        first = c.start(cmd, "first")
        came = first.wait_until(lambda: "round_0005.npz" in rounds(wd), timeout=150)
        first.p.send_signal(sig)
        first.wait()
        kept = len(rounds(wd))
        again = c.run(cmd, "again")
        same = fd_metrics(wd) == fd_metrics(c.bases["glf_eval"])
        left = strays(wd)
        lost = f"round 5 reached before the signal: {came}; {kept} rounds kept and reused; "
        lost += f"metrics equal to an uninterrupted run's: {same}; stray files: {left or 'none'}"
        first_ok = (first.rc in (128 + sig, -sig)) and not first.traceback
        verdict = worst(
            judge(again, refuse=False, ok=same and not left and came),
            ("clean", "") if first_ok else ("unclear", f"the stopped run exited {first.rc}"),
            ("traceback", "on the signal") if first.traceback else ("clean", ""),
        )
        shown = f"{decisive_line(first)} | then: {decisive_line(again)}"
        return c.result([first, again], lost, verdict, shown=shown)

    return case


def e10(c: Case) -> Result:
    """Two EA on one workdir at once: both finish (or the second is refused in one line) and the
    metrics equal E07ref's, with no stray files."""
    wd = c.copy("glf")
    cmd = c.cli("evaluate", GLF, *EA)
    jobs = [c.start(cmd, "a"), c.start(cmd, "b")]
    for j in jobs:
        j.wait()
    same = fd_metrics(wd) == fd_metrics(c.bases["glf_eval"])
    left = strays(wd)
    lost = f"metrics equal to an uninterrupted run's: {same}; {len(rounds(wd))} rounds; "
    lost += f"stray files: {left or 'none'}"
    each = [judge(j, refuse=j.rc != 0, ok=same and not left) for j in jobs]
    return c.result(jobs, lost, worst(*each, ("clean", "") if same else ("lost", "")))


def disk_full(size: str, precopy: bool) -> Callable:
    """E11 / E12: `eval/` on a tmpfs of `size` (E12: the reference statistics copied in first,
    so that a round does not fit); one line naming the full disk; what was kept."""

    def case(c: Case) -> Result:
        wd = c.copy("glf")
        failed = c.ctx.mount(wd / "eval", f"size={size}")
        if failed:
            return c.skipped(failed)
        if precopy:
            for p in (c.bases["glf_eval"] / "eval").glob("reference_*"):
                shutil.copy2(p, wd / "eval" / p.name)
        job = c.run(c.cli("evaluate", GLF, *EA))
        files = sorted(str(p.relative_to(wd / "eval")) for p in (wd / "eval").rglob("*")
                       if p.is_file())  # fmt: skip
        left = strays(wd)
        lost = f"rounds kept: {rounds(wd) or 'none'}; stray files: {left or 'none'}; "
        lost += f"{len(files)} files in eval/"
        names = ("No space left|disk is full", "reference" if not precopy else "eval/")
        return c.result(job, lost, judge(job, refuse=True, names=names))

    return case


def e15(c: Case) -> Result:
    """A round file cut to 5 KB, metrics.json removed, EA again: one line naming the round;
    the round is left where it is."""
    wd = c.copy("glf_eval")
    (rnd,) = list(wd.glob("eval/rounds_*/round_0003.npz"))
    with open(rnd, "r+b") as f:
        f.truncate(5000)
    (wd / "eval" / "metrics.json").unlink()
    job = c.run(c.cli("evaluate", GLF, *EA))
    lost = f"round_0003 kept: {rnd.exists()}; {len(rounds(wd))} rounds"
    return c.result(job, lost, judge(job, refuse=True, names=("round_0003",)))


def e16(c: Case) -> Result:
    """`--step 2` where checkpoint 2 is truncated: one line; nothing deleted or moved."""
    wd = c.copy("glf")
    n = of.mangle(wd / "checkpoints" / "2", "truncate")
    job = c.run(c.cli("evaluate", GLF, "--step", "2"))
    left = len([p for p in (wd / "checkpoints" / "2").rglob("*") if p.is_file()])
    lost = f"checkpoint 2's {n} files still there: {left == n}; checkpoints {of.ckpt_steps(wd)}"
    names = ("unreadable|corrupt",)
    return c.result(job, lost, judge(job, refuse=True, names=names, lost=left != n))


# --------------------------------------------------------------------------- U: curves


def curves_cmd(*args) -> list[str]:
    return [of.PY, "-m", "experiments.curves", *map(str, args)]


def curves_refused(prepare: Callable[[Case], Path], *names: str, keys=()) -> Callable:
    """A case: `experiments.curves --workdir <prepare(c)> [--keys keys]`; refused naming
    `names`."""

    def case(c: Case) -> Result:
        folder = prepare(c)
        cmd = curves_cmd("--workdir", folder, *(("--keys", *keys) if keys else ()))
        return c.refuse(cmd, *names)

    return case


def _config_only(c: Case) -> Path:
    folder = c.root / "u01"
    folder.mkdir()
    shutil.copy2(c.bases["glf"] / "config.json", folder / "config.json")
    return folder


def _emptied_metrics(c: Case) -> Path:
    wd = c.copy("glf")
    (wd / "metrics.jsonl").write_text("")
    return wd


def _cut_config(c: Case) -> Path:
    wd = c.copy("glf")
    text = (wd / "config.json").read_text()
    (wd / "config.json").write_text(text[: len(text) // 2])
    return wd


def cut_tail(path: Path, nbytes: int = 15) -> None:
    """Cut the last `nbytes` bytes off `path` (a row cut short by a kill)."""
    with open(path, "r+b") as f:
        f.truncate(max(0, path.stat().st_size - nbytes))


def curves_ok(prepare: Callable[[Case], tuple[Path, list]], figure: Callable[[Case], Path],
              max_lines: int = 0) -> Callable:  # fmt: skip
    """A case where curves must succeed: `prepare(c)` gives the folder and extra arguments,
    `figure(c)` the figure that must be written (at most `max_lines` warnings)."""

    def case(c: Case) -> Result:
        folder, extra = prepare(c)
        job = c.run(curves_cmd("--workdir", folder, *extra))
        fig = figure(c)
        ok = fig.exists()
        lost = f"{fig.relative_to(c.root)} written: {ok}"
        return c.result(job, lost, judge(job, refuse=False, ok=ok, max_lines=max_lines))

    return case


def _cut_row(c: Case):
    wd = c.copy("glf")
    cut_tail(wd / "metrics.jsonl")
    return wd, []


def _equals_path(c: Case):
    c.copy("glf", "u05=x")
    return c.wd, []


def _deep_out(c: Case):
    return c.copy("glf"), ["--out", c.root / "u07" / "deep" / "c.png"]


# --------------------------------------------------------------------------- W: workdir, metrics


def w01(c: Case) -> Result:
    """Train, sample, evaluate and curves in a folder with non-ASCII characters and spaces."""
    wd = c.root / "wd ünï cødé" / "run 1"
    jobs = [c.run(c.cli("train", DDGAN, wd=wd), "train")]
    jobs.append(c.run(c.cli("sample", DDGAN, "--num=10", f"--out={wd / 's 1.npy'}", wd=wd), "s"))
    jobs.append(c.run(c.cli("evaluate", DDGAN, wd=wd), "evaluate"))
    jobs.append(c.run(curves_cmd("--workdir", wd), "curves"))
    made = [wd / "s 1.npy", wd / "eval" / "metrics.json", wd / "curves.png"]
    lost = "; ".join(f"{p.name} written: {p.exists()}" for p in made)
    verdict = worst(*(judge(j, refuse=False, ok=all(p.exists() for p in made)) for j in jobs))
    bad = next((j for j in jobs if j.rc != 0 or j.err_lines), None)
    shown = decisive_line(bad) if bad else "all four exit 0"
    return c.result(jobs, lost, verdict, shown=shown)


def _a_file(c: Case) -> Path:
    path = c.root / "afile"
    path.write_text("not a run\n")
    return path


def w04(c: Case) -> Result:
    """The last metrics.jsonl row cut short (15 bytes), then resumed to 8 and curves drawn: every
    row a JSON line of its own, the fragment kept aside."""
    wd = c.copy("ddgan")
    cut_tail(wd / "metrics.jsonl")
    job = c.run(c.cli("train", DDGAN, "--config.train.num_steps=8"))
    rows, bad = [], 0
    for line in (wd / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            bad += 1
    partial = (wd / "metrics.jsonl.partial").exists()
    drawn = c.run(curves_cmd("--workdir", wd), "curves")
    lost_rows = bad > 0 or not {7, 8} <= set(rows)
    lost = f"metrics.jsonl steps {rows}, {bad} unreadable line(s); fragment in "
    lost += f"metrics.jsonl.partial: {partial}; curves afterwards: rc {drawn.rc}, "
    lost += f"{len(drawn.err_lines)} stderr line(s)"
    verdict = worst(
        judge(job, refuse=False, ok=partial, lost=lost_rows),
        judge(drawn, refuse=False, ok=(wd / "curves.png").exists()),
    )
    return c.result(job, lost, verdict)


def w05(c: Case) -> Result:
    """`tb/` replaced by a regular file, then resume: one line naming it."""
    wd = c.copy("ddgan")
    shutil.rmtree(wd / "tb")
    (wd / "tb").write_text("not a folder\n")
    return c.refuse(c.cli("train", DDGAN, "--config.train.num_steps=8"), "tb", rewrite=True)


# --------------------------------------------------------------------------- H: multi-host


def mh_cmd(c: Case, wd: Path, coordinator: str, pid: int, *extra, num_steps=1_000_000):
    """One process of the review's MH job: 2 processes of DDGAN 25 Gaussians (runlocal) that
    would train for a long time, checkpoints every 20 steps."""
    return c.cli(
        "train", DDGAN, f"--config.train.num_steps={num_steps}", "--config.train.ckpt_every=20",
        "--config.train.sample_every=0", "--config.train.log_every=20",
        "--config.train.progress=lines", "--config.train.multihost=True",
        f"--config.train.coordinator={coordinator}", "--config.train.num_processes=2",
        f"--config.train.process_id={pid}", *extra, wd=wd,
    )  # fmt: skip


def mh_start(c: Case, wd: Path, port: int, pid: int, *extra, tag=None, **kw) -> of.Job:
    cmd = mh_cmd(c, wd, f"127.0.0.1:{port}", pid, *extra, **kw)
    return c.start(cmd, tag or f"p{pid}", env=MH_ENV)


def mh_job(c: Case) -> tuple[Path, int, list[of.Job], bool]:
    """The MH job started in `root/run` on a free port, once it has checkpoint 20 (or the wait
    gave up): `(workdir, port, [process 0, process 1], whether it came)`."""
    wd, port = c.root / "run", of.free_port()
    procs = [mh_start(c, wd, port, i) for i in (0, 1)]
    came = procs[0].wait_until(lambda: max(of.ckpt_steps(wd) or [0]) >= 20, timeout=240)
    return wd, port, procs, came


DIED = ("another process|died|stopped",)


def mh_killed(victim: int) -> Callable:
    """H1 / H3: the MH job, `kill -9` of process `victim` once checkpoint 20 exists: the other
    ends with one line; the checkpoints stay; (H1) both restarted resume and finish."""

    def case(c: Case) -> Result:
        wd, port, procs, came = mh_job(c)
        before = of.ckpt_steps(wd)
        procs[victim].p.kill()
        t0 = time.perf_counter()
        procs[victim].wait()
        other = of.wait_more(procs[1 - victim], of.TIMEOUT)
        ended = time.perf_counter() - t0
        after = of.ckpt_steps(wd)
        kept = set(before) <= set(after)
        lost = f"checkpoint 20 came: {came}; checkpoints at the kill {before}, after {after}; "
        lost += f"process {1 - victim} ended {ended:.1f} s after the kill"
        verdict = judge(other, refuse=True, names=DIED, lost=not kept)
        jobs = [other]
        if victim == 1 and after:
            last = max(after)
            again = [mh_start(c, wd, port, i, tag=f"r{i}", num_steps=last + 20) for i in (0, 1)]
            for j in again:
                of.wait_more(j, 240)
            resumed = f"resuming from {wd / 'checkpoints' / str(last)}" in again[0].out
            ok = all(j.rc == 0 for j in again) and resumed and last + 20 in of.ckpt_steps(wd)
            lost += f"; both restarted: rc {again[0].rc} / {again[1].rc}, resumed from {last}: "
            lost += f"{resumed}, reached {last + 20}: {last + 20 in of.ckpt_steps(wd)}"
            verdict = worst(verdict, *(judge(j, refuse=False, ok=ok) for j in again))
            jobs += again
        return c.result(jobs, lost, verdict)

    return case


def h2(c: Case) -> Result:
    """The MH job launched a second time while it runs: each new process refused in one line;
    the live job goes on (a newer checkpoint)."""
    wd, port, live, came = mh_job(c)
    before = of.ckpt_steps(wd)
    again = [mh_start(c, wd, port, i, tag=f"b{i}") for i in (0, 1)]
    for j in again:
        of.wait_more(j, 120)
    alive = all(j.alive() for j in live)
    top = max(before or [0])
    on = live[0].wait_until(lambda: max(of.ckpt_steps(wd) or [0]) > top, timeout=120)
    lost = f"checkpoint 20 came: {came}; live job still running after the refusals: {alive}; "
    lost += f"checkpoints before {before}, later {of.ckpt_steps(wd)} (went on: {on})"
    for j in live:
        j.kill()
    each = [judge(j, refuse=True, names=("in use by pid",), lost=not (alive and on)) for j in again]
    return c.result(again, lost, worst(*each))


def h4(c: Case) -> Result:
    """Only process 0 of 2 started: progress lines, then one line after train.join_timeout."""
    job = mh_start(c, c.root / "run", of.free_port(), 0, *MH_BOUNDS)
    job.wait(120)
    waits = len(job.err_lines) - len(counted(job))
    lost = f"ended after {job.seconds:.1f} s (join_timeout 20 s), {waits} progress line(s)"
    return c.result(job, lost, judge(job, refuse=True, names=("join_timeout",)))


def h5(c: Case) -> Result:
    """Process 1 alone adds model.hidden=(8,8,8): both stop with one line naming the field."""
    wd, port = c.root / "run", of.free_port()
    procs = [mh_start(c, wd, port, 0), mh_start(c, wd, port, 1, "--config.model.hidden=(8,8,8)")]
    for p in procs:
        p.wait()
    lost = f"checkpoints {of.ckpt_steps(wd)}; ended after {procs[0].seconds:.1f} / "
    lost += f"{procs[1].seconds:.1f} s"
    each = [judge(p, refuse=True, names=("model.hidden",)) for p in procs]
    return c.result(procs, lost, worst(*each))


def mh_alone(coordinator: str, pid: int, *names: str) -> Callable:
    """H07 / H08: one process with a bad coordinator address or index: one line."""

    def case(c: Case) -> Result:
        cmd = mh_cmd(c, c.root / "run", coordinator.format(port=of.free_port()), pid)
        job = c.run(cmd, env=MH_ENV, timeout=120)
        lost = f"ended after {job.seconds:.1f} s"
        return c.result(job, lost, judge(job, refuse=True, names=names))

    return case


def h09(c: Case) -> Result:
    """Both processes given process_id=0: the second stops on the workdir lock, the first waits
    with progress lines and ends after train.join_timeout."""
    wd, port = c.root / "run", of.free_port()
    first = mh_start(c, wd, port, 0, *MH_BOUNDS, tag="first")
    first.wait_until(lambda: "waiting for the others" in first.err_path.read_text(), timeout=90)
    second = mh_start(c, wd, port, 0, *MH_BOUNDS, tag="second")
    second.wait(120)
    of.wait_more(first, 120)
    lost = f"first ended after {first.seconds:.1f} s (join_timeout 20 s), second after "
    lost += f"{second.seconds:.1f} s"
    verdict = worst(
        judge(first, refuse=True, names=("join_timeout",)),
        judge(second, refuse=True, names=("in use by pid",)),
    )
    return c.result([first, second], lost, verdict)


# --------------------------------------------------------------------------- S: sample


def s02(c: Case) -> Result:
    """A 30-million-sample draw, SIGTERM after 15 s: it stops, no partial output file."""
    c.copy("ddgan")
    path, flag = c.out()
    job = c.start(c.cli("sample", DDGAN, "--num=30000000", flag))
    job.wait_until(lambda: False, timeout=15)
    if job.alive():
        job.p.send_signal(signal.SIGTERM)
    job.wait()
    left = sorted(p.name for p in path.parent.iterdir())
    finished = job.rc == 0 and path.exists()
    stopped = job.rc in (143, -15)
    lost = f"files in the output folder: {left or 'none'}"
    ok = finished or (stopped and not left)
    verdict = ("traceback", "") if job.traceback else ("clean", "") if ok else ("lost", "")
    return c.result(job, lost, verdict)


# --------------------------------------------------------------------------- BS: base stage


def tilt(c: Case, base) -> list[str]:
    """The review's `tilt_cli.py train --config tilt_cfg.py` with `method.base_workdir=base`."""
    cfg = c.root / "tilt_cfg.py"
    cfg.write_text(TILT_CFG)
    return [of.PY, "-c", TILT_CODE, "train", "--config", str(cfg),
            f"--workdir={c.root / 'run'}", f"--config.method.base_workdir={base}"]  # fmt: skip


def stage(prepare: Callable[[Case], Path], *names: str) -> Callable:
    """A case: a tilt2d stage on the base `prepare(c)` gives; refused naming `names`."""
    return lambda c: c.refuse(tilt(c, prepare(c)), *names)


def _cut_base_config(c: Case) -> Path:
    wd = c.copy("gan", "base")
    text = (wd / "config.json").read_text()
    (wd / "config.json").write_text(text[:29])
    return wd


def _no_checkpoints(c: Case) -> Path:
    base = c.root / "bs4base"
    base.mkdir()
    shutil.copy2(c.bases["gan"] / "config.json", base / "config.json")
    return base


def bs6(c: Case) -> Result:
    """The base still training (its lock held): the stage stops in one line."""
    base = c.root / "base"
    cmd = [*c.ctx.cli("train", GAN), f"--workdir={base}", *GAN_BASE, *of.F,
           "--config.train.num_steps=1000000", "--config.train.ckpt_every=200"]  # fmt: skip
    live = c.start(cmd, "base")
    came = live.wait_until(lambda: bool(of.ckpt_steps(base)), timeout=150)
    job = c.run(tilt(c, base))
    alive = live.alive()
    live.kill()
    made = of.ckpt_steps(c.root / "run")
    lost = f"base checkpoint came: {came}; base still training during the stage: {alive}; "
    lost += f"stage checkpoints written: {made or 'none'}"
    return c.result(job, lost, judge(job, refuse=True, names=("still training",)))


# --------------------------------------------------------------------------- the 83 cases


def T(config, *args):
    return lambda c: c.cli("train", config, *args)


def S(config, *args):
    return lambda c: c.cli("sample", config, "--num=10", *args)


def E(config, *args):
    return lambda c: c.cli("evaluate", config, *args)


SPECS = [
    Spec("N01", "T_ddgan diffusion_steps=0 (T=0; the review's method.num_steps)", "clean",
         new_field(DDGAN, "--config.method.diffusion_steps=0", "diffusion_steps")),
    Spec("N02", "T_shortrun_ebm/swissroll langevin_steps=0 (K=0; review: num_steps)", "clean",
         new_field(SRE, "--config.method.langevin_steps=0", "langevin_steps")),
    Spec("N03", "short-run EBM method.step=-0.1", "clean",
         new_field(SRE, "--config.method.step=-0.1", r"method\.step")),
    Spec("N04", "T_glf/digits method.variant=vae", "clean",
         new_field(GLF, "--config.method.variant=vae", "variant")),
    Spec("N05", "GLF model.latent=1", "clean", new_field(GLF, "--config.model.latent=1", "latent")),
    Spec("N06", "DDGAN model.hidden=16 (a scalar for a tuple field)", "clean", n06),
    Spec("N07", 'DDGAN model.hidden=(16,"a")', "clean",
         new_field(DDGAN, '--config.model.hidden=(16,"a")', "hidden")),
    Spec("N08", "T_fdrl/toy2d method.step_size=0", "clean",
         new_field(FDRL, "--config.method.step_size=0", "step_size")),
    Spec("N09", "DDGAN beta_max=0.05 (below beta_min)", "clean",
         new_field(DDGAN, "--config.method.beta_max=0.05", "beta_max")),
    Spec("N10", "DDGAN model.network=ncsnpp on 2-D data", "clean",
         new_field(DDGAN, "--config.model.network=ncsnpp", "ncsnpp")),
    Spec("N11", "short-run EBM step=inf sampler=euler", "clean",
         lambda c: c.refuse(c.cli("train", SRE, "--config.method.step=inf",
                                  "--config.method.sampler=euler"), r"method\.step")),
    Spec("N12", "DDGAN method.offset=nan", "clean",
         new_field(DDGAN, "--config.method.offset=nan", "offset")),
    Spec("N13", "GLF sample.temperature=inf (train)", "silent",
         new_field(GLF, "--config.sample.temperature=inf", "temperature")),
    Spec("N14", "T_ddgan/fashion_mnist model.disc=foo", "clean",
         new_field(CONF + "ddgan/fashion_mnist.py", "--config.model.disc=foo", "disc")),
    Spec("N15", "short-run EBM objective=max_likelihood with sampler=euler", "clean",
         lambda c: c.refuse(c.cli("train", SRE, "--config.method.objective=max_likelihood",
                                  "--config.method.sampler=euler"), "max_likelihood|objective")),
    Spec("R01", "resume the GLF run with T_ddgan/25gaussians", "clean",
         on_copy("glf", T(DDGAN), "resume refused", "glf", "ddgan")),
    Spec("R02", "S_ddgan on the GLF run", "clean",
         on_copy("glf", S(DDGAN), "glf|ddgan|does not match", out=True)),
    Spec("R03", "E_shortrun_ebm/swissroll on the DDGAN run", "clean",
         on_copy("ddgan", E(SRE), "ddgan|shortrun|does not match")),
    Spec("R04", "S_ddgan diffusion_steps=1 on a T=4 run", "silent",
         on_copy("ddgan", S(DDGAN, "--config.method.diffusion_steps=1"), "diffusion_steps",
                 out=True)),
    Spec("R05", "resume the DDGAN run with diffusion_steps=1", "clean",
         on_copy("ddgan", T(DDGAN, "--config.method.diffusion_steps=1",
                            "--config.train.num_steps=8"), "diffusion_steps")),
    Spec("R06", "resume the GLF run with method.variant=vae_flow_prior", "clean",
         on_copy("glf", T(GLF, "--config.method.variant=vae_flow_prior",
                          "--config.train.num_steps=6"), "variant")),
    Spec("D01", "data_fit.npz cut to 200 B, then resume train", "traceback",
         damaged_fit("cut", "train", r"data_fit\.npz")),
    Spec("D02", "data_fit.npz = 300 random bytes, then sample", "unclear",
         damaged_fit("garbage", "sample", r"data_fit\.npz")),
    Spec("D03", "data_fit.npz empty (0 B), then sample", "traceback",
         damaged_fit("empty", "sample", r"data_fit\.npz")),
    Spec("D04", "data_fit.npz deleted, then resume train", "clean", d04),
    Spec("D05", "data_fit.npz with NaN in prior_mean, then sample", "silent",
         damaged_fit("nan", "sample", r"data_fit\.npz")),
    Spec("D06", "data_fit.npz with prior_mean of shape (3,), then evaluate", "clean",
         damaged_fit("shape", "evaluate", "prior_mean")),
    Spec("D07", "D05's NaN fit, then resume train", "clean", damaged_fit("nan", "train")),
    Spec("F01", "S_fdrl/fashion_translation --from a [5,28,28,1] file (run: 32×32)", "clean",
         from_file(images((5, 28, 28, 1)), "--from")),
    Spec("F02", "--from a text file named .npy", "unclear", from_file(odd_file("text"), "--from")),
    Spec("F03", "--from an .npz", "unclear", from_file(odd_file("npz"), "--from")),
    Spec("F04", "--from an empty [0,32,32,1] array", "unclear",
         from_file(images((0, 32, 32, 1)), "--from")),
    Spec("F05", "--from with one NaN pixel", "silent",
         from_file(images((5, 32, 32, 1), fill=_nan_pixel), "--from")),
    Spec("F06", "--from float images in 0..255", "silent",
         from_file(images((5, 32, 32, 1), kind="0..255"), "--from")),
    Spec("F07", "--from an object-dtype .npy", "unclear", from_file(odd_file("object"), "--from")),
    Spec("F08", "--from uint8 0..255", "silent",
         from_file(images((5, 32, 32, 1), kind="uint8"), "--from")),
    Spec("F09", "--from on a GLF run", "clean",
         from_file(images((5, 8, 8, 1)), "glf", base="glf", config=GLF)),
    Spec("F10", "--from a missing file", "clean",
         from_file(odd_file("missing"), "no such file|does not exist")),
    Spec("F11", "--from a directory", "clean", from_file(odd_file("directory"), "directory")),
    Spec("E01", "E_glf/digits --step abc", "clean", e_step("abc", "step")),
    Spec("E02", "--step=-1", "clean", e_step("-1", "step")),
    Spec("E03", "--step 3 (steps 2 and 4 exist)", "clean", e_step("3", "step 3")),
    Spec("E04", "--step 2.5", "clean", e_step("2.5", "step")),
    Spec("E05", "--step 99999999999999999999999", "clean",
         e_step("99999999999999999999999", "step")),
    Spec("E06", "--step 2 (an older step)", "clean", e06),
    Spec("E08", "E_glf EA, SIGTERM once round_0005 exists, then the same command", "clean",
         interrupted_eval(signal.SIGTERM)),
    Spec("E09", "the same with kill -9", "clean", interrupted_eval(signal.SIGKILL)),
    Spec("E10", "two E_glf EA on one workdir at once", "clean", e10),
    Spec("E11", "eval/ on a 300 KB tmpfs (the reference features do not fit)", "unclear",
         disk_full("300k", precopy=False)),
    Spec("E12", "eval/ on a 1.1 MB tmpfs, reference pre-copied (a round does not fit)", "clean",
         disk_full("1100k", precopy=True)),
    Spec("E13", "E_glf eval.round_size=0", "traceback",
         on_copy("glf", E(GLF, "--config.eval.round_size=0"), "round_size")),
    Spec("E14", "E_glf eval.batch_size=0", "unclear",
         on_copy("glf", E(GLF, "--config.eval.batch_size=0"), "batch_size")),
    Spec("E15", "round_0003.npz cut to 5 KB, metrics.json removed, then E_glf EA", "traceback",
         e15),
    Spec("E16", "--step 2 where checkpoint 2 is truncated", "clean", e16),
    Spec("U01", "curves --workdir a folder with config.json only", "clean",
         curves_refused(_config_only, r"metrics\.jsonl")),
    Spec("U02", "curves on an empty metrics.jsonl", "clean",
         curves_refused(_emptied_metrics, r"no run logged|empty|metrics\.jsonl")),
    Spec("U03", "curves: last metrics.jsonl line cut short (15 B)", "traceback",
         curves_ok(_cut_row, lambda c: c.wd / "curves.png", max_lines=1)),
    Spec("U04", "curves: config.json cut short", "traceback",
         curves_refused(_cut_config, r"config\.json")),
    Spec("U05", "curves --workdir '$TMP/u05=x' (a path holding '=')", "unclear",
         curves_ok(_equals_path, lambda c: c.wd / "curves.png")),
    Spec("U06", "curves --keys loss_x on the DDGAN run", "clean",
         curves_refused(lambda c: c.copy("ddgan"), "loss_x", keys=("loss_x",))),
    Spec("U07", "curves --out $TMP/u07/deep/c.png (folders missing)", "clean",
         curves_ok(_deep_out, lambda c: c.root / "u07" / "deep" / "c.png")),
    Spec("W01", "train, sample, evaluate, curves in '$TMP/wd ünï cødé/run 1'", "clean", w01),
    Spec("W02", "T_ddgan --workdir a regular file", "unclear",
         lambda c: c.refuse(c.cli("train", DDGAN, wd=_a_file(c)), "not a directory|is a file")),
    Spec("W03", "E_ddgan --workdir a regular file", "unclear",
         lambda c: c.refuse(c.cli("evaluate", DDGAN, wd=_a_file(c)), "not a directory|is a file")),
    Spec("W04", "DDGAN run's last metrics.jsonl row cut short, resumed to 8, then curves", "lost",
         w04),
    Spec("W05", "tb/ replaced by a regular file, then resume", "clean", w05),
    Spec("H1", "MH, kill -9 of process 1 after checkpoint 20; then both restarted", "traceback",
         mh_killed(1)),
    Spec("H2", "MH running; the same two commands launched again", "lost", h2),
    Spec("H3", "MH, kill -9 of process 0 (the coordinator)", "traceback", mh_killed(0)),
    Spec("H4", "MH with only process 0 started (join_timeout 20, heartbeat 10)", "hang", h4),
    Spec("H5", "MH where process 1 alone adds model.hidden=(8,8,8)", "traceback", h5),
    Spec("H07", "MH with process_id=2 of 2", "clean",
         mh_alone("127.0.0.1:{port}", 2, "process_id")),
    Spec("H08", "train.coordinator=127.0.0.1 (no port)", "unclear",
         mh_alone("127.0.0.1", 0, "coordinator", "port")),
    Spec("H09", "MH with both processes given process_id=0 (join_timeout 20)", "hang", h09),
    Spec("S01", "S_ddgan --num 3000000000 eval.batch_size=1000000 (24 GB)", "silent",
         on_copy("ddgan", lambda c: c.cli("sample", DDGAN, "--num=3000000000",
                                          "--config.eval.batch_size=1000000"), "--num", out=True)),
    Spec("S02", "S_ddgan --num 30000000, SIGTERM after 15 s", "clean", s02),
    Spec("S03", "S_glf sample.temperature=inf --num 8", "silent",
         on_copy("glf", S(GLF, "--config.sample.temperature=inf"), "temperature", out=True)),
    Spec("BS1", "tilt2d stage, base_workdir=$TMP/nowhere", "clean",
         stage(lambda c: c.root / "nowhere", "base_workdir")),
    Spec("BS2", "tilt2d stage on the GLF run", "clean",
         stage(lambda c: c.copy("glf", "base"), "glf")),
    Spec("BS3", "the base's config.json cut short", "unclear",
         stage(_cut_base_config, r"config\.json", "base")),
    Spec("BS4", "the base has config.json but no checkpoints", "clean",
         stage(_no_checkpoints, "checkpoint")),
    Spec("BS5", "base_workdir is a regular file", "clean",
         stage(_a_file, "afile")),
    Spec("BS6", "the base is still training (gan2d, num_steps=1000000)", "silent", bs6),
]  # fmt: skip


# --------------------------------------------------------------------------- the page


def totals(rows: list[Result], key: str) -> dict[str, dict[str, int]]:
    """{area: {verdict: count}} of `rows` by `key` ("before" or "verdict")."""
    out = {a: {v: 0 for v in (*VERDICTS, "not run")} for a in AREAS}
    for r in rows:
        v = getattr(r, key)
        out[r.area][v if v in VERDICTS else "not run"] += 1  # skipped, or the benchmark failed
    return out


def totals_table(rows: list[Result]) -> list[str]:
    """The review's Totals table, each cell `before → now`."""
    before, now = totals(rows, "before"), totals(rows, "verdict")
    cols = [*VERDICTS, "not run"]
    lines = ["| area | cases | " + " | ".join(cols) + " |", "|---|---" + "|---" * len(cols) + "|"]
    for area, title in (*AREAS.items(), ("all", "**all**")):
        pick = AREAS if area == "all" else (area,)
        n = sum(1 for r in rows if r.area in pick)
        cells = []
        for v in cols:
            b, a = (sum(t[x][v] for x in pick) for t in (before, now))
            cells.append(f"{b} → **{a}**" if a != b else str(a))
        lines.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
    return lines


def case_rows(rows: list[Result]) -> list[str]:
    head = ["| # | case | command | rc | err | decisive line | s | lost (on disk) | hang | "
            "verdict | 2026-12-06 |", "|---" * 11 + "|"]  # fmt: skip
    out = []
    for r in rows:
        verdict = r.verdict if r.verdict == "clean" else f"**{r.verdict}**"
        verdict += f": {r.why}" if r.why else ""
        command = "`" + r.command.replace("|", "\\|") + "`" if r.command else "—"  # as is
        cells = [r.case, r.summary, r.rc, r.err_lines, r.decisive, r.seconds, r.lost,
                 "yes" if r.hang else "no", verdict, r.before]  # fmt: skip
        cells = [md_cell(x) for x in cells]
        out.append("| " + " | ".join([*cells[:2], command, *cells[2:]]) + " |")
    return head + out


def markdown(meta: dict) -> str:
    rows = [Result(**r) for r in meta["rows"]]
    setup = [Result(**r) for r in meta["setup"]]
    head = [
        "# Operator faults, round two (issue #30): the review of 2026-12-06 re-run",
        "",
        f"- date: {meta['date']}; commit: {meta['commit']}; {meta['machine']}",
        f"- command: `{meta['command']}`; total {meta['seconds_total']:.0f} s; timeout "
        f"{of.TIMEOUT} s per process (HANG = killed at it); the review: `{REVIEW}`",
        "- T_x / S_x / E_x = `python -m experiments.train / sample / evaluate --config "
        "experiments/configs/x`; $TMP = the case's fresh temporary folder; EA = "
        "`--config.eval.num_samples=4000 --config.eval.round_size=200 "
        '--config.eval.metrics=("fd",)`; MH = 2 processes × 1 CPU device of DDGAN 25 Gaussians '
        "on 127.0.0.1 (a free port each case); tilt_cli.py = `python -c` registering "
        "tests/test_base_stage.py's tilt2d double, then `experiments.train`",
        "- verdicts by the review's rules: clean (one clear line, or the correct behaviour), "
        "unclear (a line that does not name what the case is about, or several lines), "
        "traceback, silent (a bad input accepted with exit 0), lost, hang; multi-host join "
        "progress lines (`waiting for the others`) are not counted. err: non-empty stderr lines "
        "(` / ` between the processes of one case); lost: checked on disk after the run",
        "",
        "## Totals (2026-12-06 → now)",
        "",
        *totals_table(rows),
        "",
        "## Cases",
        "",
        *case_rows(rows),
        "",
        "## Setup (not counted)",
        "",
        "| run | command | rc | checked | status |",
        "|---|---|---|---|---|",
        *(
            f"| {md_cell(r.case)} | `{r.command}` | {r.rc} | {md_cell(r.lost)} | "
            f"{md_cell(r.verdict)} |"
            for r in setup
        ),  # fmt: skip
    ]
    return "\n".join(head) + "\n"


# --------------------------------------------------------------------------- main


def run_case(spec: Spec, root: Path, bases: dict) -> Result:
    """One case in its fresh folder; a failure of the benchmark itself is recorded."""
    c = Case(spec, root / spec.case, bases)
    try:
        return spec.fn(c)
    except Exception as e:
        return Result(spec.case, spec.area, spec.summary, spec.before, verdict="error",
                      why=f"the benchmark failed: {type(e).__name__}: {e}")  # fmt: skip
    finally:
        c.ctx.close()


def echo(r: Result) -> None:
    print(f"{r.case:5s} {r.verdict:9s} (was {r.before:9s}) rc {r.rc:10s} err {r.err_lines:7s} "
          f"{r.seconds}s | {r.decisive[:110]} | {r.lost[:140]}"
          f"{' | ' + r.why if r.why else ''}", flush=True)  # fmt: skip


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", action="store_true", help="write docs/bench/operator_faults_round2.*")
    ap.add_argument("--cases", default="", help="comma-separated case ids (default: all 83)")
    ap.add_argument("--areas", default="", help="comma-separated areas, e.g. N,R,BS")
    args = ap.parse_args()
    known = {s.case for s in SPECS}
    args.chosen = [x for x in args.cases.split(",") if x]
    areas = [x for x in args.areas.split(",") if x]
    if any(x not in known for x in args.chosen) or any(a not in AREAS for a in areas):
        ap.error(f"choose cases from {sorted(known)} and areas from {list(AREAS)}")
    args.specs = [s for s in SPECS if (not args.chosen or s.case in args.chosen)
                  and (not areas or s.area in areas)]  # fmt: skip
    return args


def main():
    args = parse_args()
    t0, commit = time.perf_counter(), git_state()
    root = Path(tempfile.mkdtemp(prefix="operator_faults2_"))
    try:
        bases, setup = train_bases(root / "bases")
        for r in setup:
            echo(r)
        rows = []
        for spec in args.specs:
            rows.append(run_case(spec, root / "cases", bases))
            echo(rows[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t0
    end = git_state()
    meta = {
        "date": date.today().isoformat(),
        "commit": commit if end == commit else f"{commit} (at the start; {end} at the end)",
        "machine": f"{os.cpu_count()} CPU cores (shared), user id {os.geteuid()}",
        "command": "python -m benchmarks.operator_faults_round2"
        + (" --out" if args.out else "")
        + (f" --cases {args.cases}" if args.cases else "")
        + (f" --areas {args.areas}" if args.areas else ""),
        "seconds_total": round(total, 1),
        "setup": [asdict(r) for r in setup],
        "rows": [asdict(r) for r in rows],
    }
    now = totals(rows, "verdict")
    print(f"\n{len(rows)} cases in {total:.0f} s: " + ", ".join(
        f"{v} {sum(t[v] for t in now.values())}" for v in (*VERDICTS, "not run")))  # fmt: skip
    if args.out:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "operator_faults_round2.json").write_text(json.dumps(meta, indent=1))
        (OUT_DIR / "operator_faults_round2.md").write_text(markdown(meta))
        print(f"written: {OUT_DIR / 'operator_faults_round2.md'}, .json")


if __name__ == "__main__":
    main()
