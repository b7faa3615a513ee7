"""The stage contract: documents in, documents out, every drop named and counted.

A map stage implements `process(doc, ctx) -> Doc | None`. Returning None means the
document was dropped, and the stage must have called `ctx.drop(doc, reason)` first (the
base class checks). Heavy state is loaded in `setup()`, once per worker process. Stage code
never knows how it is scheduled: the pipeline fuses consecutive map stages into one task
per input shard and runs it under the local or the Ray executor.

A filter (see tokenmill/filters) implements only its decision,
`filter(doc) -> True | (False, "reason")`; `FilterStage` runs a list of them in order.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenmill.doc import Doc
from tokenmill.stats import StageContext, StageStats  # noqa: F401 (re-exported: the stage contract)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoOptions:
    """For stages that take no options."""


class Stage:
    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the stage's output can change for the same input
    Config: ClassVar[type] = NoOptions
    kind: ClassVar[str] = "map"  # "map" (per document) or "global" (needs all shards)

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def setup(self) -> None:
        """Load heavy state (models, lists) once per worker."""

    def close(self) -> None:
        """Release what setup() acquired (child processes, files)."""

    def resources(self) -> dict:
        """What each task running this stage asks the scheduler for beyond one CPU, e.g.
        {"num_gpus": 1}; a fused step asks for the most any of its stages asks."""
        return {}

    def fingerprint(self) -> dict:
        """What decides this stage's output: hashed into the run record for resume."""
        cfg = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else self.config
        return {"stage": self.name, "version": self.version, "config": cfg}


class MapStage(Stage):
    kind = "map"

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        raise NotImplementedError

    def run(self, docs: Iterator[Doc], ctx: StageContext) -> Iterator[Doc]:
        stats = ctx.stats
        clock = time.perf_counter
        for doc in docs:
            stats.docs_in += 1
            before = sum(stats.drops.values())
            t0 = clock()
            out = self.process(doc, ctx)
            stats.seconds += clock() - t0
            if out is None:
                if sum(stats.drops.values()) != before + 1:
                    raise ValueError(f"stage {self.name} returned None for {doc.id} without ctx.drop(doc, reason)")
                continue
            stats.docs_out += 1
            yield out


class FilterStage(MapStage):
    """Runs filters in order; the first that rejects a document names the reason."""

    def build_filters(self) -> list:
        raise NotImplementedError

    def setup(self) -> None:
        self.filters = self.build_filters()
        for f in self.filters:
            if hasattr(f, "setup"):
                f.setup()

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        for f in self.filters:
            verdict = f.filter(doc)
            if verdict is True:
                continue
            if verdict is False:
                reason = getattr(f, "name", type(f).__name__)
            else:
                ok, reason = verdict
                if ok:
                    continue
            ctx.drop(doc, reason)
            return None
        return doc


@dataclass
class TaskResult:
    """What a task returns to the driver; the driver turns it into manifest rows."""

    stats: list[StageStats] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # files written (already renamed into place)
    bytes_out: int = 0
    checksum: str | None = None  # sha256 of the main output, when the task knows it
    checksums: list[str] | None = None  # sha256 of each output (the pipeline fills it in when None)
    output_ids: list[str] | None = None  # storage.identity of each output once written (size + mtime / ETag)
    value: Any = None  # anything else the orchestrating stage needs back


class GlobalJob:
    """What a global stage gets on the driver: its inputs, a scratch dir, and a way to fan out.

    `run_tasks(name, fn, args)` runs `fn(*a)` for each `a` in `args` as separate tasks (under
    Ray: in parallel, retried), records each in the manifest, and returns their `TaskResult`s
    in order. `fn` must be a module-level function (it is pickled).
    """

    def __init__(self, inputs: list[str], workdir: str, run_dir: str, runner, fresh: bool = True,
                 max_cpus: int = 1, total_cpus: int = 1, shards: list[int] | None = None, recorder=None):
        self.inputs = inputs  # Parquet files of documents, one per shard, in shard order
        # the shard number of each input: begin_shard(shard) is called with these. They skip the
        # shards whose tasks failed within executor.max_failed_tasks.
        self.shards = list(range(len(inputs))) if shards is None else shards
        self.workdir = workdir  # this stage's scratch directory (local path or URL)
        self.run_dir = run_dir
        self._runner = runner
        # False when resuming: some tasks of this step are done and their results will be reused,
        # so the stage must not clear what they wrote.
        self.fresh = fresh
        self.max_cpus = max_cpus  # the most CPUs one task may ask for (the largest node's)
        self.total_cpus = total_cpus  # all the executor's CPUs
        self._recorder = recorder  # (kind, key, value) -> the run record; None: logged only

    def record(self, key: str, value) -> None:
        """Lineage for the run record (e.g. the tokenizer's sha256, documents removed per earlier run)."""
        if self._recorder is not None:
            self._recorder("lineage", key, value)

    def note(self, message: str) -> None:
        """A warning the user should see at the end of the run (and in the run record)."""
        if self._recorder is not None:
            self._recorder("note", None, message)

    def share_of_cpus(self, n_tasks: int) -> int:
        """CPUs per task when `n_tasks` tasks that run threads of their own share the executor:
        1 when there are at least as many tasks as CPUs, more when fewer (one shard on an 8-core
        laptop: 8), never more than one node has."""
        return max(1, min(self.max_cpus, self.total_cpus // max(1, n_tasks)))

    def run_tasks(self, name: str, fn, args: list[tuple], cpus: int = 1) -> list[TaskResult]:
        """`cpus`: CPUs per task (capped at max_cpus), for tasks that run threads of their own (the
        tokenizer's; see share_of_cpus). The runner is called with a `cpus` keyword only when that
        is more than 1."""
        cpus = max(1, min(cpus, self.max_cpus))
        return self._runner(name, fn, args, cpus=cpus) if cpus > 1 else self._runner(name, fn, args)


class GlobalStage(MapStage):
    """A stage that needs all shards at once (dedup clustering, tokenizer training).

    The pipeline calls `run_global(job)` on the driver once the upstream step is complete;
    it fans work out with `job.run_tasks`. Then, per shard, `begin_shard(shard, workdir)`
    and `process(doc, ctx)` run fused with the map stages that follow (e.g. dropping the
    duplicates found by the global step), so documents are written once.
    """

    kind = "global"
    # False when process() is a pass-through (e.g. tokenize): no per-shard apply step is needed.
    has_apply: ClassVar[bool] = True
    # True when run_global deletes its tasks' outputs in its workdir once done with them: resume
    # then checks only the outputs outside the workdir (the step's products).
    removes_scratch: ClassVar[bool] = False

    def run_global(self, job: GlobalJob) -> None:
        raise NotImplementedError

    def begin_shard(self, shard: int, workdir: str) -> None:
        """Load this shard's artefacts of the global step (e.g. ids to drop)."""

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        return doc
