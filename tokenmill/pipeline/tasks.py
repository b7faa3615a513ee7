"""Worker-side task bodies. A map task reads one shard (a raw input shard through the reader, or
the previous step's Parquet part), runs the fused stages over its documents in memory, and writes
the kept documents plus, per stage, the dropped ones — each file under a temporary name, then renamed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tokenmill import stages as registry
from tokenmill import storage
from tokenmill.config import config_hash
from tokenmill.readers import Reader, Shard
from tokenmill.stages.base import GlobalStage, Stage, StageContext, TaskResult

log = logging.getLogger(__name__)

_STAGES: dict[str, Stage] = {}  # per worker process: stages set up once, reused across tasks


def get_stage(name: str, options: Any) -> Stage:
    stage = registry.stage_class(name)(options)
    key = config_hash(stage.fingerprint())
    if key not in _STAGES:
        stage.setup()
        _STAGES[key] = stage
    return _STAGES[key]


@dataclass
class MapTaskSpec:
    shard_index: int
    stages: list[tuple[str, Any]]  # (name, options) of the fused stages, in order
    out_path: str
    removed_dir: str | None  # RUN/removed, or None to not keep dropped documents
    reader: Reader | None = None  # step 0: reads `shard`
    shard: Shard | None = None
    in_path: str | None = None  # later steps: the previous step's documents
    global_workdirs: dict[str, str] = field(default_factory=dict)  # global stage -> its workdir

    @property
    def inputs(self) -> list[str]:
        if self.shard is not None:
            return [self.shard.label if self.shard.start or self.shard.end else self.shard.path]
        return [self.in_path]


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def run_map_task(spec: MapTaskSpec) -> TaskResult:
    contexts: list[StageContext] = []
    keep = spec.removed_dir is not None
    if spec.reader is not None:
        read_ctx = StageContext(spec.reader.name, keep_removed=False)
        docs = spec.reader.read(spec.shard, read_ctx)
    else:
        read_ctx = None
        docs = storage.read_docs(spec.in_path)
    for name, options in spec.stages:
        stage = get_stage(name, options)
        if isinstance(stage, GlobalStage):
            stage.begin_shard(spec.shard_index, spec.global_workdirs[name])
        ctx = StageContext(name, keep_removed=keep)
        contexts.append(ctx)
        docs = stage.run(docs, ctx)

    t0 = time.perf_counter()
    bytes_out = storage.write_docs(spec.out_path, docs)
    outputs = [spec.out_path]
    for ctx in contexts if keep else []:
        removed_path = storage.join(spec.removed_dir, ctx.stats.stage, part_name(spec.shard_index))
        if ctx.removed:
            bytes_out += storage.write_docs(removed_path, None, removed=((d, ctx.stats.stage, r) for d, r in ctx.removed))
            outputs.append(removed_path)
        elif storage.exists(removed_path):
            storage.remove(removed_path)  # left by an earlier run of this task with other settings
    if read_ctx is not None:
        # Reading is interleaved with the stages: the reader's share is what the stages did not use.
        total = time.perf_counter() - t0
        read_ctx.stats.seconds = max(0.0, total - sum(c.stats.seconds for c in contexts))
        contexts.insert(0, read_ctx)
    checksums = [storage.sha256_file(o) for o in outputs]
    return TaskResult(stats=[c.stats for c in contexts], outputs=outputs, bytes_out=bytes_out,
                      checksum=checksums[0], checksums=checksums, output_ids=[storage.identity(o) for o in outputs])


def with_checksums(fn, *args) -> TaskResult:
    """Run a task body, then hash each of its outputs on the worker (where the bytes are): the
    manifest records them, resume and `tokenmill verify` check them."""
    result = fn(*args)
    if result.checksums is None:
        result.checksums = [storage.sha256_file(o) for o in result.outputs]
    result.output_ids = [storage.identity(o) for o in result.outputs]
    return result
