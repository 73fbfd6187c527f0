"""Operator faults (issue #10): the CLIs (`experiments.train` / `sample` / `evaluate`) run as real
subprocesses under the faults an operator meets, each case checked on disk.

Shared by `tests/test_operator_faults.py` (one pytest test per case, on VAPO and on a second
recipe where the recipe matters) and `python -m benchmarks.operator_faults --out`, which runs the
same case functions and writes the table `docs/bench/operator_faults.md`.

A case function takes a `Ctx` (a scratch directory, the recipe under test, the trained base run
when the case needs one) and returns `Row`s: what the process printed (exit status, stderr /
stdout line counts, the decisive line), what was lost (checked on disk) and `ok` with `why` it
is not. Every process is started through the `Ctx`, which kills what is still running and
unmounts its tmpfs file systems on `close()`.
"""

import atexit
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TIMEOUT = 180  # seconds per process (a process past it is killed and recorded as HANG)
F = ["--config.train.steps_per_call=1", "--config.train.sample_every=0"]
LONG = 1_000_000  # num_steps of the runs that are interrupted
BASE_STEPS = 200  # the reused run: checkpoints 100, 150, 200 (ckpt_every 50, keep 3)
CIFAR = "experiments/configs/vapo/cifar10.py"
# `python -m experiments.<argv[1]> <argv[2:]>` inside tfds' mock data (32 random images per
# split); the mock's own "Variant folder ... has no dataset_info.json" log lines are filtered out
MOCK_CODE = (
    "import logging, runpy, sys; import tensorflow_datasets as tfds; "
    "logging.getLogger('absl').addFilter("
    "lambda r: 'has no dataset_info.json' not in r.getMessage()); "
    "m = 'experiments.' + sys.argv[1]; sys.argv = [m, *sys.argv[2:]]; "
    "ctx = tfds.testing.mock_data(num_examples=32); ctx.__enter__(); "
    "runpy.run_module(m, run_name='__main__', alter_sys=True)"
)
MOCK = [PY, "-c", MOCK_CODE]
DECISIVE = ("error:", "warning:", "SIGTERM:", "SIGINT:", "taking over", "the run in ")


def _env() -> dict:
    """The CLIs' environment: CPU, one device (a test session's simulated device count is
    dropped), no Inception weights from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if k != "JAXGEN_INCEPTION_WEIGHTS"}
    env["JAX_PLATFORMS"] = "cpu"
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    if not env["XLA_FLAGS"]:
        del env["XLA_FLAGS"]
    return env


ENV = _env()


@dataclass(frozen=True)
class Recipe:
    """A recipe's cheap 2-D config and the few overrides the cases need."""

    name: str
    config: str
    blowup: tuple[str, ...]  # overrides that make the first steps non-finite
    network: tuple[str, str]  # (an override that changes the network, the field it changes)
    other: str  # a config of another recipe (resuming this recipe's run with it is refused)
    # a stage-two recipe: (the base recipe's config, its training overrides); the base is trained
    # once per process (`stage_base`) and every command of this recipe's config names it
    stage: tuple[str, tuple[str, ...]] | None = None


RECIPES = {
    "vapo": Recipe(
        "vapo",
        "experiments/configs/vapo/toy2d.py",
        ("--config.optim.potential.lr=1e6",),
        ("--config.model.hidden=(64,64,64)", "model.hidden"),
        "experiments/configs/fdrl/toy2d.py",
    ),
    # two networks (generator with BatchNorm statistics, discriminator), two optimizers, EMA on
    # G only: a state laid out unlike VAPO's; the cheapest non-VAPO 2-D config to train
    "gan2d": Recipe(
        "gan2d",
        "experiments/configs/gan2d/toy2d.py",
        ("--config.optim.disc.lr=1e6",),
        ("--config.model.gen_hidden=(64,64)", "model.gen_hidden"),
        "experiments/configs/vapo/toy2d.py",
    ),
    # issue #30: the recipes that landed since (VAEBM's own base-stage faults:
    # tests/test_run_checks.py, tests/test_base_stage.py)
    "ddgan": Recipe(
        "ddgan",
        "experiments/configs/ddgan/25gaussians.py",
        ("--config.optim.disc.lr=1e6", "--config.optim.gen.lr=1e6"),
        ("--config.model.hidden=(32,32,32)", "model.hidden"),
        "experiments/configs/vapo/toy2d.py",
    ),
    "glf": Recipe(
        "glf",
        "experiments/configs/glf/digits.py",
        ("--config.optim.ae.lr=1e6", "--config.optim.flow.lr=1e6"),
        ("--config.model.latent=6", "model.latent"),
        "experiments/configs/vapo/toy2d.py",
    ),
    "shortrun_ebm": Recipe(
        "shortrun_ebm",
        "experiments/configs/shortrun_ebm/swissroll.py",
        # 1e6 recovers after a skip; at 1e30 the energy blows up, and its adaptive ODE solve
        # used to retry rejected steps until max_steps (a HANG row, 2026-12-07): fixed by
        # jaxgen.samplers.ode.DT_MIN
        ("--config.optim.energy.lr=1e30",),
        ("--config.model.hidden=(64,64,64,64)", "model.hidden"),
        "experiments/configs/vapo/toy2d.py",
    ),
    "fdrl": Recipe(
        "fdrl",
        "experiments/configs/fdrl/toy2d.py",
        ("--config.optim.ratio.lr=1e30",),
        ("--config.model.hidden=(32,32)", "model.hidden"),
        "experiments/configs/vapo/toy2d.py",
    ),
    # VAEBM's base recipe
    "vae": Recipe(
        "vae",
        "experiments/configs/vae/25gaussians.py",
        ("--config.optim.vae.lr=1e30",),
        ("--config.model.hidden=(64,64)", "model.hidden"),
        "experiments/configs/vapo/toy2d.py",
    ),
    # stage two over a 200-step `vae/25gaussians` base (energy + EMA-free Langevin in ε-space)
    "vaebm": Recipe(
        "vaebm",
        "experiments/configs/vaebm/25gaussians.py",
        ("--config.optim.energy.lr=1e30",),
        ("--config.model.hidden=(64,64,64)", "model.hidden"),
        "experiments/configs/vapo/toy2d.py",
        stage=("experiments/configs/vae/25gaussians.py", ("--config.train.num_steps=200",)),
    ),
}

_STAGE_BASES: dict[str, Path] = {}


