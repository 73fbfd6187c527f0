"""Operator faults, re-run (issue #10): every case of the findings as real CLI subprocesses.

    python -m benchmarks.operator_faults [--out] [--cases 1,3,9]

Each case runs in a fresh temporary directory with a timeout (a case that runs past it is
recorded as HANG and killed). For each it records the exit status, the number of stderr and
stdout lines, the decisive line (the `error:` / `warning:` / `SIGTERM:` ... line), the wall time
and what was lost, checked on disk: checkpoint steps before and after, `config.json` bytes on
refusals, the moved-aside checkpoint, steps since the last checkpoint. `--out` writes
`docs/bench/operator_faults.json` and the table `docs/bench/operator_faults.md`.

Settings are small (toy2d, one step per call, short runs; one trained run is copied for the
cases that need one), so the whole script takes a few minutes on 2 CPU cores. Cases 10 and 11
mount tmpfs file systems (root needed; unmounted at the end). Case 14 runs the CLI inside
`tfds.testing.mock_data` (no CIFAR-10 on this machine; FID only applies to such image sets).
"""

import argparse
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
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "docs" / "bench"
PY = sys.executable
TOY = "experiments/configs/vapo/toy2d.py"
T = [PY, "-m", "experiments.train", "--config", TOY]
F = ["--config.train.steps_per_call=1", "--config.train.sample_every=0"]
SAMPLE = [PY, "-m", "experiments.sample", "--config", TOY]
EVAL = [PY, "-m", "experiments.evaluate", "--config", TOY]
TIMEOUT = 180  # seconds per process


def toy(wd, **train) -> list[str]:
    """`T F --workdir=wd --config.train.<k>=<v> ...`."""
    return [*T, *F, f"--workdir={wd}", *(f"--config.train.{k}={v}" for k, v in train.items())]


LONG = 1_000_000  # num_steps of the runs that are interrupted
CIFAR = "experiments/configs/vapo/cifar10.py"
# the CLI `main` of experiments.<argv[1]> inside tfds' mock data (32 random images per split);
# the mock's own "Variant folder ... has no dataset_info.json" log lines are filtered out
MOCK_CODE = (
    "import importlib, logging, sys; import tensorflow_datasets as tfds; "
    "m = importlib.import_module('experiments.' + sys.argv[1]); from experiments import cli; "
    "cli.define_common_flags(); logging.getLogger('absl').addFilter("
    "lambda r: 'has no dataset_info.json' not in r.getMessage()); "
    "ctx = tfds.testing.mock_data(num_examples=32); ctx.__enter__(); m.main(sys.argv[1:])"
)
MOCK = [PY, "-c", MOCK_CODE]
DECISIVE = ("error:", "warning:", "SIGTERM:", "SIGINT:", "taking over", "the run in ")

ENV = {k: v for k, v in os.environ.items() if k != "JAXGEN_INCEPTION_WEIGHTS"}
ENV["JAX_PLATFORMS"] = "cpu"

ROOT: Path = Path("/nonexistent")  # the session's temporary root (set in main)
JOBS: list = []  # every process started, so none outlives the script
MOUNTS: list[Path] = []


# --------------------------------------------------------------------------- processes


class Job:
    """One CLI process; stdout and stderr go to files (a pipe could fill and block it)."""

    def __init__(self, cmd, tag: str, *, env=None):
        self.cmd, self.tag = list(cmd), tag
        logs = ROOT / "logs"
        logs.mkdir(exist_ok=True)
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
        JOBS.append(self)
        self.hang, self.rc, self.seconds = False, None, None

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


def run(cmd, tag: str, *, env=None, timeout: float = TIMEOUT) -> Job:
    return Job(cmd, tag, env=env).wait(timeout)


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


def mount(target: Path, options: str) -> str | None:
    """Mount a tmpfs at `target`; None, or why it failed."""
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        return (r.stderr or r.stdout).strip() or f"mount exited {r.returncode}"
    MOUNTS.append(target)
    return None


def unmount_all() -> None:
    while MOUNTS:
        target = MOUNTS.pop()
        subprocess.run(["umount", str(target)], capture_output=True)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    case: str
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


ROWS: list[Row] = []


def short(text: str) -> str:
    """Commands and lines with the temporary root, the interpreter and the toy command
    abbreviated."""
    text = text.replace(shlex.join(MOCK), "mock").replace(MOCK_CODE, "<mock>")
    text = text.replace(shlex.join(T + F), "T F").replace(shlex.join(T), "T")
    text = text.replace(shlex.join(F), "F")
    text = text.replace(str(ROOT), "$TMP").replace(PY, "python")
    return text


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


