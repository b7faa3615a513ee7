"""A real two-node Ray cluster on loopback (deploy/local_cluster.sh: `ray start --head` and a second
`ray start --address=...`, 1 CPU each, their own temp dirs): runs attached with `--ray-address` land
on both nodes, a second node killed mid-run leaves the run to finish on the head with the documents
of the undisturbed run, and `ray job submit` runs the same command as a job (slow).

Cost here: the cluster starts in ~25 s, each run of the recipe's map stages on 3 copies of the six real
WARCs ~20 s on it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import tokenmill_cli
from tokenmill.manifests import read_tasks

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "local_cluster.sh"
STAGES = ["url_filter", "extract", "language", "quality", "pii"]  # one fused map step


def script(*args, timeout=180) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY": str(Path(sys.executable).parent / "ray")}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env)


def cluster_env(d: Path) -> dict:
    env = {}
    for line in (d / "env").read_text().splitlines():
        m = re.match(r"export (\w+)=(.*)", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


@pytest.fixture
def cluster():
    """Starts the cluster in the background; calling the fixture's value waits for it (its dir)."""
    d = Path(tempfile.mkdtemp(prefix="tmc", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY": str(Path(sys.executable).parent / "ray")}
    up = subprocess.Popen(["bash", str(SCRIPT), "up", str(d)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)

    def ready() -> Path:
        log, _ = up.communicate(timeout=180)
        if up.returncode != 0:
            pytest.fail(f"deploy/local_cluster.sh up failed:\n{log}")
        return d

    try:
        yield ready
    finally:
        if up.poll() is None:
            up.wait(timeout=180)
        script("down", d)
        shutil.rmtree(d, ignore_errors=True)


def node_pids(d: Path, node: str) -> set[int]:
    """PIDs of the Ray workers a node started (its log files are named after them)."""
    logs = d / node / "session_latest" / "logs"
    return {int(m.group(1)) for p in logs.glob("worker-*.out") if (m := re.search(r"-(\d+)\.out$", p.name))}


def write_config(tmp: Path, shared_data: Path, out: Path) -> Path:
    """The map stages over three copies of the six real WARCs: 18 tasks, enough for both nodes."""
    inputs = tmp / "warcs"
    if not inputs.is_dir():
        inputs.mkdir()
        for k in range(3):
            for w in sorted((shared_data / "warc").glob("*.warc.gz")):
                shutil.copyfile(w, inputs / f"c{k}-{w.name}")
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(f"input: {{paths: ['{inputs}/*.warc.gz']}}\noutput: {out}\n"
                   f"executor: {{kind: ray}}\nstages: {STAGES}\n")
    return cfg


def docs_digest(run: Path) -> str:
    parts = sorted((run / "docs").glob("part-*.parquet"))
    assert parts, f"no documents in {run}"
    return hashlib.sha256(b"".join(p.name.encode() + hashlib.sha256(p.read_bytes()).digest() for p in parts)).hexdigest()


def run_attached(cfg: Path, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([tokenmill_cli(), "run", str(cfg), "--ray-address", env["RAY_ADDRESS"], "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, **kw)


def busy_worker(d: Path, node: str) -> int | None:
    """The PID of a worker of `node` running a task now (Ray titles it after the function), or None."""
    raylets = subprocess.run(["pgrep", "-f", f"raylet/raylet .*{d}/{node}/"], capture_output=True, text=True).stdout.split()
    for r in raylets:
        for child in subprocess.run(["pgrep", "-P", r], capture_output=True, text=True).stdout.split():
            if running_task(int(child)):
                return int(child)
    return None


def running_task(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::call_task")
    except OSError:
        return False


def freeze_mid_task(d: Path, node: str) -> int | None:
    """SIGSTOPs a worker of `node` that is still inside a task when frozen (its result not sent: Ray
    retitles the worker only after the task returns), so the node's death is certain to cost that
    task; a worker that finished in between is let go again. Returns the frozen PID or None."""
    pid = busy_worker(d, node)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return None
    if running_task(pid):
        return pid
    os.kill(pid, signal.SIGCONT)
    return None


def done_on(out: Path, pids: set[int]) -> bool:
    """A task attempt that ran in one of `pids` is recorded done in the run's manifest."""
    if not any((out / "manifest" / "tasks").glob("*.parquet")):
        return False
    try:
        rows = read_tasks(str(out)).to_pylist()
    except OSError:  # a manifest file replaced while listed: look again
        return False
    return any(r["status"] == "done" and int(r["worker"].rsplit(":", 1)[1]) in pids for r in rows)


def test_two_nodes_share_a_run_and_losing_one_mid_run_changes_no_document(cluster, shared_data, tmp_path):
    # the reference: the same config, undisturbed, in one process (it runs while the cluster starts)
    ref = tmp_path / "local"
    local = subprocess.Popen([tokenmill_cli(), "run", str(write_config(tmp_path, shared_data, ref)), "--executor",
                              "local", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    d = cluster()
    out = tmp_path / "killed"
    env = cluster_env(d)
    proc = run_attached(write_config(tmp_path, shared_data, out), env)
    try:
        deadline = time.time() + 180
        # node2 has finished a task and is inside another: freeze that worker (so the task cannot
        # finish between the look and the kill), then kill the node (raylet, workers, agents)
        while not (done_on(out, node_pids(d, "node2")) and freeze_mid_task(d, "node2")):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("node2 did not finish a task and start another before the run ended:\n"
                            + proc.communicate()[0][-3000:])
            time.sleep(0.05)
        killed = script("kill-node2", d)
        assert killed.returncode == 0, killed.stderr
        log, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-3000:]
    rows = read_tasks(str(out)).to_pylist()
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in rows if r["status"] == "done"}
    head, node2 = node_pids(d, "head"), node_pids(d, "node2")
    print(f"\ntasks ran in workers {sorted(pids & head)} on the head and {sorted(pids & node2)} on node2")
    assert pids & head and pids & node2 and pids <= head | node2, (pids, head, node2)
    lost = [r for r in rows if r["status"] == "failed"]
    assert lost and all(re.search("NodeDiedError|WorkerCrashedError", r["error"] or "") for r in lost), lost
    retried = {r["task_id"] for r in rows if r["status"] == "done"} & {r["task_id"] for r in lost}
    print(f"node2 killed mid-run: {len(lost)} attempt(s) lost there, retried on the head: {sorted(retried)}")
    assert retried == {r["task_id"] for r in lost}
    assert local.wait(timeout=300) == 0, local.communicate()[0][-3000:]
    assert docs_digest(out) == docs_digest(ref)


@pytest.mark.slow
def test_ray_job_submit_runs_the_recipe_on_both_nodes(cluster, shared_data, tmp_path):
    ref = tmp_path / "local"
    local = subprocess.Popen([tokenmill_cli(), "run", str(write_config(tmp_path, shared_data, ref)), "--executor",
                              "local", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    d = cluster()
    env = cluster_env(d)
    out = tmp_path / "job"
    cfg = write_config(tmp_path, shared_data, out)
    ray = str(Path(sys.executable).parent / "ray")
    job = subprocess.run([ray, "job", "submit", "--address", env["RAY_DASHBOARD"], "--working-dir", str(tmp_path),
                          "--", "python", "-m", "tokenmill", "run", str(cfg), "--no-progress"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    rows = read_tasks(str(out)).to_pylist()
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in rows if r["status"] == "done"}
    assert pids & node_pids(d, "head") and pids & node_pids(d, "node2"), pids
    assert local.wait(timeout=300) == 0, local.communicate()[0][-3000:]
    assert docs_digest(out) == docs_digest(ref)


def test_deploy_files_parse_and_name_a_config_tokenmill_accepts():
    """deploy/: the cluster launcher YAML, the KubeRay RayJob and the S3 config they run (what can be
    checked without a cloud account: structure, and the config through tokenmill's own validation)."""
    import yaml

    from tokenmill.config import from_dict

    deploy = ROOT / "deploy"
    cfg = yaml.safe_load((deploy / "fineweb-s3.yaml").read_text())
    parsed = from_dict(cfg, "deploy/fineweb-s3.yaml", check_inputs=False)
    assert all(p.startswith("s3://") for p in parsed.input.paths) and parsed.output.startswith("s3://")
    assert parsed.input.base_url.startswith("s3://") and parsed.executor.kind == "ray"

    launcher = yaml.safe_load((deploy / "ray-cluster.yaml").read_text())
    assert launcher["provider"]["type"] == "aws" and launcher["head_node_type"] in launcher["available_node_types"]
    workers = [t for n, t in launcher["available_node_types"].items() if n != launcher["head_node_type"]]
    assert workers and all(t["max_workers"] >= t["min_workers"] for t in workers)
    assert any("ray[default]" in c for c in launcher["setup_commands"])
    assert any("ray start --head" in c for c in launcher["head_start_ray_commands"])

    job = yaml.safe_load((deploy / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["entrypoint"].startswith("python -m tokenmill run /config/fineweb-s3.yaml")
    spec = job["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"] for c in head["containers"] for m in c.get("volumeMounts", [])}
    assert "/config" in mounts and head["volumes"][0]["configMap"]["name"] == "tokenmill-config"
    assert spec["workerGroupSpecs"] and all(g["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
                                            for g in spec["workerGroupSpecs"])
    assert "fineweb-s3.yaml" in (deploy / "rayjob.yaml").read_text().split("kubectl create configmap")[1]
