"""Decontaminate: drop (or mark) documents that contain benchmark test items.

    decontaminate:
      benchmarks: [evals/mmlu-test.jsonl, evals/gsm8k-test.jsonl]   # JSONL (every string field) or .txt
      ngram: 13              # GPT-3's rule: any shared 13-word sequence
      min_item_words: 8      # items of 8..12 words must appear whole; shorter ones are left out
      action: drop           # drop | annotate

In: documents with text (after dedup, before tokenize). Out: documents that contain no item;
a contaminated one is dropped as `contaminated` (action drop) or kept (annotate), and either
way carries `meta["decontaminate"] = {"benchmarks": [file names], "match": "the first shared
words"}`, so its row under removed/decontaminate/ names the benchmark. The task's manifest row
counts contaminated documents per benchmark (`contaminated.<file name>`; a document in two
benchmarks counts in both) and, in total, `contaminated`. With no benchmarks (the default recipe)
the stage keeps every document and adds nothing.

The n-gram index (filters/decontam.py) is built from the files in `setup()`, once per worker
process, and reused by every task that process runs (the pipeline caches set-up stages per
worker), never per task. The files are read and checked when the config is loaded, so a
missing or unreadable benchmark fails at start naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.filters.decontam import build_index, check_benchmark
from tokenmill.stages.base import MapStage, StageContext


@dataclass(frozen=True)
class DecontaminateConfig:
    benchmarks: tuple[str, ...] = ()  # local .jsonl / .txt files (.gz too)
    ngram: int = 13
    min_item_words: int = 8
    action: Literal["drop", "annotate"] = "drop"

    def __post_init__(self):
        if not 1 <= self.ngram <= 64:
            raise ValueError("ngram: must be in [1, 64] words")
        if not 1 <= self.min_item_words <= self.ngram:
            raise ValueError(f"min_item_words: must be in [1, ngram ({self.ngram})]")
        paths = tuple(os.path.abspath(os.path.expanduser(p)) for p in self.benchmarks)
        for i, p in enumerate(paths):
            if "://" in self.benchmarks[i]:
                raise ValueError(f"benchmarks[{i}]: {self.benchmarks[i]}: benchmark files are local paths")
            try:
                check_benchmark(p)
            except ValueError as e:
                raise ValueError(f"benchmarks[{i}]: {e}") from None
        names = [os.path.basename(p) for p in paths]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ValueError(f"benchmarks[{i}]: another benchmark file is also named {n}; "
                                 "the file name names its counts, so rename one")
        object.__setattr__(self, "benchmarks", paths)  # workers may run elsewhere than the driver's cwd

    @property
    def names(self) -> list[str]:
        return [os.path.basename(p) for p in self.benchmarks]


class DecontaminateStage(MapStage):
    name = "decontaminate"
    Config = DecontaminateConfig

    def setup(self) -> None:
        c = self.config
        self.index = build_index(list(c.benchmarks), c.names, c.ngram, c.min_item_words) if c.benchmarks else None

    def fingerprint(self) -> dict:
        """Benchmark files count by content: editing one redoes the stage on resume."""
        fp = super().fingerprint()
        fp["benchmark_files"] = {p: storage.sha256_file(p) for p in self.config.benchmarks}
        return fp

    def run(self, docs: Iterator[Doc], ctx: StageContext) -> Iterator[Doc]:
        if not self.config.benchmarks:  # nothing configured: a pass-through that still counts
            for doc in docs:
                ctx.stats.docs_in += 1
                ctx.stats.docs_out += 1
                yield doc
            return
        yield from super().run(docs, ctx)

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        if not hasattr(self, "index"):
            self.setup()
        if not doc.text:
            ctx.count("no_text")
            return doc
        found, match = self.index.match(doc.text)
        if not found:
            return doc
        names = [self.index.names[b] for b in found]
        doc.meta["decontaminate"] = {"benchmarks": names, "match": match}
        ctx.count("contaminated")
        for n in names:
            ctx.count(f"contaminated.{n}")
        if self.config.action == "annotate":
            return doc
        ctx.drop(doc, "contaminated")
        return None