def add(case, name, before, job: Job | None, *, lost, ok, why="", shown=None, command=None):
    if job is None:
        row = Row(
            case, name, before, command or "", "—", None, None, shown or "", None, lost, ok, why
        )
    else:
        rc = "HANG" if job.hang else str(job.rc)
        line = shown if shown is not None else decisive(job)
        row = Row(
            case,
            name,
            before,
            short(command or shlex.join(job.cmd)),
            rc,
            len(job.err_lines),
            len(job.out_lines),
            short(line)[:200],
            round(job.seconds, 1),
            lost,
            ok and not job.hang,
            why if not job.hang else f"ran past {TIMEOUT} s; {why}",
            [short(x)[:300] for x in job.err_lines[:6]],
            len(short(line)),
        )
    ROWS.append(row)
    mark = "ok " if row.ok else "NO "
    print(
        f"[{mark}] {case:4s} {name}: rc {row.rc}, {row.err_lines} err / {row.out_lines} out "
        f"lines, {row.seconds} s; {row.decisive[:120]} | lost: {row.lost}"
        f"{' | ' + row.why if row.why else ''}",
        flush=True,
    )


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


def work(name: str) -> Path:
    d = ROOT / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def copy_run(src: Path, name: str, **kw) -> Path:
    dst = ROOT / name
    shutil.copytree(src, dst, **kw)
    return dst


# --------------------------------------------------------------------------- cases

BASE_STEPS = 200  # the reused run: checkpoints 100, 150, 200 (ckpt_every 50, keep 3)


def base_run() -> Path:
    wd = ROOT / "base"
    job = run(toy(wd, num_steps=BASE_STEPS, ckpt_every=50, log_every=50), "base")
    steps = ckpt_steps(wd)
    add(
        "0",
        "the reused run (200 steps)",
        "—",
        job,
        lost=f"checkpoints {steps}",
        ok=job.rc == 0 and steps == [100, 150, 200],
    )
    if steps != [100, 150, 200]:
        raise SystemExit(f"the base run failed: {job.err[-2000:]}")
    return wd


def case_nonfinite_skip():
    wd = ROOT / "c1"
    job = run(
        [*toy(wd, nonfinite="skip"), "--config.optim.potential.lr=1e6"],
        "c1",
    )
    m = re.search(r"gave up at step (\d+)", job.err)
    reached, steps = (int(m.group(1)) if m else None), ckpt_steps(wd)
    warns = len(job.lines("warning:"))
    last = max(steps) if steps else 0
    lost = (
        f"{reached - last} steps after the last checkpoint ({last or 'none'}; checkpoints {steps})"
        if reached is not None
        else "?"
    )
    ok, why = one_error(job)
    ok &= warns <= 3
    add(
        "1",
        "lr=1e6, nonfinite=skip",
        '6,529 "batch skipped" lines in 120 s, never stops',
        job,
        lost=lost,
        ok=ok,
        why=why or f"{warns} warning lines + 1 error line (max_nonfinite=3)",
    )


def case_nonfinite_rollback():
    wd = ROOT / "c2"
    job = run(
        [*toy(wd, nonfinite="rollback", ckpt_every=1), "--config.optim.potential.lr=1e6"],
        "c2",
    )
    m = re.search(r"gave up at step (\d+)", job.err)
    reached, steps = (int(m.group(1)) if m else None), ckpt_steps(wd)
    warns = len(job.lines("warning:"))
    last = max(steps) if steps else 0
    lost = f"{reached - last} steps (checkpoints {steps})" if reached is not None else "?"
    ok, why = one_error(job)
    ok &= warns <= 3 and reached is not None and reached == last
    add(
        "2",
        "lr=1e6, nonfinite=rollback",
        "rolled back to the same step 1,321 times in 120 s",
        job,
        lost=lost,
        ok=ok,
        why=why or f"{warns} warning lines + 1 error line",
    )


def long_cmd(wd: Path, num_steps: int = LONG) -> list[str]:
    return toy(wd, num_steps=num_steps, ckpt_every=50, log_every=10)


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


