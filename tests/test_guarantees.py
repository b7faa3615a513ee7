"""What tokenmill guarantees when things break: a killed worker, a dead Ray node, a killed driver,
any executor or worker count — the same docs/ and token shards as an undisturbed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import run_cli, tokenmill_cli
from tokenmill.config import from_dict
from tokenmill.manifests import read_tasks
from tokenmill.pipeline import run_pipeline
from tokenmill.pipeline.executors import RayExecutor
from tokenmill.storage import sha256_file


def snapshot(run_dir: Path) -> dict:
    files = sorted((run_dir / "docs").glob("part-*.parquet")) + sorted((run_dir / "tokens").glob("*.bin"))
    assert files, f"no outputs in {run_dir}"
    return {p.relative_to(run_dir).as_posix(): sha256_file(str(p)) for p in files}


def recipe(shared_data, out: Path, kind: str = "local", **executor) -> dict:
    """The default recipe plus tokenize on the real WARCs (~12 s on one core)."""
    return {"input": str(shared_data / "warc/*.warc.gz"), "output": str(out),
            "executor": {"kind": kind, **executor}, "tokenize": {"vocab_size": 512}}


@pytest.fixture(scope="module")
def clean(shared_data, tmp_path_factory):
    """One undisturbed run, local executor: the reference every guarantee is checked against."""
    out = tmp_path_factory.mktemp("clean") / "run"
    assert run_pipeline(from_dict(recipe(shared_data, out), "t.yaml"), progress=False).ok
    return snapshot(out)


def processes(pattern: str, parent: int | None = None) -> list[int]:
    """PIDs whose command line contains `pattern` (and whose parent is `parent`), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if pattern in cmd and (parent is None or ppid == parent):
            out.append(int(d.name))
    return out


def wait_for(cond, timeout=120, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        hit = cond()
        if hit:
            return hit
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def manifest_names(run_dir: Path) -> list[str]:
    d = run_dir / "manifest" / "tasks"
    return [p.name for p in d.iterdir()] if d.is_dir() else []


# ---- determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_same_output_with_ray_and_any_worker_count(shared_data, tmp_path, clean, ray_session, workers):
    out = tmp_path / "run"
    ex = RayExecutor(workers=workers)
    assert run_pipeline(from_dict(recipe(shared_data, out, "ray"), "t.yaml"), progress=False, executor=ex).ok
    assert snapshot(out) == clean
    again = run_pipeline(from_dict(recipe(shared_data, out, "ray"), "t.yaml"), progress=False, executor=ex)
    assert again.ok and again.done == 0 and snapshot(out) == clean


# ---- a worker killed mid-task --------------------------------------------------------------------

def test_a_killed_ray_worker_is_retried_and_changes_nothing(shared_data, tmp_path, clean, ray_session):
    raylet = ray_session._private.worker._global_node.all_processes["raylet"][0].process.pid
    out = tmp_path / "run"
    killed: list[int] = []

    def killer():
        pids = wait_for(lambda: processes("ray::call_task", parent=raylet), timeout=60, every=0.02)
        time.sleep(0.3)  # in the middle of extracting
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = run_pipeline(from_dict(recipe(shared_data, out, "ray", max_attempts=3), "t.yaml"), progress=False,
                           executor=RayExecutor(workers=2, max_attempts=3))
    t.join(5)
    assert killed, "no worker was killed"
    assert summary.ok, summary.one_line()
    rows = read_tasks(str(out)).to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["attempt"] == 1 for r in failed), "the killed attempt is recorded"
    retried = {r["task_id"] for r in failed}
    assert all(any(r["task_id"] == t and r["status"] == "done" and r["attempt"] == 2 for r in rows) for t in retried)
    assert snapshot(out) == clean


# ---- the Ray node itself dies --------------------------------------------------------------------

def test_a_dead_local_ray_node_is_restarted_and_the_run_goes_on(shared_data, tmp_path, clean):
    """Killing the raylet of the Ray that `tokenmill run` started: every pending task fails with
    LocalRayletDiedError. Before, those burnt every retry and the run failed; now the lost
    attempts are recorded, Ray is started again, and the run ends done with the clean output."""
    ray_tmp = tempfile.mkdtemp(prefix="tmr", dir="/tmp")  # short: Ray's socket paths must fit
    out = tmp_path / "run"
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps(recipe(shared_data, out, "ray", max_attempts=1)))
    proc = subprocess.Popen([tokenmill_cli(), "run", str(conf), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_TMPDIR": ray_tmp},
                            start_new_session=True)
    try:
        wait_for(lambda: any(n.startswith("s00-") for n in manifest_names(out)), timeout=180)
        raylets = processes(f"raylet")
        mine = [p for p in raylets if ray_tmp in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert mine, "the run's raylet was not found"
        os.kill(mine[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "starting it again" in stderr
    rows = read_tasks(str(out)).to_pylist()
    assert any("the Ray node died" in (r["error"] or "") for r in rows)
    assert snapshot(out) == clean
    subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)


# ---- the driver killed, at several points ----------------------------------------------------------

@pytest.mark.parametrize("marker", ["s00-", "dedup.", "tokenize."], ids=["map-step", "dedup", "tokenize"])
def test_a_killed_driver_resumes_to_the_same_output(shared_data, tmp_path, clean, marker):
    out = tmp_path / "run"
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps(recipe(shared_data, out)))
    proc = subprocess.Popen([tokenmill_cli(), "run", str(conf), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: any(marker in n for n in manifest_names(out)), timeout=180, every=0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "killed before the run ended"
    p = run_cli("run", conf, "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    assert " already done" in p.stdout and not p.stdout.split("already done")[0].endswith(" 0")
    assert snapshot(out) == clean
    assert run_cli("verify", out).returncode == 0
