"""What a stage (or a reader) did in one task: counts that the manifest records.

`StageStats` is merged with `+` across tasks; `StageContext` is what a stage is handed for one
task: it counts, and collects the dropped documents for `removed/<stage>/`. A leaf module, so
readers, stages and the pipeline share it without importing each other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tokenmill.doc import Doc


@dataclass
class StageStats:
    """What one stage did in one task; merged with `+` across tasks."""

    stage: str
    docs_in: int = 0
    docs_out: int = 0
    drops: Counter = field(default_factory=Counter)  # reason -> documents dropped
    counters: Counter = field(default_factory=Counter)  # anything else (skips, replacements)
    seconds: float = 0.0

    def __add__(self, other: "StageStats") -> "StageStats":
        if self.stage != other.stage:
            raise ValueError(f"cannot add the stats of stage {other.stage!r} to those of {self.stage!r}")
        return StageStats(
            self.stage,
            self.docs_in + other.docs_in,
            self.docs_out + other.docs_out,
            self.drops + other.drops,
            self.counters + other.counters,
            self.seconds + other.seconds,
        )


class StageContext:
    """Handed to a stage for one task: counts, and collects dropped documents."""

    def __init__(self, stage: str, keep_removed: bool = True):
        self.stats = StageStats(stage)
        self.keep_removed = keep_removed
        self.removed: list[tuple[Doc, str]] = []

    def drop(self, doc: Doc, reason: str) -> None:
        self.stats.drops[reason] += 1
        if self.keep_removed:
            self.removed.append((doc, reason))

    def count(self, key: str, n: int = 1) -> None:
        self.stats.counters[key] += n
