"""`tokenmill inspect --json`, and inspect while a run is in progress: only committed task rows
count, and each step says tasks done / pending."""

from __future__ import annotations

import json
import shutil

from seeing_run import small_run
from tokenmill import cli
from tokenmill.manifests.inspect import progress_path, stage_table, step_status
from tokenmill.manifests.store import read_runs, write_run


def test_inspect_json(capsys):
    run = str(small_run())
    capsys.readouterr()  # what making the run printed (when this test is the first to need it)
    assert cli.main(["inspect", run, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "done" and d["config"]["executor"]["kind"] == "local"
    stages = {s["stage"]: s for s in d["stages"]}
    assert stages["quality"]["docs_in"] == stages["quality"]["docs_out"] + stages["quality"]["dropped"]
    assert all(s["pending"] == 0 and s["done"] == s["tasks"] > 0 for s in d["steps"])


def _in_progress(tmp_path):
    """A copy of the small run's manifests made to look like a run stopped during step 0: its
    record says running, shard 1's attempt and every later step are not committed yet (a
    half-written temporary is there instead), and the driver's progress file says step 0 has 3 tasks."""
    src = small_run() / "manifest"
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir / "manifest")
    rec = read_runs(str(run_dir)).to_pylist()[0]
    write_run(str(run_dir), dict(rec, status="running", finished=None))
    tasks = run_dir / "manifest" / "tasks"
    for f in tasks.glob("*.parquet"):
        if not f.name.startswith("s00-00000."):
            f.unlink()
    (tasks / ".s00-00001.x.a1.parquet.tmp-0badf00d").write_bytes(b"PAR1 half written")
    p = progress_path(str(run_dir), rec["run_id"])
    step0 = json.loads(rec["steps"])[0]["name"]
    (run_dir / "manifest" / "progress").mkdir(exist_ok=True)
    (run_dir / "manifest" / "progress" / p.rsplit("/", 1)[1]).write_text(json.dumps({
        "run_id": rec["run_id"], "steps": {step0: {"step": 0, "label": step0, "tasks": 3, "todo": 3, "done": 1,
                                                   "failed": 0, "closed": False}}}))
    return run_dir


def test_inspect_while_a_run_is_in_progress(tmp_path, capsys):
    run_dir = _in_progress(tmp_path)
    run, table = stage_table(str(run_dir))
    steps = step_status(str(run_dir), run)
    assert (steps[0]["state"], steps[0]["done"], steps[0]["pending"], steps[0]["tasks"]) == ("running", 1, 2, 3)
    assert steps[1]["state"] == "not started" and steps[1]["pending"] is None
    assert table[0]["tasks"] == 1  # only the committed attempt of shard 0
    assert cli.main(["inspect", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "is in progress" in out and "not started" in out and "(?: the step has not started" in out
    assert cli.main(["inspect", str(run_dir), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "running" and d["steps"][0]["pending"] == 2