def signal_case(a, wd, sig, case, name, before_text):
    """Send `sig` to the running trainer `a` once a checkpoint exists and record the case: exit
    128 + signal, one `<SIGNAME>:` line on stderr, and a checkpoint of the step it stopped at.
    Returns that step (None when it said none)."""
    at, before, came = interrupt(a, wd, sig)
    a.wait()
    m = re.search(r"stopped at step (\d+)", a.err)
    stopped, after = (int(m.group(1)) if m else None), ckpt_steps(wd)
    saved = stopped is not None and after and max(after) == stopped
    lost = (
        f"0 steps: signal at step ≥{at} (last periodic checkpoint {max(before or [0])}), "
        f"checkpoint {stopped} written"
        if saved
        else f"stopped at {stopped}, checkpoints {after}; signal at step ≥{at}"
    )
    ok = (
        came
        and a.rc == 128 + sig
        and saved
        and len(a.err_lines) == 1
        and a.err_lines[0].startswith(f"{signal.Signals(sig).name}:")
    )
    add(
        case,
        name,
        before_text,
        a,
        lost=lost,
        ok=ok,
        why="" if ok else f"rc {a.rc}; stderr {len(a.err_lines)} lines; saved {saved}",
        command=shlex.join(long_cmd(wd)),
    )
    return stopped


def case_two_trainers_and_sigterm():
    wd = ROOT / "c3"
    a = Job(long_cmd(wd), "c3_a")
    came = a.wait_until(lambda: bool(ckpt_steps(wd)), timeout=150)
    cfg = read_bytes(wd / "config.json")
    b = run(long_cmd(wd), "c5_b")
    a_alive = a.alive()
    named = f"pid {a.pid} on {socket.gethostname()}" in b.err
    ok, why = one_error(b)
    ok &= named and a_alive and read_bytes(wd / "config.json") == cfg and came
    why = why or ("" if named else "the line does not name the holder's pid and host")
    add(
        "5",
        "two trainers on one workdir (second one)",
        "both exit 0, interleaved metrics",
        b,
        lost=f"config.json unchanged: {read_bytes(wd / 'config.json') == cfg}; "
        f"first trainer still running: {a_alive}",
        ok=ok,
        why=why,
    )

    stopped = signal_case(
        a, wd, signal.SIGTERM, "3", "SIGTERM mid-run", "rc 143, nothing printed, nothing saved"
    )
    if stopped is None:
        return
    res = run(long_cmd(wd, stopped + 20), "c3_resume")
    resumed = f"resuming from {wd / 'checkpoints' / str(stopped)}, step {stopped}" in res.out
    done = f"done: step {stopped + 20}" in res.out
    ok = res.rc == 0 and resumed and done and not res.err_lines
    add(
        "3b",
        "… then the same command resumed",
        "—",
        res,
        lost=f"resumed at step {stopped}: {resumed}; reached {stopped + 20}: {done}",
        ok=ok,
        shown=next((x for x in res.out_lines if "resuming" in x), None),
        why="" if ok else f"rc {res.rc}, resumed {resumed}, done {done}",
    )


