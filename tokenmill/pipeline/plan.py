"""The plan: the reader and the configured stages → steps. The reader and consecutive map stages
are fused into one step (one task per shard, documents stay in memory between them); a global
stage is a barrier step that runs on the driver and fans out its own tasks; its per-shard part
(`process`) is fused into the map step after it.

    stages [url_filter, extract, language, quality, dedup, pii, tokenize] →
      0 map    ingest+url_filter+extract+language+quality   shards → work/step0/
      1 global dedup                                        work/step0/ → work/dedup/
      2 map    dedup+pii                                    work/step0/ → docs/
      3 global tokenize                                     docs/ → tokens/
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenmill import stages as registry
from tokenmill.config import PipelineConfig, config_hash
from tokenmill.readers import Reader


@dataclass
class Step:
    index: int
    kind: str  # "map" | "global"
    stages: list[str]  # map: the fused stages after the reader; global: [the stage]
    reader: Reader | None = None  # step 0: reads the raw input shards
    hash: str = ""  # this step's reader and stage configs plus everything upstream
    out_dir: str | None = None  # map steps: where their documents go
    in_dir: str | None = None  # map steps after step 0 / global steps: documents they read
    fingerprints: list = field(default_factory=list)

    @property
    def parts(self) -> list[str]:
        """Names of what runs in this step, reader first: the manifest's `stage` values."""
        return ([self.reader.name] if self.reader else []) + self.stages

    @property
    def name(self) -> str:
        return "+".join(self.parts)


def build_plan(cfg: PipelineConfig, run_dir: str) -> list[Step]:
    steps: list[Step] = []
    reader = Reader(cfg.input)
    current: list[str] = []
    for name in cfg.stages:
        cls = registry.stage_class(name)
        if cls.kind == "map":
            current.append(name)
            continue
        steps.append(Step(len(steps), "map", current))
        steps.append(Step(len(steps), "global", [name]))
        current = [name] if cls.has_apply else []
    if current or not steps:
        steps.append(Step(len(steps), "map", current))
    steps[0].reader = reader

    last_map = max(s.index for s in steps if s.kind == "map")
    prev_hash, prev_dir = "", None
    for step in steps:
        step.fingerprints = ([reader.fingerprint()] if step.reader else []) + [
            registry.stage_class(n)(cfg.options(n)).fingerprint() for n in step.stages]
        step.hash = config_hash({"upstream": prev_hash, "stages": step.fingerprints})
        prev_hash = step.hash
        if step.kind == "map":
            step.in_dir = prev_dir
            step.out_dir = f"{run_dir}/docs" if step.index == last_map else f"{run_dir}/work/step{step.index}"
            prev_dir = step.out_dir
        else:
            step.in_dir = prev_dir
    return steps
