"""Classify: model-based quality scores (DCLM's fastText, FineWeb-Edu's transformers classifier).

    classify:
      models:
        - {name: dclm, kind: fasttext, model: models/dclm.bin, label: positive, min_score: 0.5}
        - {name: edu, kind: transformers, model: models/fineweb-edu-classifier, min_score: 3}

In: documents with text. Out: every model's score on every document (`scores["classify.<name>"]`,
also on the dropped ones, so thresholds can be chosen later from the data); a document scoring
below a model's `min_score` is dropped as `classify_<name>_below` (the first such model names it;
`min_score: null` only annotates). Documents without text are kept and counted (`no_text`).
With no models configured (the default recipe) the stage keeps every document and adds nothing.

Documents are scored `batch_docs` at a time (a transformers model runs its own `batch_size`
batches inside); models are loaded once per worker in `setup()`. Throughput against datatrove's
FastTextClassifierFilter with the same model: bench/classify_speed.py (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.filters.classifiers import ModelSpec, load_classifier
from tokenmill.stages.base import MapStage, StageContext

SCORE_PREFIX = "classify."


@dataclass(frozen=True)
class ClassifyConfig:
    models: tuple[ModelSpec, ...] = ()  # run in one pass, in this order
    batch_docs: int = 256  # documents scored together
    # GPUs each task of this step asks Ray for (e.g. 1, or 0.25 to share one GPU among four tasks);
    # 0: none (a transformers model then runs on the CPU unless the worker sees a GPU anyway)
    num_gpus: float = 0

    def __post_init__(self):
        if self.batch_docs < 1:
            raise ValueError("batch_docs: must be at least 1")
        if self.num_gpus < 0:
            raise ValueError("num_gpus: must be >= 0")
        seen = set()
        for i, m in enumerate(self.models):
            if m.name in seen:
                raise ValueError(f"models[{i}].name: {m.name!r} is used twice (it names the score)")
            seen.add(m.name)


def _model_identity(path: str) -> list[str]:
    """What says a model changed, without reading gigabytes: each file's size and mtime (ETag remotely)."""
    fs, p = storage.fs_and_path(path)
    files = [fs.unstrip_protocol(f) if "://" in path else f for f in (sorted(fs.find(p)) if fs.isdir(p) else [p])]
    return [f"{f}:{storage.identity(f)}" for f in files]


class ClassifyStage(MapStage):
    name = "classify"
    Config = ClassifyConfig

    def resources(self) -> dict:
        return {"num_gpus": self.config.num_gpus} if self.config.num_gpus else {}

    def setup(self) -> None:
        self.classifiers = [load_classifier(m) for m in self.config.models]

    def close(self) -> None:
        for c in getattr(self, "classifiers", []):
            c.close()

    def fingerprint(self) -> dict:
        """A model file replaced under the same path redoes the stage on resume."""
        fp = super().fingerprint()
        fp["model_files"] = {m.name: _model_identity(m.model) for m in self.config.models}
        return fp

    def run(self, docs: Iterator[Doc], ctx: StageContext) -> Iterator[Doc]:
        if not self.config.models:  # nothing configured: a pass-through that still counts
            for doc in docs:
                ctx.stats.docs_in += 1
                ctx.stats.docs_out += 1
                yield doc
            return
        if not hasattr(self, "classifiers"):
            self.setup()
        docs = iter(docs)
        while batch := list(itertools.islice(docs, self.config.batch_docs)):
            yield from self._batch(batch, ctx)

    def _batch(self, batch: list[Doc], ctx: StageContext) -> list[Doc]:
        stats = ctx.stats
        stats.docs_in += len(batch)
        t0 = time.perf_counter()
        scored = [d for d in batch if d.text and d.text.strip()]
        if len(scored) < len(batch):
            ctx.count("no_text", len(batch) - len(scored))
        texts = [d.text for d in scored]
        for spec, clf in zip(self.config.models, self.classifiers):
            for doc, s in zip(scored, clf.score(texts)):
                doc.scores[SCORE_PREFIX + spec.name] = s
        kept = []
        for doc in batch:
            reason = self._below(doc)
            if reason:
                ctx.drop(doc, reason)
            else:
                kept.append(doc)
        stats.docs_out += len(kept)
        stats.seconds += time.perf_counter() - t0
        return kept

    def _below(self, doc: Doc) -> str | None:
        for spec in self.config.models:
            s = doc.scores.get(SCORE_PREFIX + spec.name)
            if spec.min_score is not None and s is not None and s < spec.min_score:
                return f"classify_{spec.name}_below"
        return None
