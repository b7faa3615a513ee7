"""Stages in pipeline order, looked up by name (imported lazily: heavy libraries load in setup)."""

from __future__ import annotations

import importlib

# name -> "module:Class". The default recipe is every stage listed here, in this order.
REGISTRY: dict[str, str] = {
    "url_filter": "tokenmill.stages.filter:UrlFilterStage",
    "extract": "tokenmill.stages.extract:ExtractStage",
    "language": "tokenmill.stages.filter:LanguageStage",
    "quality": "tokenmill.stages.filter:QualityStage",
    "dedup": "tokenmill.stages.dedup:DedupStage",
    "pii": "tokenmill.stages.filter:PiiStage",
    "tokenize": "tokenmill.stages.tokenize:TokenizeStage",
}

# Every stage the recipe knows, in FineWeb's order; those not in REGISTRY are not built yet.
PIPELINE_ORDER = ["url_filter", "extract", "language", "quality", "dedup", "pii", "tokenize"]


def available() -> list[str]:
    return [s for s in PIPELINE_ORDER if s in REGISTRY]


def stage_class(name: str):
    if name not in REGISTRY:
        raise KeyError(name)
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