def case_sigint_and_stale_lock():
    wd = ROOT / "c4"
    a = Job(long_cmd(wd), "c4")
    signal_case(
        a, wd, signal.SIGINT, "4", "SIGINT (Ctrl-C) mid-run",
        "KeyboardInterrupt traceback, nothing saved",
    )  # fmt: skip
    after = ckpt_steps(wd)

    # case 6: the same workdir, run again and killed with SIGKILL, then restarted
    k = Job(long_cmd(wd), "c6_killed")
    start = max(after) if after else 0
    nxt = (start // 50 + 1) * 50
    came = k.wait_until(lambda: max(ckpt_steps(wd) or [0]) >= nxt, timeout=150)
    if came:
        k.wait_until(lambda: (last_progress_step(k.stdout_now()) or 0) >= nxt + 20, 20)
    reached, ckpts = last_progress_step(k.stdout_now()), ckpt_steps(wd)
    k.p.send_signal(signal.SIGKILL)
    k.wait()
    last = max(ckpts) if ckpts else 0
    add(
        "6a",
        "a run killed with SIGKILL",
        "—",
        k,
        lost=f"≥{(reached or 0) - last} steps after checkpoint {last} (SIGKILL cannot be caught)",
        ok=k.rc == -9 and came,
        shown="(killed; nothing can be printed)",
    )
    r = run(long_cmd(wd, last + 20), "c6_restart")
    took = [x for x in r.out_lines + r.err_lines if x.startswith("taking over the lock")]
    resumed = f"resuming from {wd / 'checkpoints' / str(last)}, step {last}" in r.out
    done = f"done: step {last + 20}" in r.out
    ok = r.rc == 0 and len(took) == 1 and str(k.pid) in took[0] and resumed and done
    add(
        "6b",
        "… restarted (stale lock)",
        "—",
        r,
        lost=f"resumed from checkpoint {last}: {resumed}; reached {last + 20}: {done}",
        ok=ok,
        shown=took[0] if took else None,
        why="" if ok else f"takeover lines {len(took)}, resumed {resumed}, done {done}",
    )


def case_refusals(base: Path):
    changes = [
        (
            "7a",
            "network (model.hidden=(64,64,64))",
            [*T, "--config.model.hidden=(64,64,64)"],
            ("model.hidden was",),
        ),
        (
            "7b",
            "recipe (fdrl config on the vapo run)",
            [PY, "-m", "experiments.train", "--config", "experiments/configs/fdrl/toy2d.py"],
            ("'vapo'", "'fdrl'"),
        ),
        ("7c", "data.name=moons", [*T, "--config.data.name=moons"], ("data.name was",)),
        (
            "7d",
            "data.batch_size=128",
            [*T, "--config.data.batch_size=128"],
            ("data.batch_size was",),
        ),
    ]
    # `named`: what the line must contain to name the change (before its suggestions)
    for case, what, cmd, named in changes:
        wd = copy_run(base, f"c{case}")
        cfg, files = read_bytes(wd / "config.json"), tree_digest(wd)
        job = run(
            [*cmd, f"--workdir={wd}", f"--config.train.num_steps={BASE_STEPS + 100}"], f"c{case}"
        )
        same_cfg, same = read_bytes(wd / "config.json") == cfg, tree_digest(wd) == files
        ok, why = one_error(job)
        ok &= same_cfg and same and "resume refused" in job.err
        shown = job.err.split("; use a new")[0]
        note = (
            ""
            if all(x in shown for x in named)
            else f"note: the line ({len(job.err.strip())} chars) does not name the change "
            "before its suggestions"
        )
        add(
            case,
            f"resume with changed {what}",
            "config.json overwritten; data changes resumed silently",
            job,
            lost=f"config.json bytes unchanged: {same_cfg}; checkpoints {ckpt_steps(wd)} "
            f"(no file added or changed: {same})",
            ok=ok,
            why="; ".join(x for x in (why, note) if x),
        )


def case_finished(base: Path):
    wd = copy_run(base, "c8")
    files = tree_digest(wd)
    job = run([*T, f"--workdir={wd}", "--config.train.num_steps=100"], "c8")
    same = tree_digest(wd) == files
    msg = [x for x in job.out_lines + job.err_lines if "is finished" in x]
    ok = job.rc == 0 and len(msg) == 1 and len(job.out_lines + job.err_lines) == 1 and same
    add(
        "8",
        "finished run resumed with fewer num_steps",
        "exit 0, no message",
        job,
        lost=f"nothing changed: {same}",
        ok=ok,
        why="" if ok else f"{len(msg)} 'is finished' lines; unchanged {same}",
    )


def case_bad_checkpoints(base: Path):
    newest, older = 200, 150
    letters = iter("abcdef")
    for how in ("truncate", "corrupt"):
        for tool in ("train", "sample", "evaluate"):
            case = f"9{next(letters)}"
            wd = copy_run(base, f"c{case}")
            n = mangle(wd / "checkpoints" / str(newest), how)
            if tool == "train":
                cmd = toy(wd, num_steps=BASE_STEPS + 20)
            elif tool == "sample":
                cmd = [*SAMPLE, f"--workdir={wd}", "--num=100", f"--out={wd / 's.npy'}"]
            else:
                cmd = [*EVAL, f"--workdir={wd}", "--config.eval.num_samples=500"]
            job = run(cmd, f"c{case}")
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
                step = (
                    json.loads(mj.read_text())["protocol"]["checkpoint_step"]
                    if mj.exists()
                    else None
                )
                used, extra = step == older, f"metrics.json at step {step}"
            warns = job.lines("warning:")
            others = [x for x in job.err_lines if x not in warns]
            ok = job.rc == 0 and len(warns) == 1 and kept and used and not others
            problems = (
                []
                if ok
                else [
                    f"rc {job.rc}",
                    f"{len(warns)} warning lines",
                    f"moved aside intact: {kept}",
                    f"used step {older}: {used}",
                    f"{len(others)} more stderr line(s)"
                    + (f": {short(others[0])[:160]}" if others else ""),
                ]
            )
            problems = [
                x
                for x in problems
                if not x.endswith((": True", "rc 0"))
                and x != "1 warning lines"
                and not x.startswith("0 more")
            ]  # what is wrong, only
            add(
                case,
                f"{how.rstrip('e')}ed newest checkpoint: {tool}",
                "all three stopped; ~60 lines of orbax tracebacks",
                job,
                lost=f"checkpoint {newest} kept in checkpoints_unreadable/ ({n} files): {kept}; "
                f"used {older}: {used}; {extra}",
                ok=ok,
                why="; ".join(problems),
                shown=warns[0] if warns else None,
            )


DISK_FULL_TRIES = 3  # the failed save's output varies between runs: each try is a row


def case_disk_full():
    for n, case in enumerate(("10a", "10b", "10c")[:DISK_FULL_TRIES], 1):
        mnt = ROOT / f"c{case}_tmpfs"
        failed = mount(mnt, "size=300k")
        name = f"disk full during a save (tmpfs 300k), try {n} of {DISK_FULL_TRIES}"
        before = "943 stderr lines, cause at line 149"
        if failed:
            add(
                case,
                name,
                before,
                None,
                lost="not run",
                ok=False,
                why=f"mount failed: {failed}",
                command="mount -t tmpfs -o size=300k",
            )
            return
        wd = mnt / "run"
        job = run(toy(wd, num_steps=200, ckpt_every=10, log_every=10), f"c{case}")
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
        if full and failed_at is None:  # the cause, but not the save it stopped
            why = "; ".join(x for x in (why, "note: the line does not name the checkpoint") if x)
        if job.traceback:
            where = next(x for x in job.err_lines if not x.startswith("error:"))
            why += f" (after the error line: {short(where)[:100]})"
        last = max(steps) if steps else 0
        reached = failed_at or last_progress_step(job.out) or 0
        add(
            case,
            name,
            before,
            job,
            lost=f"≥{reached - last} steps since the last complete checkpoint "
            f"({last or 'none'}; the save of step {failed_at or '?'} failed); "
            f"left in checkpoints/: {leftovers or 'nothing'}",
            ok=ok,
            why=why or ("" if full else "the line does not say the disk is full"),
        )

    # space freed (the last tmpfs grown to 20M): the same command, as the message promises
    r = subprocess.run(
        ["mount", "-o", "remount,size=20M", str(mnt)], capture_output=True, text=True
    )
    name = "… then space freed (tmpfs grown to 20M), the same command"
    if r.returncode:
        add(
            "10d",
            name,
            "—",
            None,
            lost="not run",
            ok=False,
            why=f"remount failed: {r.stderr.strip()}",
            command="mount -o remount,size=20M",
        )
        return
    again = run(toy(wd, num_steps=200, ckpt_every=10, log_every=10), "c10d")
    steps = ckpt_steps(wd)
    left = [p.name for p in (wd / "checkpoints").iterdir() if not p.name.isdigit()]
    ok = again.rc == 0 and "done: step 200" in again.out and not again.err_lines and not left
    add(
        "10d",
        name,
        "—",
        again,
        lost=f"checkpoints {steps}; left-over temporary folders: {left or 'none'}",
        ok=ok,
        shown=next((x for x in again.out_lines if x.startswith("train:")), None),
        why="" if ok else f"rc {again.rc}; temporary folders left {left}",
    )


def case_read_only(base: Path):
    mnt = ROOT / "c11_ro"
    failed = mount(mnt, "ro,size=1M")
    if failed:
        add(
            "11a",
            "read-only workdir: train",
            "—",
            None,
            lost="not run",
            ok=False,
            why=f"mount failed: {failed}",
            command="mount tmpfs ro",
        )
    else:
        job = run(toy(mnt / "run", num_steps=50), "c11a")
        ok, why = one_error(job)
        ok &= "Read-only" in job.err
        add(
            "11a",
            "read-only workdir: train",
            "—",
            job,
            lost="nothing to lose (empty workdir)",
            ok=ok,
            why=why,
        )
    mnt2 = ROOT / "c11_ro_run"
    failed = mount(mnt2, "size=20M")
    if failed:
        add(
            "11b",
            "read-only workdir: evaluate",
            "—",
            None,
            lost="not run",
            ok=False,
            why=f"mount failed: {failed}",
            command="mount tmpfs",
        )
        return
    wd = mnt2 / "run"
    shutil.copytree(base, wd)
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt2)], capture_output=True, text=True)
    if r.returncode:
        add(
            "11b",
            "read-only workdir: evaluate",
            "—",
            None,
            lost="not run",
            ok=False,
            why=f"remount ro failed: {r.stderr.strip()}",
            command="mount -o remount,ro",
        )
        return
    files = tree_digest(wd)
    job = run([*EVAL, f"--workdir={wd}", "--config.eval.num_samples=500"], "c11b")
    ok, why = one_error(job)
    ok &= "Read-only" in job.err
    add(
        "11b",
        "read-only workdir: evaluate (a trained run)",
        "—",
        job,
        lost=f"run unchanged: {tree_digest(wd) == files}",
        ok=ok,
        why=why,
    )


