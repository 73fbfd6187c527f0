"""Operator faults, re-run (issue #10): every case as real CLI subprocesses, on VAPO and on a
second recipe (gan2d) where the recipe matters; the table of `docs/bench/operator_faults.md`.

    python -m benchmarks.operator_faults [--out] [--cases 1,3,9] [--recipes vapo,gan2d]
    python -m benchmarks.operator_faults --render   # the tables again from the JSON

The cases are the functions of `tools.operator_faults`, which `tests/test_operator_faults.py`
runs one pytest test per case (`pytest -m slow tests/test_operator_faults.py`); this script runs
the same functions and records their rows. Each case runs in a fresh temporary directory with a
timeout (a case that runs past it is recorded as HANG and killed). For each it records the exit
status, the number of stderr and stdout lines, the decisive line (the `error:` / `warning:` /
`SIGTERM:` ... line), the wall time and what was lost, checked on disk: checkpoint steps before
and after, `config.json` bytes on refusals, the moved-aside checkpoint, steps since the last
checkpoint. `--out` writes `docs/bench/operator_faults.json` and `docs/bench/operator_faults.md`.

Settings are small (toy2d, one step per call, short runs; one trained run per recipe is copied
for the cases that need one). Cases 10 and 11 mount tmpfs file systems (root needed; unmounted
at the end). Case 14 runs the CLI inside `tfds.testing.mock_data` (no CIFAR-10 on this machine;
FID only applies to such image sets).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from tools import operator_faults as of

OUT_DIR = of.REPO / "docs" / "bench"
DISK_FULL_TRIES = 3  # the failed save's output varied between runs: each try is a row


def _one(fn):
    return lambda ctx: [fn(ctx)]


# case: (ctx -> rows, recipe-dependent, needs the base run)
CASES = {
    "1": (_one(lambda c: of.case_nonfinite(c, "skip")), True, False),
    "2": (_one(lambda c: of.case_nonfinite(c, "rollback")), True, False),
    "3": (lambda c: list(of.case_sigterm(c).values()), True, False),  # also 5 and 3b
    "4": (lambda c: list(of.case_sigint(c).values()), True, False),  # also 6a and 6b
    "7": (lambda c: [of.case_refusal(c, k) for k in ("7a", "7b", "7c", "7d")], True, True),
    "8": (_one(of.case_finished), True, True),
    "9": (lambda c: [of.case_bad_checkpoint(c, k) for k in of.BAD_CKPT], True, True),
    "10": (lambda c: of.case_disk_full(c, DISK_FULL_TRIES), False, False),
    "11": (lambda c: [of.case_read_only_train(c), of.case_read_only_evaluate(c)], False, True),
    "12": (lambda c: [of.case_missing_data_train(c), of.case_missing_data_evaluate(c)], False,
           False),
    "13": (lambda c: [of.case_bad_config_file(c, k) for k in ("13a", "13b")], False, False),
    "14": (lambda c: _inception(c), False, False),
    "15": (_one(of.case_log_file), False, False),
    "16": (lambda c: list(of.case_library(c).values()), False, False),
}  # fmt: skip


def _inception(ctx):
    run, row = of.inception_run(ctx)
    return [row] + (
        [of.case_bad_inception_weights(ctx, run, k) for k in of.INCEPTION] if row.ok else []
    )  # noqa: E501


def git_state() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=of.REPO, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = [x for x in git("status", "--porcelain").splitlines() if x and not x.startswith("??")]
    return commit + (" + uncommitted changes" if dirty else "")


def md_cell(text) -> str:
    s = "—" if text is None else str(text)
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def markdown(meta: dict) -> str:
    recipes = ", ".join(f"{r} = `{of.RECIPES[r].config}`" for r in meta["recipes"])
    head = [
        "# Operator faults, re-run (issue #10)",
        "",
        f"- date: {meta['date']}; commit: {meta['commit']}; {meta['machine']}",
        f"- command: `{meta['command']}`; total {meta['seconds_total']:.0f} s; "
        f"timeout {of.TIMEOUT} s per process (HANG = killed at the timeout); the same cases "
        "are the tests of `tests/test_operator_faults.py` (`pytest -m slow`)",
        f"- recipes: {recipes}; cases 1-9 run on each recipe, 10-16 on VAPO (the code they "
        "exercise does not depend on the recipe)",
        "- T = `python -m experiments.train --config <the row's recipe config>`; "
        "F = `--config.train.steps_per_call=1 --config.train.sample_every=0`; "
        "$TMP = a fresh temporary directory; $BASE = run 0 of the row's recipe; "
        "mock = `python -c` running `python -m experiments.<CLI>` (runpy) inside "
        "`tfds.testing.mock_data(num_examples=32)` (no CIFAR-10 here)",
        "- 3 and 5 share one run (the second trainer starts once the first has a checkpoint; "
        "then the first gets SIGTERM); 6a runs on case 4's workdir; 7-9 and 11b work on "
        "copies of run 0; 10a-c are tries of one case (its output varies), 10d reruns "
        "the last try's command after growing the file system; 14a/b evaluate copies of run 14 "
        f"(metrics fd + {', '.join(of.INCEPTION_OTHERS)}); 16a-e run in one process",
        "- err / out: non-empty stderr / stdout lines. before: what the issue's findings report "
        "for the old main (VAPO). lost: checked on disk after the run. ok: one line, nothing "
        "lost, no hang (otherwise what is not met).",
        "",
        "| # | recipe | case | before (old main) | command | rc | err | out | decisive line | s "
        "| lost | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for r in meta["rows"]:
        ok = ("yes" if r["ok"] else "**no**") + (f": {r['why']}" if r["why"] else "")
        cmd = r["command"]
        cmd = "—" if not cmd else f"`{cmd}`".replace("|", "\\|") if "`" not in cmd else md_cell(cmd)
        plain = [r["case"], r["recipe"], r["name"], r["before"]]
        rest = [r["rc"], r["err_lines"], r["out_lines"], r["decisive"], r["seconds"], r["lost"], ok]
        cells = [*map(md_cell, plain), cmd, *map(md_cell, rest)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + rows) + "\n"


OPERATING = of.REPO / "docs" / "operating.md"
MATRIX_START = (
    "<!-- fault matrix: written by python -m benchmarks.operator_faults --out / --render -->"
)
MATRIX_END = "<!-- end of the fault matrix -->"
# a case's name without the recipe's own override (the rows name it)
GENERIC = {
    "1": "blow-up overrides (non-finite from the first steps), nonfinite=skip",
    "2": "blow-up overrides, nonfinite=rollback",
    "7a": "resume with a changed network",
    "7b": "resume with another recipe's config",
}


def matrix(meta: dict) -> str:
    """The case × recipe table of `meta` (a run's JSON): per cell `ok` or **no**, the exit
    status and the seconds; a case not run on a recipe is blank."""
    recipes = meta["recipes"]
    by_case: dict[str, dict] = {}
    for r in meta["rows"]:
        entry = by_case.setdefault(r["case"], {"name": GENERIC.get(r["case"], r["name"])})
        entry[r["recipe"]] = r
    head = [
        f"Run {meta['date']} at {meta['commit']} (`{meta['command']}`, {meta['machine']}, "
        f"{meta['seconds_total'] / 60:.0f} min); every row with its command, output and what "
        "was checked on disk: `docs/bench/operator_faults.md`. A cell: ok (one line or the "
        "correct behaviour, nothing lost, no hang) or **no**, the exit status, the seconds.",
        "",
        "| # | case | " + " | ".join(recipes) + " |",
        "|---|---|" + "---|" * len(recipes),
    ]

    def cell(row) -> str:
        if row is None:
            return ""
        mark = "ok" if row["ok"] else "**no**"
        return f"{mark} ({row['rc']}, {row['seconds']} s)"

    lines = [
        f"| {case} | {md_cell(e['name'])} | " + " | ".join(cell(e.get(r)) for r in recipes) + " |"
        for case, e in sorted(by_case.items(), key=lambda kv: _natural(kv[0]))
    ]
    rows = meta["rows"]
    good = sum(r["ok"] for r in rows)
    tail = ["", f"{good} of {len(rows)} rows ok over {len(recipes)} recipes."]
    return "\n".join(head + lines + tail) + "\n"


def render_operating(meta: dict) -> None:
    """Replace the fault matrix between its markers in docs/operating.md."""
    text = OPERATING.read_text()
    start, end = text.index(MATRIX_START), text.index(MATRIX_END)
    OPERATING.write_text(text[: start + len(MATRIX_START)] + "\n" + matrix(meta) + text[end:])


def merged(old: dict, new: dict) -> dict:
    """`old`'s rows with `new`'s in place of those it redid (same case and recipe); both
    commands, dates and commits kept."""
    redone = {(r["case"], r["recipe"]) for r in new["rows"]}
    recipes = old["recipes"] + [r for r in new["recipes"] if r not in old["recipes"]]
    rows = [r for r in old["rows"] if (r["case"], r["recipe"]) not in redone] + new["rows"]
    rows.sort(key=lambda r: (_natural(r["case"]), recipes.index(r["recipe"])))
    return {
        **old,
        "date": f"{old['date']}; {new['date']} for the re-run rows",
        "commit": f"{old['commit']}; {new['commit']} for the re-run rows",
        "command": f"{old['command']}, then {new['command']} --merge",
        "seconds_total": old["seconds_total"] + new["seconds_total"],
        "recipes": recipes,
        "rows": rows,
    }


def _natural(case: str):
    m = re.match(r"(\d+)(.*)", case)
    return (int(m.group(1)), m.group(2)) if m else (1000, case)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", action="store_true", help="write docs/bench/operator_faults.*")
    ap.add_argument("--cases", default="", help="comma-separated case numbers (default: all)")
    ap.add_argument("--recipes", default="vapo,gan2d", help="recipes of cases 1-9")
    ap.add_argument("--merge", action="store_true",
                    help="with --out: keep the rows of docs/bench/operator_faults.json that this "
                    "run does not redo (same case and recipe)")  # fmt: skip
    ap.add_argument("--render", action="store_true",
                    help="only re-write docs/bench/operator_faults.md and the matrix in "
                    "docs/operating.md from docs/bench/operator_faults.json")  # fmt: skip
    args = ap.parse_args()
    if args.render:
        meta = json.loads((OUT_DIR / "operator_faults.json").read_text())
        (OUT_DIR / "operator_faults.md").write_text(markdown(meta))
        render_operating(meta)
        print(f"written: {OUT_DIR / 'operator_faults.md'}, {OPERATING}")
        return
    chosen = [c for c in args.cases.split(",") if c] or list(CASES)
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {list(CASES)} (5 runs with 3, 6 with 4)")
    recipes = [r for r in args.recipes.split(",") if r]
    if not recipes or any(r not in of.RECIPES for r in recipes):
        ap.error(f"--recipes: choose from {list(of.RECIPES)}")
    t0 = time.perf_counter()
    commit = git_state()  # the code measured (another edit may land during the run)
    root = Path(tempfile.mkdtemp(prefix="operator_faults_"))
    rows = []
    try:
        for recipe in recipes:
            todo = [c for c in chosen if CASES[c][1] or recipe == "vapo"]
            rroot = root / recipe
            base = None
            if any(CASES[c][2] for c in todo):
                ctx = of.Ctx(rroot / "base", recipe)
                try:
                    base, row = of.base_run(ctx)
                finally:
                    ctx.close()
                rows.append(row)
                if not row.ok:
                    raise SystemExit(f"the {recipe} base run failed: {row.why}")
            for c in todo:
                fn = CASES[c][0]
                ctx = of.Ctx(rroot / f"case{c}", recipe, base)
                try:
                    rows += fn(ctx)
                except Exception as e:  # the script's own failure on a case: recorded
                    why = f"{type(e).__name__}: {e}"
                    name = f"case {c}: the benchmark itself failed"
                    rows.append(ctx.row(c, name, "—", None, lost="?", ok=False, why=why))
                finally:
                    ctx.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t0
    rows.sort(key=lambda r: (_natural(r.case), recipes.index(r.recipe)))
    end = git_state()
    meta = {
        "date": date.today().isoformat(),
        "commit": commit if end == commit else f"{commit} (at the start; {end} at the end)",
        "machine": f"{os.cpu_count()} CPU cores",
        "command": "python -m benchmarks.operator_faults"
        + (" --out" if args.out else "")
        + (f" --cases {args.cases}" if args.cases else "")
        + (f" --recipes {args.recipes}" if args.recipes != "vapo,gan2d" else ""),
        "seconds_total": round(total, 1),
        "recipes": recipes,
        "rows": [r.__dict__ for r in rows],
    }
    if args.merge:
        meta = merged(json.loads((OUT_DIR / "operator_faults.json").read_text()), meta)
    bad = [r for r in rows if not r.ok]
    print(f"\n{len(rows)} rows, {len(bad)} not meeting the target, {total:.0f} s")
    for r in bad:
        print("  " + of.row_line(r))
    if args.out:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "operator_faults.json").write_text(json.dumps(meta, indent=1))
        (OUT_DIR / "operator_faults.md").write_text(markdown(meta))
        render_operating(meta)
        print(f"written: {OUT_DIR / 'operator_faults.md'}, {OUT_DIR / 'operator_faults.json'}, "
              f"the matrix in {OPERATING}")  # fmt: skip


if __name__ == "__main__":
    main()
