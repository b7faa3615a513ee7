"""Progress on the driver: a bar with docs/s on a terminal, plain lines in a log, counts in the
run's progress file."""

from __future__ import annotations

import io
import json
import time
from types import SimpleNamespace

from tokenmill.manifests.inspect import read_progress
from tokenmill.pipeline.progress import StepProgress
from tokenmill.stats import StageStats


class Tty(io.StringIO):
    def isatty(self):
        return True


def _attempt(ok=True, final=True, docs=10):
    return SimpleNamespace(ok=ok, final=final, result=SimpleNamespace(stats=[StageStats("ingest", docs_in=docs)]))


def test_log_lines_without_a_terminal(tmp_path):
    out = io.StringIO()
    p = StepProgress("step 0 ingest", 3, stream=out, interval=0, record=(str(tmp_path), "r1", 0, "ingest", 4))
    p.attempt(_attempt())
    p.attempt(_attempt(ok=False, final=False))
    p.attempt(_attempt())
    p.attempt(_attempt(ok=False, final=True))
    p.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    first = next(ln for ln in lines if "1/3" in ln)
    assert first.startswith("step 0 ingest: 1/3 tasks (33%), 10 docs read") and "docs/s" in first and "ETA" in first
    assert "3/3 tasks (100%), 20 docs read" in lines[-1] and "1 retried, 1 failed" in lines[-1] and "done in" in lines[-1]
    rec = read_progress(str(tmp_path), "r1")["steps"]["ingest"]
    assert (rec["tasks"], rec["todo"], rec["done"], rec["failed"], rec["retries"], rec["closed"]) == (4, 3, 2, 1, 1, True)


def test_lines_are_throttled():
    out = io.StringIO()
    p = StepProgress("step 2 pii", 100, stream=out, interval=3600)
    for _ in range(100):
        p.attempt(_attempt())
    p.close()
    assert len(out.getvalue().splitlines()) == 1, "one line at the end, none in between"


def test_a_bar_on_a_terminal():
    out = Tty()
    p = StepProgress("step 0 ingest", 2, stream=out, interval=0)
    p.attempt(_attempt(docs=500))
    p.attempt(_attempt(ok=False, final=False))
    p.attempt(_attempt(docs=500))
    p.close()
    text = out.getvalue()
    assert "\r" in text and "2/2" in text
    last = text.split("\r")[-1]
    assert "docs/s" in last and "1 retried, 0 failed" in last


def test_disabled_shows_nothing_but_still_records(tmp_path):
    out = io.StringIO()
    p = StepProgress("x", 1, enabled=False, stream=out, record=(str(tmp_path), "r2", 1, "dedup.pairs", 1))
    p.attempt(_attempt())
    p.close()
    assert out.getvalue() == ""
    assert json.loads((tmp_path / "manifest" / "progress" / "r2.json").read_text())["steps"]["dedup.pairs"]["done"] == 1


def test_a_line_every_interval_while_no_task_ends():
    out = io.StringIO()
    p = StepProgress("step 0 ingest", 2, stream=out, interval=0.05)
    time.sleep(0.5)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all("0/2 tasks (0%)" in ln for ln in lines)
    assert "ETA ?" in lines[0] and "done in" in lines[-1]