def case_missing_data():
    empty = work("c12_empty")
    wd = ROOT / "c12a_run"
    env = {**ENV, "JAXGEN_DATA_DIR": str(empty)}
    job = run(
        [
            PY,
            "-m",
            "experiments.train",
            "--config",
            "experiments/configs/vapo/fashion_mnist.py",
            f"--workdir={wd}",
            "--config.runlocal=True",
        ],
        "c12a",
        env=env,
    )
    ok, why = one_error(job)
    add(
        "12a",
        "missing data: train fashion_mnist (JAXGEN_DATA_DIR empty)",
        "tracebacks",
        job,
        lost=f"files written in the workdir: {sorted(tree_digest(wd)) or 'none'}",
        ok=ok,
        why=why,
        command=short(f"JAXGEN_DATA_DIR=$TMP/empty {shlex.join(job.cmd)}"),
    )
    wd = ROOT / "c12b_run"
    job = run(
        [
            PY,
            "-m",
            "experiments.evaluate",
            "--config",
            CIFAR,
            f"--workdir={wd}",
            f"--config.data.data_dir={empty}",
        ],
        "c12b",
    )
    ok, why = one_error(job)
    add(
        "12b",
        "missing data: evaluate cifar10 (empty data_dir)",
        "tracebacks",
        job,
        lost=f"files written: {sorted(tree_digest(wd)) or 'none'}",
        ok=ok,
        why=why,
    )


