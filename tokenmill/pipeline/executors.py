"""Executors: run a list of tasks with bounded parallelism and retries, reporting each attempt.

`LocalExecutor` runs tasks one after another in this process (tests, debugging: breakpoints
work). `RayExecutor` submits them as Ray tasks: a local Ray when no address is given (the
embedded default; its workers at the driver's priority, `ray_init_kwargs`), else the cluster
at `address` / $RAY_ADDRESS (also under `ray job submit`).
This package is the only place in tokenmill that imports ray.

A task is `Task(task_id, fn, args, cpus=1)`; `fn(*args)` returns a `TaskResult`. Under Ray a task
reserves `cpus` CPUs and its worker's Rust thread pool (tokenizers' encode_batch and BPE training
use rayon) gets as many threads (RAYON_NUM_THREADS), as Ray itself does for OpenMP: otherwise
every one of a node's N tasks starts N threads. Measured on this 2-core machine, two encode tasks
with 8 rayon threads each ran ~40% slower than with one each. A task of several CPUs carries the
variable in a per-task runtime_env (a worker of its own); a one-CPU task, nearly all of them, sets
it in its worker before its body runs: such workers only ever run one-CPU tasks, and a per-task
runtime_env would make Ray start a new worker through its runtime-env agent instead of using the
ones it started beforehand (measured: the first task of a run started ~1 s later, 7.3-7.8 s vs
6.4-6.5 s after the run's start, three runs each). Failures (an
exception, a crashed worker) are retried up to `max_attempts` with a short backoff; every
attempt is reported through the callbacks so the manifest records it. Errors that say the
data or the code is wrong (`NOT_RETRIED`: an assertion, a ValueError...) would fail the same
way again, so they fail the task at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)


NOT_RETRIED = (AssertionError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError)


def is_final(e: BaseException, attempt: int, max_attempts: int) -> bool:
    # Under Ray the raised error is also an instance of the task's own exception class.
    return attempt >= max_attempts or isinstance(e, NOT_RETRIED)


@dataclass
class Task:
    task_id: str
    fn: Callable
    args: tuple
    attempt: int = 1
    cpus: int = 1
    gpus: float = 0  # Ray: num_gpus the task reserves (a classify step with classify.num_gpus)
    lost: int = 0  # attempts lost to a dead Ray node: not counted against max_attempts


@dataclass
class Attempt:
    task: Task
    ok: bool
    result: Any = None
    error: str | None = None
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0
    final: bool = True  # False when the task will be tried again


def call_task(fn: Callable, args: tuple) -> tuple[Any, str, float, float]:
    """Runs on the worker: the result plus where and when it ran."""
    started = time.time()
    result = fn(*args)
    return result, f"{socket.gethostname()}:{os.getpid()}", started, time.time()


def call_task_one_cpu(fn: Callable, args: tuple) -> tuple[Any, str, float, float]:
    """call_task for a Ray task that reserves one CPU: its worker's Rust thread pool gets one thread
    (rayon reads the variable when it first starts, so before the task's body)."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    return call_task(fn, args)


def _error_text(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]


class LocalExecutor:
    kind = "local"

    def __init__(self, workers: int | None = None, max_attempts: int = 3, backoff_s: float = 0.0):
        self.workers = 1
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_task_cpus = self.total_cpus = os.cpu_count() or 1  # one task at a time, in this process

    def run(self, tasks: list[Task], on_attempt: Callable[[Attempt], None]) -> None:
        queue = deque(tasks)
        while queue:
            task = queue.popleft()
            started = time.time()
            try:
                result, worker, started, finished = call_task(task.fn, task.args)
                on_attempt(Attempt(task, True, result, None, worker, started, finished))
            except Exception as e:
                log.debug("task %s attempt %d failed", task.task_id, task.attempt, exc_info=True)
                final = is_final(e, task.attempt, self.max_attempts)
                worker = f"{socket.gethostname()}:{os.getpid()}"
                on_attempt(Attempt(task, False, None, _error_text(e), worker, started, time.time(), final))
                if not final:
                    time.sleep(self.backoff_s * task.attempt)
                    queue.appendleft(replace(task, attempt=task.attempt + 1))

    def close(self) -> None:
        pass


class ClusterLost(RuntimeError):
    """The Ray node this driver runs on died and cannot be restarted here: rerunning resumes."""


def ray_init_kwargs(address: str | None, environ=os.environ) -> dict[str, Any]:
    """`ray.init` arguments: attach to `address`, or start a local Ray whose workers run at the
    driver's priority. Ray starts its workers 15 nice levels below the driver (`worker_niceness`);
    on a machine shared with other jobs that gave tokenmill's workers a fraction of the CPU that
    the same work gets in process (`--executor local`), and datatrove's worker processes run at
    the driver's priority too. RAY_worker_niceness in the environment still decides when set."""
    kwargs: dict[str, Any] = dict(include_dashboard=False, configure_logging=False, log_to_driver=True)
    if address:
        kwargs["address"] = address  # a cluster's workers are started by its own raylets: its settings
    elif "RAY_worker_niceness" not in environ:
        kwargs["_system_config"] = {"worker_niceness": 0}
    return kwargs


def stop_local_ray(ray) -> None:
    """`ray.shutdown()` of a Ray this process started, without its one-second stall: shutdown stops
    the GCS before the autoscaler's monitor, whose SIGTERM handler then waits on the GCS to report
    its own termination until shutdown kills it a second later (1.0 of 1.4 s here; Ray's `ray stop`
    stops the GCS last for this reason). The monitor is killed first; it holds no state a local
    run needs. Reaches into Ray's node object: if that changes, plain shutdown, as before."""
    try:
        for info in ray._private.worker._global_node.all_processes.get("monitor", []):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(5)
    except Exception:  # noqa: BLE001 (a Ray without these internals: shut down the documented way)
        log.debug("could not stop Ray's monitor first", exc_info=True)
    ray.shutdown()


class RayExecutor:
    """Tasks on Ray. A worker that dies mid-task (OOM, SIGKILL) fails that attempt, which is
    retried like any other failure. When the node itself goes (the raylet, or an agent whose death
    takes the raylet down: every pending task then fails with LocalRayletDiedError), the attempts
    are recorded as lost, not counted against `max_attempts`; a local Ray that this executor
    started is started again (~6 s here) and the tasks resubmitted, up to `max_restarts` times; a
    cluster it attached to raises `ClusterLost` at once, saying that rerunning resumes."""

    kind = "ray"
    max_restarts = 3

    def __init__(self, address: str | None = None, workers: int | None = None, max_attempts: int = 3,
                 backoff_s: float = 1.0):
        import ray

        self.ray = ray
        self.started_ray = False
        self.restarts = 0
        self.workers_cfg = workers
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._init_kwargs: dict[str, Any] = {}
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs = ray_init_kwargs(address)
            log.info("starting Ray (%s)", address or "local")
            self.attached = bool(address)
            try:
                ray.init(**kwargs)
            except ValueError as e:
                # No address, but a cluster that `ray start` left on this machine: ray.init attaches to
                # it, and settings such as worker_niceness are that cluster's, not ours to pass.
                if "_system_config" not in kwargs or "_system_config" not in str(e):
                    raise
                kwargs = {k: v for k, v in kwargs.items() if k != "_system_config"}
                ray.init(**kwargs)
                self.attached = True
            self.started_ray = True
            self._init_kwargs = kwargs
        else:
            self.attached = True  # someone else's Ray (a test session, `ray job submit`): never restarted here
        self._connect()

    def _connect(self) -> None:
        ray = self.ray
        self.total_cpus = cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = self.workers_cfg or max(1, cpus)
        # the most CPUs one task can reserve: the largest node's
        self.max_task_cpus = max([int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])
        # Retries are ours (so every attempt is recorded), not Ray's.
        self._call = ray.remote(max_retries=0)(call_task)
        self._call_one_cpu = ray.remote(max_retries=0)(call_task_one_cpu)
        self._remotes: dict[tuple, Any] = {}

    def _remote(self, cpus: int, gpus: float = 0):
        if (cpus, gpus) not in self._remotes:  # the job's runtime_env (e.g. under `ray job submit`) is merged in
            if cpus == 1:  # no per-task runtime_env: Ray's waiting workers take it (module docstring)
                self._remotes[(cpus, gpus)] = self._call_one_cpu.options(num_cpus=1, num_gpus=gpus)
            else:
                self._remotes[(cpus, gpus)] = self._call.options(
                    num_cpus=cpus, num_gpus=gpus, runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(cpus)}})
        return self._remotes[(cpus, gpus)]

    def _node_died(self, e: BaseException) -> bool:
        exc = self.ray.exceptions
        # NodeDiedError names the node: this driver's means the cluster is lost here; another node's
        # (a worker node preempted or stopped) is an ordinary failure of the tasks that ran there: retried.
        return isinstance(e, exc.LocalRayletDiedError) or (
            isinstance(e, exc.NodeDiedError) and self.ray.get_runtime_context().get_node_id() in str(e))

    def _restart(self, why: str) -> None:
        if self.attached or self.restarts >= self.max_restarts:
            raise ClusterLost(
                f"the Ray node died ({why})" + (f" after {self.restarts} restart(s)" if self.restarts else "")
                + "; nothing done is lost: run the same command again to resume")
        self.restarts += 1
        log.warning("the local Ray node died (%s); starting it again (%d of %d)", why, self.restarts, self.max_restarts)
        stop_local_ray(self.ray)
        self.ray.init(**self._init_kwargs)
        self._connect()

    def run(self, tasks: list[Task], on_attempt: Callable[[Attempt], None]) -> None:
        ray = self.ray
        queue = deque(tasks)
        waiting: list[tuple[float, Task]] = []  # (not before, task): retries after backoff
        pending: dict[Any, tuple[Task, float]] = {}
        while queue or pending or waiting:
            now = time.time()
            for item in [w for w in waiting if w[0] <= now]:
                waiting.remove(item)
                queue.append(item[1])
            while queue and len(pending) < self.workers:
                task = queue.popleft()
                pending[self._remote(task.cpus, task.gpus).remote(task.fn, task.args)] = (task, time.time())
            if not pending:
                time.sleep(0.05)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                task, submitted = pending.pop(ref)
                try:
                    result, worker, started, finished = ray.get(ref)
                    on_attempt(Attempt(task, True, result, None, worker, started, finished))
                except Exception as e:
                    if self._node_died(e):
                        lost = [task] + [t for t, _ in pending.values()]
                        for t in lost:  # recorded, not counted against max_attempts
                            on_attempt(Attempt(t, False, None, "the Ray node died: " + _error_text(e), "",
                                               submitted, time.time(), False))
                        pending.clear()
                        self._restart(type(e).__name__)
                        queue.extendleft(reversed([replace(t, attempt=t.attempt + 1, lost=t.lost + 1) for t in lost]))
                        break
                    final = is_final(e, task.attempt - task.lost, self.max_attempts)
                    on_attempt(Attempt(task, False, None, _error_text(e), "", submitted, time.time(), final))
                    if not final:
                        waiting.append((time.time() + self.backoff_s * task.attempt, replace(task, attempt=task.attempt + 1)))

    def close(self) -> None:
        if self.started_ray:
            stop_local_ray(self.ray)


def make_executor(kind: str, address: str | None, workers: int | None, max_attempts: int):
    if kind == "local":
        return LocalExecutor(workers, max_attempts)
    if kind == "ray":
        return RayExecutor(address, workers, max_attempts)
    raise ValueError(f"executor.kind: unknown executor {kind!r} (ray | local)")
