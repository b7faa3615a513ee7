"""The exit status is the run's status, every time: the CLI as a subprocess, many times over.

Before the fix, a successful `tokenmill run` (local executor, stages [pii], 1,000-line JSONL)
printed "done" and then exited 134 ("terminate called without an active exception": Arrow's
native thread pools torn down at interpreter exit) in about 1 run in 5.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import make_jsonl, run_cli

N = 24  # runs per command; at ~1 failure in 5 before the fix, 24 clean runs by chance: < 0.5%


@pytest.fixture(scope="module")
def pii_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("exit")
    make_jsonl(d / "in.jsonl", [{"id": f"d{i}", "text": f"Call 555-123-{i:04d} or mail x{i}@example.com about study {i}."}
                                for i in range(1000)])
    return d


def _many(fn, n=N):
    with ThreadPoolExecutor(2) as pool:  # two at a time: the machine has two cores
        return list(pool.map(fn, range(n)))


def test_run_exits_0_every_time(pii_config):
    d = pii_config

    def one(i):
        (d / f"c{i}.yaml").write_text(json.dumps({"input": str(d / "in.jsonl"), "output": str(d / f"out{i}"),
                                                  "stages": ["pii"], "executor": {"kind": "local"}}))
        p = run_cli("run", d / f"c{i}.yaml", "--no-progress")
        return p.returncode, p.stderr[-500:]

    results = _many(one)
    bad = [(i, rc, err) for i, (rc, err) in enumerate(results) if rc != 0]
    assert not bad, f"{len(bad)} of {N} successful runs exited non-zero: {bad[:2]}"


def test_inspect_exits_0_every_time(pii_config):
    d = pii_config
    (d / "i.yaml").write_text(json.dumps({"input": str(d / "in.jsonl"), "output": str(d / "iout"),
                                          "stages": ["pii"], "executor": {"kind": "local"}}))
    assert run_cli("run", d / "i.yaml", "--no-progress").returncode == 0
    codes = _many(lambda i: run_cli("inspect", d / "iout").returncode)
    assert codes == [0] * N


def test_failed_and_bad_config_exit_codes(tmp_path):
    """1 when a task fails for good, 2 for a bad config — also every time, never a crash code."""
    make_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "hello"}])
    (tmp_path / "bad.yaml").write_text("input: in.jsonl\noutput: out\nstages: [nope]\n")
    codes = _many(lambda i: run_cli("run", tmp_path / "bad.yaml", cwd=tmp_path).returncode, n=6)
    assert codes == [2] * 6
    p = run_cli("inspect", tmp_path / "nowhere")
    assert p.returncode == 2 and "no manifest" in p.stderr


@pytest.mark.parametrize("n", [pytest.param(3, id="3x"), pytest.param(20, id="20x", marks=pytest.mark.slow)])
def test_demo_no_train_exits_0_every_time(tmp_path, n):
    codes = [run_cli("demo", "--no-train", "--executor", "local", "--no-progress", "--out", tmp_path / f"d{i}").returncode
             for i in range(n)]
    assert codes == [0] * n