def case_bad_config_file():
    d = work("c13")
    bad = d / "bad_config.py"
    bad.write_text("def get_config(:\n    return None\n")
    job = run(
        [PY, "-m", "experiments.train", "--config", str(bad), f"--workdir={d / 'run'}"], "c13a"
    )
    ok, why = one_error(job)
    ok &= "line 1" in job.err
    add(
        "13a",
        "config file with a syntax error",
        '47 lines; "Failed loading config file config_config"',
        job,
        lost="nothing (no workdir created)"
        if not (d / "run").exists()
        else "a workdir was created",
        ok=ok,
        why=why,
    )
    job = run(
        [
            PY,
            "-m",
            "experiments.train",
            "--config",
            "experiments/configs/vapo/nope.py",
            f"--workdir={d / 'run2'}",
        ],
        "c13b",
    )
    ok, why = one_error(job)
    add(
        "13b",
        "config path that does not exist",
        '47 lines; "Failed loading config file config_config"',
        job,
        lost="nothing (no workdir created)"
        if not (d / "run2").exists()
        else "a workdir was created",
        ok=ok,
        why=why,
    )


def case_bad_inception_weights():
    wd0 = ROOT / "c14_run"
    job = run(
        [*MOCK, "train", f"--config={CIFAR}", f"--workdir={wd0}", "--config.runlocal=True"],
        "c14_train",
        timeout=240,
    )
    add(
        "14",
        "setup: the cifar10 smoke run 14a/b evaluate (mock data)",
        "—",
        job,
        lost=f"checkpoints {ckpt_steps(wd0)}",
        ok=job.rc == 0,
        why="" if job.rc == 0 else "the mock-data training failed",
    )
    if job.rc != 0:
        return
    d = work("c14")
    npz = d / "random.npz"
    npz.write_bytes(os.urandom(2048))
    pth = d / "pt_inception-2015-12-05-6726825d.pth"
    pth.write_bytes(os.urandom(4096))
    others = ("sample_grid", "energy_histogram", "ood", "nearest_neighbours", "interpolation")
    for case, what, path, before in (
        ("14a", "random .npz as Inception weights", npz, "numpy allow_pickle message"),
        ("14b", "wrong-hash .pth as Inception weights", pth, "aborted every metric"),
    ):
        wd = copy_run(wd0, f"c{case}_run")
        job = run(
            [
                *MOCK,
                "evaluate",
                f"--config={CIFAR}",
                f"--workdir={wd}",
                "--config.runlocal=True",
                f"--config.eval.inception_weights={path}",
            ],
            f"c{case}",
            timeout=240,
        )
        mj = wd / "eval" / "metrics.json"
        saved = json.loads(mj.read_text()) if mj.exists() else {}
        fid = saved.get("fd", {}).get("fid", "")
        present = [m for m in others if m in saved]
        warns = job.lines("warning:")
        ok = (
            job.rc == 0
            and len(warns) == 1
            and len(job.err_lines) == 1
            and fid.startswith("unavailable")
            and len(present) == len(others)
        )
        add(
            case,
            f"{what} (cifar10 run, mock data)",
            before,
            job,
            lost=f"fid: {'unavailable' if fid.startswith('unavailable') else fid or 'absent'}; "
            f"other metrics in metrics.json: {len(present)}/{len(others)}",
            ok=ok,
            shown=warns[0] if warns else None,
            why=""
            if ok
            else f"rc {job.rc}; {len(warns)} warnings; "
            f"{len(job.err_lines)} stderr lines; metrics {present}",
        )


