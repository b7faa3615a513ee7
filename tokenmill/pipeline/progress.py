"""Progress of one step's tasks on the driver: a bar on a terminal, a line every few seconds in a log.

`StepProgress(desc, total, ...)` is created per batch of tasks (`Runner._run_tasks`), fed every
attempt (`attempt(a)`: done, failed for good, or failed and retried) and closed. It shows
tasks done of total, documents per second (the documents the tasks read: `stats[0].docs_in`),
retries, failures and an ETA:
  - stderr is a terminal: a tqdm bar per step, the rates as its postfix;
  - otherwise (a CI or cluster log): one plain line per step every `interval` seconds
    (TOKENMILL_PROGRESS_INTERVAL, default 5), also while no task ends, and one when the step
    ends; no carriage returns.
Whatever is shown, the counts go to `RUN/manifest/progress/<run_id>.json` (atomically, at most
every `interval` seconds and at close): the task totals per step that `tokenmill inspect` needs
to say what is pending while a run is in progress (task rows say only what is done).
The Ray dashboard's address is printed once when Ray serves one. Cost: one JSON file of a few
hundred bytes per step, rewritten at most every `interval` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

from tqdm import tqdm

from tokenmill import storage
from tokenmill.manifests.inspect import progress_path

log = logging.getLogger(__name__)

_RECORDS: dict[str, dict] = {}  # progress file -> its content (the driver is the only writer)
_DASHBOARD_SHOWN: set[str] = set()


def dashboard_url() -> str | None:
    """The Ray dashboard's address when this process is connected to a Ray that serves one."""
    ray = sys.modules.get("ray")
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return None
    try:
        from ray._private import worker  # no public accessor once ray.init's context is gone
    except ImportError:
        return None
    url = getattr(getattr(worker, "_global_node", None), "webui_url", None)
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def _duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class StepProgress:
    def __init__(self, desc: str, total: int, enabled: bool = True, record: tuple | None = None,
                 stream=None, interval: float | None = None):
        """`record`: (run_dir, run_id, step index, label, tasks in the step) to write the counts to
        the run's progress file; None writes nothing."""
        self.desc, self.total = desc, total
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval if interval is not None else float(os.environ.get("TOKENMILL_PROGRESS_INTERVAL", 5))
        self.done = self.failed = self.retries = self.docs = 0
        self.started = self.last_line = self.last_write = time.time()
        self.record = record
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lines = enabled and not tty
        self.bar = tqdm(total=total, desc=desc, unit="task", file=self.stream, dynamic_ncols=True) if tty else None
        if enabled:
            url = dashboard_url()
            if url and url not in _DASHBOARD_SHOWN:
                _DASHBOARD_SHOWN.add(url)
                self._say(f"Ray dashboard: {url}")
        self._write(force=True)
        # a ticker keeps the clock moving while no task ends: the bar's elapsed time and ETA each
        # second, a log line every `interval` seconds
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._ticker = None
        if self.bar is not None or self.lines:
            self._ticker = threading.Thread(target=self._tick, name="tokenmill-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        period = 1.0 if self.bar is not None else max(self.interval, 0.05)
        while not self._stop.wait(period):
            with self._lock:
                if self.bar is not None:
                    self.bar.refresh()
                elif time.time() - self.last_line >= self.interval:
                    self.last_line = time.time()
                    self._say(self.line())

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def rates(self) -> tuple[float, float | None]:
        """(documents per second, seconds left) so far."""
        elapsed = max(time.time() - self.started, 1e-9)
        finished = self.done + self.failed
        eta = (self.total - finished) * elapsed / finished if finished else None
        return self.docs / elapsed, eta

    def line(self, closing: bool = False) -> str:
        dps, eta = self.rates()
        finished = self.done + self.failed
        pct = 100 * finished / self.total if self.total else 100.0
        parts = [f"{self.desc}: {finished}/{self.total} tasks ({pct:.0f}%)"]
        if self.docs:
            parts.append(f"{self.docs:,} docs read, {dps:,.1f} docs/s")
        if self.retries or self.failed:
            parts.append(f"{self.retries} retried, {self.failed} failed")
        elapsed = _duration(time.time() - self.started)
        parts.append(f"done in {elapsed}" if closing else f"elapsed {elapsed}, ETA {_duration(eta)}")
        return ", ".join(parts)

    def attempt(self, a) -> None:
        """One attempt reported by the executor (pipeline.executors.Attempt)."""
        with self._lock:
            self._attempt(a)

    def _attempt(self, a) -> None:
        if a.ok:
            self.done += 1
            stats = getattr(a.result, "stats", None) or []
            self.docs += stats[0].docs_in if stats else 0
        elif a.final:
            self.failed += 1
        else:
            self.retries += 1
        if self.bar is not None:
            dps, _ = self.rates()
            post = ([f"{dps:,.1f} docs/s"] if self.docs else []) + (
                [f"{self.retries} retried, {self.failed} failed"] if self.retries or self.failed else [])
            self.bar.set_postfix_str(", ".join(post), refresh=False)
            if a.ok or a.final:
                self.bar.update(1)
            else:
                self.bar.refresh()
        now = time.time()
        if self.lines and now - self.last_line >= self.interval:
            self.last_line = now
            self._say(self.line())
        self._write()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._say(self.line(closing=True))
        self._write(force=True, closed=True)

    def _write(self, force: bool = False, closed: bool = False) -> None:
        if self.record is None or (not force and time.time() - self.last_write < self.interval):
            return
        run_dir, run_id, step, label, tasks = self.record
        path = progress_path(run_dir, run_id)
        rec = _RECORDS.setdefault(path, {"run_id": run_id, "steps": {}})
        rec["updated"] = time.time()
        rec["steps"][label] = {"step": step, "label": label, "tasks": tasks, "todo": self.total, "done": self.done,
                               "failed": self.failed, "retries": self.retries, "docs": self.docs,
                               "started": self.started, "closed": closed}
        self.last_write = time.time()
        try:
            with storage.atomic_write(path) as f:
                f.write(json.dumps(rec, sort_keys=True).encode())
        except OSError as e:  # progress is advisory: never fail a run over it
            log.warning("could not write %s: %s", path, e)
