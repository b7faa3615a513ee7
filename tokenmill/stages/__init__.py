"""Stages in pipeline order, looked up by name (imported lazily: heavy libraries load in setup)."""

from __future__ import annotations

import importlib

# name -> "module:Class". The default recipe is every stage listed here, in this order.
REGISTRY: dict[str, str] = {
    "url_filter": "tokenmill.stages.filter:UrlFilterStage",
    "extract": "tokenmill.stages.extract:ExtractStage",
    "language": "tokenmill.stages.filter:LanguageStage",
    "quality": "tokenmill.stages.filter:QualityStage",
    "classify": "tokenmill.stages.classify:ClassifyStage",
    "dedup": "tokenmill.stages.dedup:DedupStage",
    "decontaminate": "tokenmill.stages.decontaminate:DecontaminateStage",
    "pii": "tokenmill.stages.filter:PiiStage",
    "tokenize": "tokenmill.stages.tokenize:TokenizeStage",
}

# Every stage, in the order the recipe runs them (FineWeb's).
PIPELINE_ORDER = list(REGISTRY)


def available() -> list[str]:
    return list(PIPELINE_ORDER)


def stage_class(name: str):
    if name not in REGISTRY:
        raise KeyError(name)
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