def stage_base(recipe: Recipe) -> Path | None:
    """The finished base run of a stage-two recipe (trained on first use, once per process, in
    a temporary directory removed at exit); None for a one-stage recipe."""
    if recipe.stage is None:
        return None
    if recipe.name not in _STAGE_BASES:
        root = Path(tempfile.mkdtemp(prefix=f"stage_base_{recipe.name}_"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        config, overrides = recipe.stage
        cmd = [PY, "-m", "experiments.train", "--config", config, *F, *overrides,
               f"--workdir={root / 'base'}"]  # fmt: skip
        r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"the {recipe.name} base run failed ({shlex.join(cmd)}): "
                               f"{r.stderr[-1500:]}")  # fmt: skip
        _STAGE_BASES[recipe.name] = root / "base"
    return _STAGE_BASES[recipe.name]


def recipe_cmd(recipe: Recipe, module: str, config: str | None = None) -> list[str]:
    """`python -m experiments.<module> --config <config>`; with the recipe's own config, a
    stage-two recipe's base run is named too."""
    cmd = [PY, "-m", f"experiments.{module}", "--config", config or recipe.config]
    base = stage_base(recipe) if config in (None, recipe.config) else None
    return cmd + ([f"--config.method.base_workdir={base}"] if base else [])


# --------------------------------------------------------------------------- processes


class Job:
    """One CLI process; stdout and stderr go to files (a pipe could fill and block it)."""

    def __init__(self, cmd, tag: str, logs: Path, *, env=None):
        self.cmd, self.tag = list(cmd), tag
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = logs / f"{tag}.out", logs / f"{tag}.err"
        self.t0 = time.perf_counter()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=env or ENV,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.hang, self.rc, self.seconds = False, None, None
        self.out = self.err = ""

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stdout_now(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_until(self, pred, timeout: float = 120) -> bool:
        """Poll `pred()` while the process runs; whether it came true in time."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and self.alive():
            if pred():
                return True
            time.sleep(0.05)
        return bool(pred())

    def wait(self, timeout: float = TIMEOUT) -> "Job":
        left = max(0.5, timeout - (time.perf_counter() - self.t0))
        try:
            self.p.wait(left)
        except subprocess.TimeoutExpired:
            self.hang = True
            self.p.kill()
            self.p.wait()
        self.seconds = time.perf_counter() - self.t0
        self.rc = self.p.returncode
        self.out = self.out_path.read_text(errors="replace")
        self.err = self.err_path.read_text(errors="replace")
        return self

    def kill(self) -> None:
        if self.alive():
            self.p.kill()
            self.p.wait()

    @property
    def out_lines(self) -> list[str]:
        return [x for x in self.out.splitlines() if x.strip()]

    @property
    def err_lines(self) -> list[str]:
        return [x for x in self.err.splitlines() if x.strip()]

    def lines(self, prefix: str) -> list[str]:
        return [x for x in self.out_lines + self.err_lines if x.startswith(prefix)]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err + self.out


# --------------------------------------------------------------------------- workdir checks


def ckpt_steps(workdir: Path) -> list[int]:
    d = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def tree_digest(path: Path) -> dict[str, int]:
    """{relative file: size} of every file under `path` (what a refusal must not change)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}


def read_bytes(path: Path) -> bytes | None:
    return Path(path).read_bytes() if Path(path).exists() else None


def file_md5(path: Path) -> str | None:
    """The MD5 hex digest of the file at `path` (None when there is none): what a refusal must
    leave unchanged, e.g. a run's `config.json`."""
    data = read_bytes(path) if Path(path).is_file() else None
    return None if data is None else hashlib.md5(data).hexdigest()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no process listens on now (a multi-host coordinator's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_more(job: Job, seconds: float) -> Job:
    """`job.wait`, allowing `seconds` from now (`Job.wait` counts its timeout from the start)."""
    return job.wait(time.perf_counter() - job.t0 + seconds)


def last_progress_step(text: str) -> int | None:
    steps = re.findall(r"^step (\d+)/", text, flags=re.M)
    return int(steps[-1]) if steps else None


def mangle(ckpt_dir: Path, how: str) -> int:
    """Truncate every file under `ckpt_dir` to 50 bytes, or overwrite it with random bytes of
    its own size; returns the number of files."""
    files = [p for p in Path(ckpt_dir).rglob("*") if p.is_file()]
    for p in files:
        if how == "truncate":
            with open(p, "r+b") as f:
                f.truncate(min(50, p.stat().st_size))
        else:
            p.write_bytes(os.urandom(p.stat().st_size))
    return len(files)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    case: str
    recipe: str
    name: str
    before: str
    command: str
    rc: str
    err_lines: int | None
    out_lines: int | None
    decisive: str
    seconds: float | None
    lost: str
    ok: bool
    why: str = ""
    stderr_head: list = field(default_factory=list)
    decisive_chars: int | None = None  # the full decisive line's length (the table cuts at 200)
    skip: str = ""  # why the case could not run here (no root, no tmpfs): a test skips


def decisive(job: Job, prefer: str | None = None) -> str:
    """The line an operator acts on: an `error:` / `SIGTERM:` / `SIGINT:` line, else the
    exception a traceback ends with, else a `warning:` / lock / finished line, else the last."""
    lines = job.err_lines + job.out_lines
    if prefer:
        hit = [x for x in lines if re.search(prefer, x)]
        if hit:
            return hit[0]
    hit = [x for x in lines if x.startswith(("error:", "SIGTERM:", "SIGINT:"))]
    if hit:
        return hit[0]
    if job.traceback:
        return job.err_lines[-1] if job.err_lines else "Traceback"
    hit = [x for x in lines if x.startswith(DECISIVE)]
    return (hit or job.err_lines or job.out_lines or ["(nothing printed)"])[0 if hit else -1]


def one_error(job: Job, rc: int = 2) -> tuple[bool, str]:
    """A refusal / failure: exit `rc`, exactly one stderr line `error: ...`, no traceback."""
    problems = []
    if job.rc != rc:
        problems.append(f"exit {job.rc}, expected {rc}")
    if job.traceback:
        problems.append("traceback")
    if len(job.err_lines) != 1 or not job.err_lines[0].startswith("error:"):
        problems.append(f"{len(job.err_lines)} stderr lines, not one `error:` line")
    return not problems, "; ".join(problems)


class Ctx:
    """One case's scratch directory `root`, the recipe under test, the trained base run (a
    directory the case copies, never changes), and every process and mount it started."""

    def __init__(self, root: Path, recipe: str = "vapo", base: Path | None = None, *, echo=True):
        self.root, self.recipe, self.base, self.echo = Path(root), RECIPES[recipe], base, echo
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: list[Job] = []
        self.mounts: list[Path] = []

    # commands
    def cli(self, module: str, config: str | None = None) -> list[str]:
        return recipe_cmd(self.recipe, module, config)

    @property
    def T(self) -> list[str]:
        return self.cli("train")

    def toy(self, wd, **train) -> list[str]:
        """`T F --workdir=wd --config.train.<k>=<v> ...`."""
        sets = [f"--config.train.{k}={v}" for k, v in train.items()]
        return [*self.T, *F, f"--workdir={wd}", *sets]

    def long_cmd(self, wd: Path, num_steps: int = LONG) -> list[str]:
        return self.toy(wd, num_steps=num_steps, ckpt_every=50, log_every=10)

    # processes, mounts
    def start(self, cmd, tag: str, *, env=None) -> Job:
        job = Job(cmd, tag, self.root / "logs", env=env)
        self.jobs.append(job)
        return job

    def run(self, cmd, tag: str, *, env=None, timeout: float = TIMEOUT) -> Job:
        return self.start(cmd, tag, env=env).wait(timeout)

    def mount(self, target: Path, options: str) -> str | None:
        """Mount a tmpfs at `target`; None, or why it could not."""
        if os.geteuid() != 0:
            return "not root: mounting a tmpfs needs root"
        target.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            return (r.stderr or r.stdout).strip() or f"mount exited {r.returncode}"
        self.mounts.append(target)
        return None

    def close(self) -> None:
        """Kill what still runs, unmount what was mounted."""
        for job in self.jobs:
            job.kill()
        while self.mounts:
            subprocess.run(["umount", str(self.mounts.pop())], capture_output=True)

    # directories
    def work(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def copy_base(self, name: str) -> Path:
        if self.base is None:
            raise ValueError("this case needs the base run (Ctx(..., base=...))")
        dst = self.root / name
        shutil.copytree(self.base, dst)
        return dst

    # rows
    def short(self, text: str) -> str:
        """Commands and lines with the scratch root, the interpreter and the toy command
        abbreviated."""
        T = self.T
        text = text.replace(shlex.join(MOCK), "mock").replace(MOCK_CODE, "<mock>")
        text = text.replace(shlex.join(T + F), "T F").replace(shlex.join(T), "T")
        text = text.replace(shlex.join(F), "F")
        if self.base is not None:
            text = text.replace(str(self.base), "$BASE")
        if self.recipe.name in _STAGE_BASES:
            text = text.replace(str(_STAGE_BASES[self.recipe.name]), "$STAGE_BASE")
        return text.replace(str(self.root), "$TMP").replace(PY, "python")

    def row(self, case, name, before, job: Job | None, *, lost, ok, why="", shown=None,
            command=None, skip="") -> Row:  # fmt: skip
        before = before if self.recipe.name == "vapo" else "—"  # the findings were on VAPO
        if job is None:
            row = Row(case, self.recipe.name, name, before, command or "", "—", None, None,
                      shown or "", None, lost, ok, why, skip=skip)  # fmt: skip
        else:
            line = shown if shown is not None else decisive(job)
            row = Row(
                case,
                self.recipe.name,
                name,
                before,
                self.short(command or shlex.join(job.cmd)),
                "HANG" if job.hang else str(job.rc),
                len(job.err_lines),
                len(job.out_lines),
                self.short(line)[:200],
                round(job.seconds, 1),
                lost,
                ok and not job.hang,
                why if not job.hang else f"ran past {TIMEOUT} s; {why}",
                [self.short(x)[:300] for x in job.err_lines[:6]],
                len(self.short(line)),
            )
        if self.echo:
            print(row_line(row), flush=True)
        return row


def row_line(row: Row) -> str:
    mark = "ok " if row.ok else "NO "
    return (
        f"[{mark}] {row.case:4s} {row.recipe:6s} {row.name}: rc {row.rc}, {row.err_lines} err / "
        f"{row.out_lines} out lines, {row.seconds} s; {row.decisive[:120]} | lost: {row.lost}"
        f"{' | ' + row.why if row.why else ''}"
    )


def skipped(ctx: Ctx, case: str, name: str, why: str, command: str) -> Row:
    return ctx.row(case, name, "—", None, lost="not run", ok=False, why=why, command=command,
                   skip=why)  # fmt: skip


# --------------------------------------------------------------------------- cases


def base_run(ctx: Ctx) -> tuple[Path, Row]:
    """Case 0: the run the other cases copy (200 steps, checkpoints 100, 150, 200)."""
    wd = ctx.root / "base"
    job = ctx.run(ctx.toy(wd, num_steps=BASE_STEPS, ckpt_every=50, log_every=50, keep=3), "base")
    steps = ckpt_steps(wd)
    ok = job.rc == 0 and steps == [100, 150, 200]
    why = "" if ok else f"rc {job.rc}, checkpoints {steps}: {job.err[-1500:]}"
    row = ctx.row("0", "the reused run (200 steps)", "—", job, lost=f"checkpoints {steps}",
                  ok=ok, why=why)  # fmt: skip
    return wd, row


NONFINITE = {
    "skip": ("1", '6,529 "batch skipped" lines in 120 s, never stops'),
    "rollback": ("2", "rolled back to the same step 1,321 times in 120 s"),
}


def case_nonfinite(ctx: Ctx, policy: str) -> Row:
    """Cases 1, 2: a learning rate that blows up at once, under train.nonfinite=skip /
    rollback: exit 2 after max_nonfinite (3) failures, ≤ 3 lines, the last finite state saved."""
    case, before = NONFINITE[policy]
    wd = ctx.root / f"c{case}"
    extra = {"ckpt_every": 1} if policy == "rollback" else {}
    job = ctx.run([*ctx.toy(wd, nonfinite=policy, **extra), *ctx.recipe.blowup], f"c{case}")
    m = re.search(r"gave up at step (\d+)", job.err)
    reached, steps = (int(m.group(1)) if m else None), ckpt_steps(wd)
    warns = len(job.lines("warning:"))
    last = max(steps) if steps else 0
    saved = reached is not None and reached == last
    if reached is None:
        lost = f"? (checkpoints {steps})"
    elif policy == "skip":
        lost = f"{reached - last} steps after the last checkpoint ({last or 'none'}; checkpoints {steps})"  # noqa: E501
    else:
        lost = f"{reached - last} steps (checkpoints {steps})"
    ok, why = one_error(job)
    ok &= warns <= 3 and saved
    problems = [why] if why else []
    if warns > 3:
        problems.append(f"{warns} warning lines")
    if not saved:
        problems.append(f"gave up at step {reached}, newest checkpoint {last or 'none'}")
    blow = " ".join(x.removeprefix("--config.") for x in ctx.recipe.blowup)
    return ctx.row(case, f"{blow}, nonfinite={policy}", before, job, lost=lost, ok=ok,
                   why="; ".join(problems) or f"{warns} warning lines + 1 error line "
                   "(max_nonfinite=3)")  # fmt: skip


def interrupt(job: Job, wd: Path, sig, *, after=50) -> tuple[int | None, list[int], bool]:
    """Once a checkpoint of step `after` or later exists (and 20 more steps are logged), send
    `sig`; returns (progress step at the signal, checkpoints at the signal, whether the
    checkpoint came)."""
    came = job.wait_until(lambda: max(ckpt_steps(wd) or [0]) >= after, timeout=150)
    if came:
        job.wait_until(lambda: (last_progress_step(job.stdout_now()) or 0) >= after + 20, 20)
    at = last_progress_step(job.stdout_now())
    before = ckpt_steps(wd)
    if job.alive():
        job.p.send_signal(sig)
    return at, before, came


def signal_row(ctx: Ctx, a: Job, wd: Path, sig, case, name, before_text) -> tuple[Row, int | None]:
    """Send `sig` to the running trainer `a` once a checkpoint exists: exit 128 + signal, one
    `<SIGNAME>:` line on stderr, and a checkpoint of the step it stopped at. Returns the row and
    that step (None when it said none)."""
    at, before, came = interrupt(a, wd, sig)
    a.wait()
    m = re.search(r"stopped at step (\d+)", a.err)
    stopped, after = (int(m.group(1)) if m else None), ckpt_steps(wd)
    saved = bool(stopped is not None and after and max(after) == stopped)
    lost = (
        f"0 steps: signal at step ≥{at} (last periodic checkpoint {max(before or [0])}), "
        f"checkpoint {stopped} written"
        if saved
        else f"stopped at {stopped}, checkpoints {after}; signal at step ≥{at}"
    )
    name_ok = len(a.err_lines) == 1 and a.err_lines[0].startswith(f"{signal.Signals(sig).name}:")
    ok = came and a.rc == 128 + sig and saved and name_ok
    why = (
        ""
        if ok
        else f"checkpoint {came}; rc {a.rc}; {len(a.err_lines)} stderr lines; saved {saved}"
    )
    row = ctx.row(case, name, before_text, a, lost=lost, ok=ok, why=why,
                  command=shlex.join(ctx.long_cmd(wd)))  # fmt: skip
    return row, stopped


def case_sigterm(ctx: Ctx) -> dict[str, Row]:
    """Cases 5, 3, 3b on one run: a second trainer on the workdir is refused while the first
    runs (5); the first gets SIGTERM and saves the step it stopped at (3); the same command
    resumes from it (3b)."""
    rows = {}
    wd = ctx.root / "c3"
    a = ctx.start(ctx.long_cmd(wd), "c3_a")
    came = a.wait_until(lambda: bool(ckpt_steps(wd)), timeout=150)
    cfg = read_bytes(wd / "config.json")
    b = ctx.run(ctx.long_cmd(wd), "c5_b")
    a_alive = a.alive()
    same_cfg = read_bytes(wd / "config.json") == cfg
    named = f"pid {a.pid} on {socket.gethostname()}" in b.err
    ok, why = one_error(b)
    ok &= named and a_alive and same_cfg and came
    problems = [why] if why else []
    problems += [] if named else ["the line does not name the holder's pid and host"]
    problems += [] if came else ["the first trainer wrote no checkpoint"]
    rows["5"] = ctx.row(
        "5", "two trainers on one workdir (second one)", "both exit 0, interleaved metrics", b,
        lost=f"config.json unchanged: {same_cfg}; first trainer still running: {a_alive}",
        ok=ok, why="; ".join(problems),
    )  # fmt: skip

    rows["3"], stopped = signal_row(ctx, a, wd, signal.SIGTERM, "3", "SIGTERM mid-run",
                                    "rc 143, nothing printed, nothing saved")  # fmt: skip
    name = "… then the same command resumed"
    if stopped is None:
        rows["3b"] = ctx.row("3b", name, "—", None, lost="not run", ok=False,
                             why="SIGTERM named no step to resume from")  # fmt: skip
        return rows
    res = ctx.run(ctx.long_cmd(wd, stopped + 20), "c3_resume")
    resumed = f"resuming from {wd / 'checkpoints' / str(stopped)}, step {stopped}" in res.out
    done = f"done: step {stopped + 20}" in res.out
    ok = res.rc == 0 and resumed and done and not res.err_lines
    rows["3b"] = ctx.row(
        "3b", name, "—", res,
        lost=f"resumed at step {stopped}: {resumed}; reached {stopped + 20}: {done}", ok=ok,
        shown=next((x for x in res.out_lines if "resuming" in x), None),
        why="" if ok else f"rc {res.rc}, resumed {resumed}, done {done}, stderr {res.err_lines[:2]}",  # noqa: E501
    )  # fmt: skip
    return rows


def case_sigint(ctx: Ctx) -> dict[str, Row]:
    """Cases 4, 6a, 6b on one workdir: SIGINT saves the step it stopped at (4); the same
    command, killed with SIGKILL (6a), then restarted takes over the stale lock and resumes
    from the last periodic checkpoint (6b)."""
    rows = {}
    wd = ctx.root / "c4"
    a = ctx.start(ctx.long_cmd(wd), "c4")
    rows["4"], _ = signal_row(ctx, a, wd, signal.SIGINT, "4", "SIGINT (Ctrl-C) mid-run",
                              "KeyboardInterrupt traceback, nothing saved")  # fmt: skip
    after = ckpt_steps(wd)

    k = ctx.start(ctx.long_cmd(wd), "c6_killed")
    start = max(after) if after else 0
    nxt = (start // 50 + 1) * 50
    came = k.wait_until(lambda: max(ckpt_steps(wd) or [0]) >= nxt, timeout=150)
    if came:
        k.wait_until(lambda: (last_progress_step(k.stdout_now()) or 0) >= nxt + 20, 20)
    reached, ckpts = last_progress_step(k.stdout_now()), ckpt_steps(wd)
    k.p.send_signal(signal.SIGKILL)
    k.wait()
    last = max(ckpts) if ckpts else 0
    rows["6a"] = ctx.row(
        "6a", "a run killed with SIGKILL", "—", k,
        lost=f"≥{(reached or 0) - last} steps after checkpoint {last} (SIGKILL cannot be caught)",
        ok=k.rc == -9 and came, shown="(killed; nothing can be printed)",
        why="" if came else f"no checkpoint {nxt} before the kill",
    )  # fmt: skip
    r = ctx.run(ctx.long_cmd(wd, last + 20), "c6_restart")
    took = [x for x in r.out_lines + r.err_lines if x.startswith("taking over the lock")]
    resumed = f"resuming from {wd / 'checkpoints' / str(last)}, step {last}" in r.out
    done = f"done: step {last + 20}" in r.out
    ok = r.rc == 0 and len(took) == 1 and str(k.pid) in took[0] and resumed and done
    rows["6b"] = ctx.row(
        "6b", "… restarted (stale lock)", "—", r,
        lost=f"resumed from checkpoint {last}: {resumed}; reached {last + 20}: {done}", ok=ok,
        shown=took[0] if took else None,
        why="" if ok else f"rc {r.rc}, takeover lines {len(took)}, resumed {resumed}, done {done}",
    )  # fmt: skip
    return rows


def refusals(recipe: Recipe) -> dict[str, tuple]:
    """{case: (what, the command without --workdir, what the line must name)} of case 7."""
    T = recipe_cmd(recipe, "train")
    override, changed = recipe.network
    other = Path(recipe.other).parent.name
    return {
        "7a": (f"network ({override.removeprefix('--config.')})", [*T, override],
               (f"{changed} was",)),
        "7b": (f"recipe ({other} config on the {recipe.name} run)",
               [PY, "-m", "experiments.train", "--config", recipe.other],
               (f"'{recipe.name}'", f"'{other}'")),
        "7c": ("data.name=moons", [*T, "--config.data.name=moons"], ("data.name was",)),
        "7d": ("data.batch_size=128", [*T, "--config.data.batch_size=128"],
               ("data.batch_size was",)),
    }  # fmt: skip


def case_refusal(ctx: Ctx, case: str) -> Row:
    """Case 7: resuming the base run with a changed network / recipe / data is refused with one
    line naming the change, and no file of the run changes."""
    what, cmd, named = refusals(ctx.recipe)[case]
    wd = ctx.copy_base(f"c{case}")
    cfg, files = read_bytes(wd / "config.json"), tree_digest(wd)
    job = ctx.run([*cmd, f"--workdir={wd}", f"--config.train.num_steps={BASE_STEPS + 100}"],
                  f"c{case}")  # fmt: skip
    same_cfg, same = read_bytes(wd / "config.json") == cfg, tree_digest(wd) == files
    ok, why = one_error(job)
    ok &= same_cfg and same and "resume refused" in job.err
    shown = job.err.split("; use a new")[0]
    problems = [why] if why else []
    if "resume refused" not in job.err:
        problems.append("no `resume refused` line")
    if not (same_cfg and same):
        problems.append("the run's files changed")
    if not all(x in shown for x in named):
        problems.append(f"note: the line ({len(job.err.strip())} chars) does not name the "
                        f"change ({', '.join(named)}) before its suggestions")  # fmt: skip
    return ctx.row(
        case, f"resume with changed {what}",
        "config.json overwritten; data changes resumed silently", job,
        lost=f"config.json bytes unchanged: {same_cfg}; checkpoints {ckpt_steps(wd)} "
        f"(no file added or changed: {same})", ok=ok, why="; ".join(problems),
    )  # fmt: skip


def case_finished(ctx: Ctx) -> Row:
    """Case 8: a finished run resumed with fewer num_steps says so in one line, exit 0."""
    wd = ctx.copy_base("c8")
    files = tree_digest(wd)
    job = ctx.run([*ctx.T, f"--workdir={wd}", "--config.train.num_steps=100"], "c8")
    same = tree_digest(wd) == files
    msg = [x for x in job.out_lines + job.err_lines if "is finished" in x]
    ok = job.rc == 0 and len(msg) == 1 and len(job.out_lines + job.err_lines) == 1 and same
    return ctx.row(
        "8", "finished run resumed with fewer num_steps", "exit 0, no message", job,
        lost=f"nothing changed: {same}", ok=ok,
        why="" if ok else f"rc {job.rc}; {len(msg)} 'is finished' lines of "
        f"{len(job.out_lines + job.err_lines)}; unchanged {same}",
    )  # fmt: skip


BAD_CKPT = {  # case: (how the newest checkpoint is damaged, the CLI that meets it)
    "9a": ("truncate", "train"),
    "9b": ("truncate", "sample"),
    "9c": ("truncate", "evaluate"),
    "9d": ("corrupt", "train"),
    "9e": ("corrupt", "sample"),
    "9f": ("corrupt", "evaluate"),
}


def case_bad_checkpoint(ctx: Ctx, case: str) -> Row:
    """Case 9: the base run's newest checkpoint (200) truncated / overwritten with random bytes:
    train, sample and evaluate each move it aside intact with one warning line and use the one
    before (150)."""
    how, tool = BAD_CKPT[case]
    newest, older = BASE_STEPS, BASE_STEPS - 50
    wd = ctx.copy_base(f"c{case}")
    n = mangle(wd / "checkpoints" / str(newest), how)
    if tool == "train":
        cmd = ctx.toy(wd, num_steps=BASE_STEPS + 20)
    elif tool == "sample":
        cmd = [*ctx.cli("sample"), f"--workdir={wd}", "--num=100", f"--out={wd / 's.npy'}"]
    else:
        cmd = [*ctx.cli("evaluate"), f"--workdir={wd}", "--config.eval.num_samples=500"]
    job = ctx.run(cmd, f"c{case}")
    aside = wd / "checkpoints_unreadable" / str(newest)
    kept = aside.is_dir() and len([p for p in aside.rglob("*") if p.is_file()]) == n
    if tool == "train":
        used = f"resuming from {wd / 'checkpoints' / str(older)}" in job.out
        used &= f"done: step {BASE_STEPS + 20}" in job.out
        extra = f"{newest - older} steps retrained"
    elif tool == "sample":
        used = f'"step": {older}' in job.out
        extra = "samples written" if (wd / "s.npy").exists() else "no samples"
    else:
        mj = wd / "eval" / "metrics.json"
        step = json.loads(mj.read_text())["protocol"]["checkpoint_step"] if mj.exists() else None
        used, extra = step == older, f"metrics.json at step {step}"
    warns = job.lines("warning:")
    others = [x for x in job.err_lines if x not in warns]
    ok = job.rc == 0 and len(warns) == 1 and kept and used and not others
    problems = []
    if job.rc != 0:
        problems.append(f"rc {job.rc}")
    if len(warns) != 1:
        problems.append(f"{len(warns)} warning lines")
    if not kept:
        problems.append("not moved aside intact")
    if not used:
        problems.append(f"step {older} not used")
    if others:
        problems.append(f"{len(others)} more stderr line(s): {ctx.short(others[-1])[:300]}")
    return ctx.row(
        case, f"{how.rstrip('e')}ed newest checkpoint: {tool}",
        "all three stopped; ~60 lines of orbax tracebacks", job,
        lost=f"checkpoint {newest} kept in checkpoints_unreadable/ ({n} files): {kept}; "
        f"used {older}: {used}; {extra}", ok=ok, why="; ".join(problems),
        shown=warns[0] if warns else None,
    )  # fmt: skip


def case_disk_full(ctx: Ctx, tries: int = 1) -> list[Row]:
    """Case 10: the disk fills during a save (tmpfs of 300k; its output varied between runs:
    `tries` rows), then space is freed (the tmpfs grown to 20M) and the same command trains to
    the end (10d). Needs root."""
    rows, wd = [], None
    for n, case in enumerate(("10a", "10b", "10c")[:tries], 1):
        mnt = ctx.root / f"c{case}_tmpfs"
        name = f"disk full during a save (tmpfs 300k), try {n} of {tries}"
        failed = ctx.mount(mnt, "size=300k")
        if failed:
            return [skipped(ctx, case, name, f"mount failed: {failed}", "mount -t tmpfs")]
        wd = mnt / "run"
        job = ctx.run(ctx.toy(wd, num_steps=200, ckpt_every=10, log_every=10), f"c{case}")
        steps = ckpt_steps(wd)
        leftovers = (
            [p.name for p in (wd / "checkpoints").iterdir() if not p.name.isdigit()]
            if (wd / "checkpoints").is_dir()
            else []
        )
        m = re.search(r"could not write checkpoint \S*/(\d+)", job.err)
        failed_at = int(m.group(1)) if m else None
        full = "disk is full" in job.err or "No space left on device" in job.err
        ok, why = one_error(job)
        ok &= full
        problems = [why] if why else []
        if not full:
            problems.append("the line does not say the disk is full")
        elif failed_at is None:
            problems.append("note: the line does not name the checkpoint")
        if job.traceback:
            where = next((x for x in job.err_lines if not x.startswith("error:")), "")
            problems.append(f"after the error line: {ctx.short(where)[:100]}")
        last = max(steps) if steps else 0
        reached = failed_at or last_progress_step(job.out) or 0
        rows.append(ctx.row(
            case, name, "943 stderr lines, cause at line 149", job,
            lost=f"≥{reached - last} steps since the last complete checkpoint "
            f"({last or 'none'}; the save of step {failed_at or '?'} failed); "
            f"left in checkpoints/: {leftovers or 'nothing'}", ok=ok, why="; ".join(problems),
        ))  # fmt: skip

    # space freed (the last tmpfs grown to 20M): the same command, as the message promises
    name = "… then space freed (tmpfs grown to 20M), the same command"
    r = subprocess.run(["mount", "-o", "remount,size=20M", str(mnt)], capture_output=True,
                       text=True)  # fmt: skip
    if r.returncode:
        rows.append(skipped(ctx, "10d", name, f"remount failed: {r.stderr.strip()}",
                            "mount -o remount,size=20M"))  # fmt: skip
        return rows
    again = ctx.run(ctx.toy(wd, num_steps=200, ckpt_every=10, log_every=10), "c10d")
    steps = ckpt_steps(wd)
    left = [p.name for p in (wd / "checkpoints").iterdir() if not p.name.isdigit()]
    ok = again.rc == 0 and "done: step 200" in again.out and not again.err_lines and not left
    rows.append(ctx.row(
        "10d", name, "—", again,
        lost=f"checkpoints {steps}; left-over temporary folders: {left or 'none'}", ok=ok,
        shown=next((x for x in again.out_lines if x.startswith("train:")), None),
        why="" if ok else f"rc {again.rc}; temporary folders left {left}; "
        f"stderr {again.err_lines[-2:]}",
    ))  # fmt: skip
    return rows


def case_read_only_train(ctx: Ctx) -> Row:
    """Case 11a: train into a read-only (empty) file system: one line. Needs root."""
    name = "read-only workdir: train"
    mnt = ctx.root / "c11_ro"
    failed = ctx.mount(mnt, "ro,size=1M")
    if failed:
        return skipped(ctx, "11a", name, f"mount failed: {failed}", "mount tmpfs ro")
    job = ctx.run(ctx.toy(mnt / "run", num_steps=50), "c11a")
    ok, why = one_error(job)
    ok &= "Read-only" in job.err
    return ctx.row("11a", name, "—", job, lost="nothing to lose (empty workdir)", ok=ok,
                   why=why or ("" if ok else "the line does not say `Read-only`"))  # fmt: skip


def case_read_only_evaluate(ctx: Ctx) -> Row:
    """Case 11b: evaluate a trained run on a file system remounted read-only: one line, the run
    unchanged. Needs root."""
    name = "read-only workdir: evaluate (a trained run)"
    mnt = ctx.root / "c11_ro_run"
    failed = ctx.mount(mnt, "size=20M")
    if failed:
        return skipped(ctx, "11b", name, f"mount failed: {failed}", "mount tmpfs")
    wd = mnt / "run"
    shutil.copytree(ctx.base, wd)
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        return skipped(ctx, "11b", name, f"remount ro failed: {r.stderr.strip()}",
                       "mount -o remount,ro")  # fmt: skip
    files = tree_digest(wd)
    job = ctx.run([*ctx.cli("evaluate"), f"--workdir={wd}", "--config.eval.num_samples=500"],
                  "c11b")  # fmt: skip
    same = tree_digest(wd) == files
    ok, why = one_error(job)
    ok &= "Read-only" in job.err and same
    return ctx.row("11b", name, "—", job, lost=f"run unchanged: {same}", ok=ok,
                   why=why or ("" if ok else "the line does not say `Read-only`"))  # fmt: skip


def _one_line_nothing_written(ctx: Ctx, case, label, job, wd, lost_label, **kw) -> Row:
    """The row of a run that must fail with one error line and leave nothing in `wd` but its
    lock (cases 12a, 12b); `kw` goes to `ctx.row` (e.g. `command`)."""
    written = sorted(x for x in tree_digest(wd) if x != ".lock")
    ok, why = one_error(job)
    ok &= not written
    return ctx.row(
        case, label, "tracebacks", job,
        lost=f"{lost_label}: {sorted(tree_digest(wd)) or 'none'}", ok=ok,
        why=why or ("" if ok else f"files written: {written}"), **kw,
    )  # fmt: skip


def case_missing_data_train(ctx: Ctx) -> Row:
    """Case 12a: train Fashion-MNIST with JAXGEN_DATA_DIR empty: one line naming the files and
    how to get them, nothing but the lock in the workdir."""
    empty = ctx.work("c12_empty")
    wd = ctx.root / "c12a_run"
    cmd = [*ctx.cli("train", "experiments/configs/vapo/fashion_mnist.py"), f"--workdir={wd}",
           "--config.runlocal=True"]  # fmt: skip
    job = ctx.run(cmd, "c12a", env={**ENV, "JAXGEN_DATA_DIR": str(empty)})
    return _one_line_nothing_written(
        ctx, "12a", "missing data: train fashion_mnist (JAXGEN_DATA_DIR empty)", job, wd,
        "files written in the workdir",
        command=ctx.short(f"JAXGEN_DATA_DIR=$TMP/c12_empty {shlex.join(job.cmd)}"),
    )  # fmt: skip


def case_missing_data_evaluate(ctx: Ctx) -> Row:
    """Case 12b: evaluate CIFAR-10 with an empty data_dir: one line, nothing written."""
    empty = ctx.work("c12_empty")
    wd = ctx.root / "c12b_run"
    cmd = [*ctx.cli("evaluate", CIFAR), f"--workdir={wd}", f"--config.data.data_dir={empty}"]
    job = ctx.run(cmd, "c12b")
    return _one_line_nothing_written(
        ctx, "12b", "missing data: evaluate cifar10 (empty data_dir)", job, wd, "files written"
    )


def case_bad_config_file(ctx: Ctx, case: str) -> Row:
    """Case 13: a config file with a syntax error (13a), a config path that does not exist
    (13b): one line (the file and line), no workdir created."""
    d = ctx.work("c13")
    if case == "13a":
        config = d / "bad_config.py"
        config.write_text("def get_config(:\n    return None\n")
        name, must = "config file with a syntax error", "line 1"
    else:
        config, name = "experiments/configs/vapo/nope.py", "config path that does not exist"
        must = "does not exist"
    wd = d / f"run_{case}"
    job = ctx.run([*ctx.cli("train", str(config)), f"--workdir={wd}"], f"c{case}")
    ok, why = one_error(job)
    ok &= must in job.err and not wd.exists()
    problems = [why] if why else []
    if must not in job.err:
        problems.append(f"the line does not say `{must}`")
    if wd.exists():
        problems.append("a workdir was created")
    return ctx.row(
        case, name, '47 lines; "Failed loading config file config_config"', job,
        lost="a workdir was created" if wd.exists() else "nothing (no workdir created)", ok=ok,
        why="; ".join(problems),
    )  # fmt: skip


def inception_run(ctx: Ctx) -> tuple[Path, Row]:
    """Case 14 (setup): the cifar10 smoke run 14a/b evaluate (tfds mock data)."""
    wd = ctx.root / "c14_run"
    job = ctx.run([*MOCK, "train", f"--config={CIFAR}", f"--workdir={wd}",
                   "--config.runlocal=True"], "c14_train", timeout=240)  # fmt: skip
    ok = job.rc == 0 and bool(ckpt_steps(wd))
    row = ctx.row(
        "14", "setup: the cifar10 smoke run 14a/b evaluate (mock data)", "—", job,
        lost=f"checkpoints {ckpt_steps(wd)}", ok=ok,
        why="" if ok else f"the mock-data training failed: {job.err[-1500:]}",
    )  # fmt: skip
    return wd, row


INCEPTION = {  # case: (what, file name, content size, before)
    "14a": ("random .npz as Inception weights", "random.npz", 2048,
            "numpy allow_pickle message"),
    "14b": ("wrong-hash .pth as Inception weights", "pt_inception-2015-12-05-6726825d.pth",
            4096, "aborted every metric"),
}  # fmt: skip
# the image metrics besides FID that 14a/b evaluate (one per kind: a grid of samples, an energy
# score on data): FID's unavailability must leave them computed
INCEPTION_OTHERS = ("sample_grid", "energy_histogram")


def case_bad_inception_weights(ctx: Ctx, run: Path, case: str) -> Row:
    """Case 14a/b: evaluate a copy of the cifar10 run `run` with a bad Inception weights file:
    one warning line, FID "unavailable: ...", the other metrics computed."""
    what, fname, size, before = INCEPTION[case]
    path = ctx.work("c14") / fname
    path.write_bytes(os.urandom(size))
    wd = ctx.root / f"c{case}_run"
    shutil.copytree(run, wd)
    metrics = repr(("fd", *INCEPTION_OTHERS)).replace(" ", "")
    cmd = [
        *MOCK,
        "evaluate",
        f"--config={CIFAR}",
        f"--workdir={wd}",
        "--config.runlocal=True",
        f"--config.eval.inception_weights={path}",
        f"--config.eval.metrics={metrics}",
    ]
    job = ctx.run(cmd, f"c{case}", timeout=240)
    mj = wd / "eval" / "metrics.json"
    saved = json.loads(mj.read_text()) if mj.exists() else {}
    fid = str(saved.get("fd", {}).get("fid", ""))
    present = [m for m in INCEPTION_OTHERS if m in saved]
    warns = job.lines("warning:")
    ok = (
        job.rc == 0
        and len(warns) == 1
        and len(job.err_lines) == 1
        and fid.startswith("unavailable")
        and len(present) == len(INCEPTION_OTHERS)
    )
    return ctx.row(
        case, f"{what} (cifar10 run, mock data)", before, job,
        lost=f"fid: {'unavailable' if fid.startswith('unavailable') else fid or 'absent'}; "
        f"other metrics in metrics.json: {len(present)}/{len(INCEPTION_OTHERS)}", ok=ok,
        shown=warns[0] if warns else None,
        why="" if ok else f"rc {job.rc}; {len(warns)} warnings; {len(job.err_lines)} stderr "
        f"lines ({job.err_lines[-1:]}); metrics {present}",
    )  # fmt: skip


def case_log_file(ctx: Ctx) -> Row:
    """Case 15: stdout redirected to a file: one start line, a line per log_every, one end
    line."""
    wd = ctx.root / "c15"
    cmd = ctx.toy(wd, num_steps=100, log_every=20)
    job = ctx.run(cmd, "c15")
    start = [x for x in job.out_lines if x.startswith("train: ")]
    steps = [x for x in job.out_lines if re.match(r"step \d+/100 ", x)]
    done = [x for x in job.out_lines if x.startswith("done: ")]
    ok = (
        job.rc == 0
        and len(start) == 1
        and len(steps) == 5
        and len(done) == 1
        and len(job.out_lines) == 7
        and not job.err_lines
    )
    return ctx.row(
        "15", "stdout not a terminal (> logfile)", "empty log", job,
        lost=f"start line {len(start)}, step lines {len(steps)} (log_every 20 of 100), "
        f"end line {len(done)}", ok=ok, shown=steps[0] if steps else None,
        command=shlex.join(cmd) + " > log",
        why="" if ok else f"expected 1 start, 5 step and 1 end line on stdout, got {job.out_lines}",
    )  # fmt: skip


LIB_PRELUDE = """
import jax, numpy as np
from functools import partial
from jaxgen.methods import vapo
from jaxgen.methods.common import check_inputs
cfg = vapo.Config()
state = vapo.init(cfg, {"x": np.zeros((8, 2), np.float32)}, key=jax.random.PRNGKey(0))
step = jax.jit(partial(vapo.train_step, config=cfg))
key = jax.random.PRNGKey(1)
r = np.random.default_rng(0)
def show(what, f):
    try:
        print(f"{what}: returned {f()}")
    except Exception as e:
        lines = str(e).splitlines() or [""]
        more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
        print(f"{what}: {type(e).__name__}: {lines[0]}{more}")
def finite(b):
    new, m = step(state, b)
    loss = float(np.asarray(m["loss"]).mean())
    params = all(bool(np.isfinite(x).all()) for x in jax.tree.leaves(new.potential.params))
    return f"loss {loss:.4g}, updated parameters finite: {params} (no error)"
"""

# case: (name, code after the prelude, the call as shown); the last `show` is the one that
# should print a single-line ValueError
LIB_CASES = {
    "16a": (
        "vapo.train_step on int8 data",
        'show("train_step", lambda: finite({"x": np.zeros((8, 2), np.int8)}))',
        "jit(vapo.train_step)(state, {'x': int8 [8, 2]})",
    ),
    "16b": (
        "vapo.train_step on an empty batch",
        'show("train_step", lambda: finite({"x": np.zeros((0, 2), np.float32)}))',
        "jit(vapo.train_step)(state, {'x': float32 [0, 2]})",
    ),
    "16c": (
        "vapo.sample(num=-1)",
        'show("sample", lambda: vapo.sample(state, -1, config=cfg, key=key)[0].shape)',
        "vapo.sample(state, -1, config=cfg, key=key)",
    ),
    "16d": (
        "NaN batch: train_step, then check_inputs",
        'b = {"x": np.full((8, 2), np.nan, np.float32)}\n'
        'show("train_step", lambda: finite(b))\n'
        'show("check_inputs", lambda: check_inputs(b, image=False, who="check_inputs"))',
        "b = {'x': NaN [8, 2]}; jit(vapo.train_step)(state, b); check_inputs(b, image=False)",
    ),
    "16e": (
        "0..255 floats: train_step (2-D), check_inputs (images)",
        'show("train_step", lambda: finite({"x": r.uniform(0, 255, (8, 2)).astype(np.float32)}))\n'
        'imgs = {"x": r.uniform(0, 255, (4, 8, 8, 1)).astype(np.float32)}\n'
        'show("check_inputs", lambda: check_inputs(imgs, image=True, who="check_inputs"))',
        "jit(vapo.train_step)(state, {'x': U(0, 255) [8, 2]}); "
        "check_inputs({'x': U(0, 255) [4, 8, 8, 1]}, image=True)",
    ),
}


def case_library(ctx: Ctx) -> dict[str, Row]:
    """Case 16: library use with bad inputs, every snippet in one process (each prints its
    marker line first). Each snippet's last call should raise one single-line ValueError; for
    the NaN and 0..255 batches the jitted step cannot see values (its result is under "lost")."""
    code = LIB_PRELUDE + "".join(
        f'print("== {case}", flush=True)\n{snippet}\n'
        for case, (_, snippet, _) in LIB_CASES.items()
    )
    job = ctx.run([PY, "-c", code], "c16")
    sections, current = {}, None
    for line in job.out_lines:
        if line.startswith("== "):
            current = line[3:]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    rows = {}
    for case, (name, snippet, shown_cmd) in LIB_CASES.items():
        lines = sections.get(case, [])
        want = snippet.splitlines()[-1].split('show("')[1].split('"')[0] + ": ValueError"
        hit = [x for x in lines if x.startswith(want)]
        ok = job.rc == 0 and len(hit) == 1 and "more lines" not in hit[0] and not job.err_lines
        step = [x for x in lines if x.startswith("train_step:") and x not in hit]
        rows[case] = ctx.row(
            case, name, "—", job, shown=hit[0] if hit else None,
            lost=f"n/a ({step[0]})" if step else "n/a", ok=ok,
            command=f"python -c: {shown_cmd}",
            why="" if ok else f"expected one single-line `{want}`; got {lines}; "
            f"rc {job.rc}, stderr {job.err_lines[-2:]}",
        )  # fmt: skip
    return rows
