"""The driver at snapshot scale, simulated: N small inputs (a Common Crawl snapshot is ~90,000 WARCs)
through ingest -> pii on a local Ray, each measured as a user runs it (the `tokenmill` command).

For each N in --sizes: N one-line JSONL files and a `warc.paths`-style listing of them (relative
lines, `input.base_url` the folder); then
  run      `tokenmill run CONFIG`: wall time, the driver's peak RSS (VmHWM), time per task
  resume   the same command again, everything done: wall time
  inspect  `tokenmill inspect RUN`: wall time
  manifest attempt files the driver wrote, files left in manifest/tasks after compaction, and the
           time DuckDB takes to read them (`SELECT count(*) FROM 'RUN/manifest/tasks/*.parquet'`)
The peer is the driver as it was before compaction, measured at 2,000 inputs on this machine
(issue 12: run 36 s, resume 23 s, inspect 7 s, 2,002 manifest files); ratios are printed against
its per-task figures. Checks (exit 1 when one fails): driver peak RSS < 2 GB, resume < 60 s and
inspect < 10 s at every size, and no step grows faster than linearly (time per task at the
largest size <= 2x that at the smallest).

Run: .venv/bin/python bench/driver_scale.py [--sizes 1000 10000 90000] [--workdir DIR] [--keep]
Costs here (2 cores, shared): ~20 ms of driver time per task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PEER = {"n": 2000, "run": 36.0, "resume": 23.0, "inspect": 7.0, "files": 2002}  # before compaction, issue 12


def make_inputs(d: Path, n: int) -> Path:
    """n one-line JSONL files in folders of 1,000, and a listing of them (relative paths)."""
    lines = []
    for i in range(n):
        sub = d / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        name = f"{i // 1000:03d}/doc-{i:06d}.jsonl"
        (d / name).write_text(json.dumps({"id": f"d{i}", "text": f"Document {i}: write to user{i}@example.com."}) + "\n")
        lines.append(name)
    listing = d / "inputs.paths"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds, the process's peak RSS in bytes (VmHWM, polled), and its result."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    status = Path(f"/proc/{p.pid}/status")
    while p.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.2)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    return wall, peak, res


def duckdb_read_s(run: Path) -> tuple[float, int]:
    import duckdb

    t0 = time.perf_counter()
    n = duckdb.sql(f"SELECT count(*) FROM '{run}/manifest/tasks/*.parquet'").fetchall()[0][0]
    return time.perf_counter() - t0, n


def measure(n: int, work: Path) -> dict:
    d = work / f"n{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    listing = make_inputs(d / "inputs", n)
    gen_s = time.perf_counter() - t0
    run = d / "run"
    cfg = d / "config.yaml"
    cfg.write_text(json.dumps({"input": {"paths": [str(listing)], "base_url": str(d / "inputs")},
                               "output": str(run), "executor": {"kind": "ray"}, "stages": ["pii"]}))
    tm = str(BIN / "tokenmill")
    run_s, rss, res = timed([tm, "run", str(cfg), "--no-progress"], d)
    resume_s, resume_rss, again = timed([tm, "run", str(cfg), "--no-progress"], d)
    if f"0 tasks run, {n} already done" not in again.stdout + again.stderr:
        sys.exit(f"resume at {n} did not skip every task:\n{(again.stdout + again.stderr)[-2000:]}")
    inspect_s, _, _ = timed([tm, "inspect", str(run)], d)
    files = sorted(p.name for p in (run / "manifest" / "tasks").glob("*.parquet"))
    read_s, rows = duckdb_read_s(run)
    size = sum(p.stat().st_size for p in (run / "manifest").rglob("*.parquet"))
    return {"n": n, "gen_s": gen_s, "run_s": run_s, "driver_rss": max(rss, resume_rss), "resume_s": resume_s,
            "inspect_s": inspect_s, "attempt_files": n, "files_after": len(files), "manifest_mb": size / 2**20,
            "duckdb_s": read_s, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workdir", type=Path, default=None, help="where inputs and runs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="driver_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.sizes:
            r = measure(n, work)
            results.append(r)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'inputs':>8}{'run s':>9}{'ms/task':>9}{'resume s':>10}{'inspect s':>11}{'driver RSS':>12}"
          f"{'files written':>15}{'files left':>12}{'MB':>7}{'duckdb s':>10}")
    for r in results:
        print(f"{r['n']:>8,}{r['run_s']:>9.1f}{1000 * r['run_s'] / r['n']:>9.1f}{r['resume_s']:>10.1f}"
              f"{r['inspect_s']:>11.1f}{r['driver_rss'] / 2**20:>9.0f} MB{r['attempt_files']:>15,}"
              f"{r['files_after']:>12,}{r['manifest_mb']:>7.1f}{r['duckdb_s']:>10.2f}")
    peer_ms = 1000 * PEER["run"] / PEER["n"]
    print(f"\npeer (before compaction, {PEER['n']:,} inputs): run {PEER['run']:.0f} s ({peer_ms:.1f} ms/task), "
          f"resume {PEER['resume']:.0f} s, inspect {PEER['inspect']:.0f} s, {PEER['files']:,} manifest files")
    for r in results:
        scale = r["n"] / PEER["n"]
        print(f"  at {r['n']:,}: run ms/task {1000 * r['run_s'] / r['n']:.1f} vs {peer_ms:.1f} "
              f"(ratio {(r['run_s'] / r['n']) / (PEER['run'] / PEER['n']):.2f}); resume {r['resume_s']:.1f} s vs "
              f"{PEER['resume'] * scale:.0f} s linear from the peer; inspect {r['inspect_s']:.1f} s vs "
              f"{PEER['inspect'] * scale:.0f} s")
    fails = []
    for r in results:
        if r["driver_rss"] >= 2 << 30:
            fails.append(f"driver peak RSS {r['driver_rss'] / 2**30:.2f} GB at {r['n']} (target < 2 GB)")
        if r["resume_s"] >= 60:
            fails.append(f"resume with all done took {r['resume_s']:.0f} s at {r['n']} (target < 60 s)")
        if r["inspect_s"] >= 10:
            fails.append(f"inspect took {r['inspect_s']:.1f} s at {r['n']} (target < 10 s)")
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        for key in ("run_s", "resume_s", "inspect_s"):
            # fixed costs (Ray's start, imports) dominate small runs: compare the growth of the rest
            per_lo, per_hi = lo[key] / lo["n"], hi[key] / hi["n"]
            if per_hi > 2 * per_lo and hi[key] > 10:
                fails.append(f"{key} per input grew {per_hi / per_lo:.1f}x from {lo['n']} to {hi['n']}: worse than linear")
    for f in fails:
        print("FAIL:", f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
