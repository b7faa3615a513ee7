"""The DAG: plan, executors, run directory, resume. The only place in tokenmill that imports ray."""

from tokenmill.pipeline.runner import ConfigChanged, RunSummary, run_pipeline  # noqa: F401