def case_log_file():
    wd = ROOT / "c15"
    cmd = toy(wd, num_steps=100, log_every=20)
    job = run(cmd, "c15")
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
    add(
        "15",
        "stdout not a terminal (> logfile)",
        "empty log",
        job,
        lost=f"start line {len(start)}, step lines {len(steps)} (log_every 20 of 100), "
        f"end line {len(done)}",
        ok=ok,
        shown=steps[0] if steps else None,
        command=shlex.join(cmd) + " > log",
        why="" if ok else "expected 1 start, 5 step and 1 end line on stdout",
    )


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

# (case, name, code after the prelude, the command as shown): the last `show` is the one that
# should print a single-line ValueError
LIB_CASES = [
    (
        "16a",
        "vapo.train_step on int8 data",
        'show("train_step", lambda: finite({"x": np.zeros((8, 2), np.int8)}))',
        "jit(vapo.train_step)(state, {'x': int8 [8, 2]})",
    ),
    (
        "16b",
        "vapo.train_step on an empty batch",
        'show("train_step", lambda: finite({"x": np.zeros((0, 2), np.float32)}))',
        "jit(vapo.train_step)(state, {'x': float32 [0, 2]})",
    ),
    (
        "16c",
        "vapo.sample(num=-1)",
        'show("sample", lambda: vapo.sample(state, -1, config=cfg, key=key)[0].shape)',
        "vapo.sample(state, -1, config=cfg, key=key)",
    ),
    (
        "16d",
        "NaN batch: train_step, then check_inputs",
        'b = {"x": np.full((8, 2), np.nan, np.float32)}\n'
        'show("train_step", lambda: finite(b))\n'
        'show("check_inputs", lambda: check_inputs(b, image=False, who="check_inputs"))',
        "b = {'x': NaN [8, 2]}; jit(vapo.train_step)(state, b); check_inputs(b, image=False)",
    ),
    (
        "16e",
        "0..255 floats: train_step (2-D), check_inputs (images)",
        'show("train_step", lambda: finite({"x": r.uniform(0, 255, (8, 2)).astype(np.float32)}))\n'
        'imgs = {"x": r.uniform(0, 255, (4, 8, 8, 1)).astype(np.float32)}\n'
        'show("check_inputs", lambda: check_inputs(imgs, image=True, who="check_inputs"))',
        "jit(vapo.train_step)(state, {'x': U(0, 255) [8, 2]}); "
        "check_inputs({'x': U(0, 255) [4, 8, 8, 1]}, image=True)",
    ),
]


def case_library():
    """Each snippet's last call should raise one single-line ValueError; for the NaN and
    0..255 batches the jitted step cannot see values (its result is shown under "lost")."""
    for case, name, code, shown_cmd in LIB_CASES:
        job = run([PY, "-c", LIB_PRELUDE + code], f"c{case}")
        want = code.splitlines()[-1].split('show("')[1].split('"')[0] + ": ValueError"
        hit = [x for x in job.out_lines if x.startswith(want)]
        ok = job.rc == 0 and len(hit) == 1 and "more lines" not in hit[0] and not job.err_lines
        step = [x for x in job.out_lines if x.startswith("train_step:") and x not in hit]
        add(
            case,
            name,
            "—",
            job,
            shown=hit[0] if hit else None,
            lost=f"n/a ({step[0]})" if step else "n/a",
            ok=ok,
            command=f"python -c: {shown_cmd}",
            why="" if ok else f"expected one single-line `{want}`",
        )


CASES = {
    "1": case_nonfinite_skip,
    "2": case_nonfinite_rollback,
    "3": case_two_trainers_and_sigterm,  # also case 5
    "4": case_sigint_and_stale_lock,  # also case 6
    "7": case_refusals,
    "8": case_finished,
    "9": case_bad_checkpoints,
    "10": case_disk_full,
    "11": case_read_only,
    "12": case_missing_data,
    "13": case_bad_config_file,
    "14": case_bad_inception_weights,
    "15": case_log_file,
    "16": case_library,
}
NEEDS_BASE = {"7", "8", "9", "11"}


# --------------------------------------------------------------------------- output


