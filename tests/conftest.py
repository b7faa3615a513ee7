"""Shared fixtures: the real test data in ../shared/data, and one Ray session for all tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    env = os.environ.get("TOKENMILL_TESTDATA")
    d = Path(env) if env else ROOT.parent / "shared" / "data"
    return d if d.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $TOKENMILL_TESTDATA). Missing: fail under CI, skip elsewhere."""
    d = shared_data_dir()
    if d is None:
        msg = "real test data not found: set TOKENMILL_TESTDATA or put shared/data beside the repo"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs ~4 s)."""
    import ray

    if not ray.is_initialized():
        # Workers import test helpers (module-level task functions) from tests/.
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}}
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False, runtime_env=env)
    yield ray
    ray.shutdown()
