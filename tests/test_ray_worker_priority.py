"""The local Ray that RayExecutor starts runs its workers at the driver's priority (Ray's own
default starts them 15 nice levels lower); a cluster's settings and RAY_worker_niceness decide
otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tokenmill.pipeline.executors import ray_init_kwargs


def test_local_ray_workers_at_the_drivers_priority():
    kwargs = ray_init_kwargs(None, environ={})
    assert kwargs["_system_config"] == {"worker_niceness": 0}
    assert "address" not in kwargs


def test_environment_setting_is_left_to_ray():
    assert "_system_config" not in ray_init_kwargs(None, environ={"RAY_worker_niceness": "5"})


def test_cluster_keeps_its_own_settings():
    kwargs = ray_init_kwargs("ray://head:10001", environ={})
    assert kwargs["address"] == "ray://head:10001" and "_system_config" not in kwargs


@pytest.mark.slow
def test_started_ray_runs_tasks_at_the_drivers_niceness():
    """A real local Ray in a fresh process (~10 s): a task's niceness is the driver's."""
    code = textwrap.dedent("""
        import json, os
        from tokenmill.pipeline.executors import RayExecutor, Task

        def nice(_):
            return os.nice(0)

        ex = RayExecutor(workers=1)
        got = []
        ex.run([Task("t", nice, (0,))], lambda a: got.append(a.result if a.ok else a.error))
        ex.close()
        print(json.dumps({"driver": os.nice(0), "worker": got[0]}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_worker_niceness", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["worker"] == got["driver"]


class FakeRay:
    """ray.init as it behaves when no address is given and `ray start` left a cluster running here:
    it attaches to that cluster, and refuses `_system_config`."""

    def __init__(self):
        self.calls = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append(kwargs)
        if kwargs.get("_system_config"):
            raise ValueError("When connecting to an existing cluster, _system_config must not be provided.")

    def cluster_resources(self):
        return {"CPU": 2}

    def nodes(self):
        return [{"Alive": True, "Resources": {"CPU": 2}}]

    def remote(self, **options):
        return lambda fn: fn


def test_a_running_ray_start_cluster_is_attached_to_without_our_settings(monkeypatch):
    from tokenmill.pipeline.executors import RayExecutor

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    ex = RayExecutor()
    assert [("_system_config" in c) for c in fake.calls] == [True, False]
    assert ex.attached  # not ours: never restarted by this executor
    assert ex.workers == 2