def git_state() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = [x for x in git("status", "--porcelain").splitlines() if x and not x.startswith("??")]
    return commit + (" + uncommitted changes" if dirty else "")


def md_cell(text) -> str:
    s = "—" if text is None else str(text)
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def markdown(meta: dict) -> str:
    head = [
        "# Operator faults, re-run (issue #10)",
        "",
        f"- date: {meta['date']}; commit: {meta['commit']}; {meta['machine']}",
        f"- command: `{meta['command']}`; total {meta['seconds_total']:.0f} s; "
        f"timeout {TIMEOUT} s per process (HANG = killed at the timeout)",
        "- T = `python -m experiments.train --config experiments/configs/vapo/toy2d.py`; "
        "F = `--config.train.steps_per_call=1 --config.train.sample_every=0`; "
        "$TMP = a fresh temporary directory; mock = `python -c` running the CLI's `main` inside "
        "`tfds.testing.mock_data(num_examples=32)` (no CIFAR-10 here)",
        "- 3 and 5 share one run (the second trainer starts once the first has a checkpoint; "
        "then the first gets SIGTERM); 6a runs on case 4's workdir; 7-9 and 11b work on "
        "copies of run 0; 10a-c are three tries of one case (its output varies), 10d reruns "
        "10c's command after growing the file system; 14a/b evaluate copies of run 14",
        "- err / out: non-empty stderr / stdout lines. before: what the issue's findings report "
        "for the old main. lost: checked on disk after the run. ok: one line, nothing lost, "
        "no hang (otherwise what is not met).",
        "",
        "| # | case | before (old main) | command | rc | err | out | decisive line | s | lost "
        "| ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for r in meta["rows"]:
        ok = ("yes" if r["ok"] else "**no**") + (f": {r['why']}" if r["why"] else "")
        cmd = r["command"]
        cmd = "—" if not cmd else f"`{cmd}`".replace("|", "\\|") if "`" not in cmd else md_cell(cmd)
        plain = [r["case"], r["name"], r["before"]]
        rest = [r["rc"], r["err_lines"], r["out_lines"], r["decisive"], r["seconds"], r["lost"], ok]
        cells = [*map(md_cell, plain), cmd, *map(md_cell, rest)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + rows) + "\n"


def main():
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", action="store_true", help="write docs/bench/operator_faults.*")
    ap.add_argument("--cases", default="", help="comma-separated case numbers (default: all)")
    args = ap.parse_args()
    chosen = [c for c in args.cases.split(",") if c] or list(CASES)
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {list(CASES)} (5 runs with 3, 6 with 4)")
    t0 = time.perf_counter()
    commit = git_state()  # the code measured (another edit may land during the run)
    ROOT = Path(tempfile.mkdtemp(prefix="operator_faults_"))
    try:
        base = base_run() if NEEDS_BASE & set(chosen) else None
        for c in chosen:
            fn = CASES[c]
            try:
                fn(base) if c in NEEDS_BASE else fn()
            except Exception as e:  # the script's own failure on a case: recorded, not hidden
                add(
                    c,
                    f"case {c}: the benchmark itself failed",
                    "—",
                    None,
                    lost="?",
                    ok=False,
                    why=f"{type(e).__name__}: {e}",
                    command="",
                )
    finally:
        for job in JOBS:
            if job.alive():
                job.p.kill()
                job.p.wait()
        unmount_all()
        shutil.rmtree(ROOT, ignore_errors=True)
    total = time.perf_counter() - t0
    ROWS.sort(key=lambda r: _natural(r.case))
    meta = {
        "date": date.today().isoformat(),
        "commit": commit
        if git_state() == commit
        else f"{commit} (at the start; {git_state()} at the end)",
        "machine": f"{os.cpu_count()} CPU cores",
        "command": "python -m benchmarks.operator_faults"
        + (" --out" if args.out else "")
        + (f" --cases {args.cases}" if args.cases else ""),
        "seconds_total": round(total, 1),
        "rows": [r.__dict__ for r in ROWS],
    }
    bad = [r for r in ROWS if not r.ok]
    print(f"\n{len(ROWS)} rows, {len(bad)} not meeting the target, {total:.0f} s")
    if args.out:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "operator_faults.json").write_text(json.dumps(meta, indent=1))
        (OUT_DIR / "operator_faults.md").write_text(markdown(meta))
        print(f"written: {OUT_DIR / 'operator_faults.md'}, {OUT_DIR / 'operator_faults.json'}")


def _natural(case: str):
    m = re.match(r"(\d+)(.*)", case)
    return (int(m.group(1)), m.group(2)) if m else (1000, case)


if __name__ == "__main__":
    main()
