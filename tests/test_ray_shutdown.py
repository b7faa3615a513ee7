"""Closing the local Ray that RayExecutor started: Ray's own shutdown stops the GCS before the
autoscaler's monitor, which then stalls a second in its SIGTERM handler; stop_local_ray stops the
monitor first. Nothing of the local Ray may be left running afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_closing_a_started_ray_stops_the_monitor_before_the_gcs_and_leaves_no_process():
    """A real local Ray in a fresh process (~8 s)."""
    code = textwrap.dedent("""
        import json, os, time
        import ray
        from tokenmill.pipeline.executors import RayExecutor, Task

        def pid(_):
            return os.getpid()

        ex = RayExecutor(workers=1)
        got = []
        ex.run([Task("t", pid, (0,))], lambda a: got.append(a.result if a.ok else a.error))
        node = ray._private.worker._global_node
        procs = {k: [i.process for i in v] for k, v in node.all_processes.items()}
        alive_at = {}  # process type -> which processes were alive when shutdown began to stop it
        real = node._kill_process_impl

        def spy(process_type, **kw):
            alive_at[process_type] = {k: any(p.poll() is None for p in v) for k, v in procs.items()}
            return real(process_type, **kw)

        node._kill_process_impl = spy
        ex.close()
        pids = [p.pid for v in procs.values() for p in v] + [got[0]]

        def running(p):
            try:
                with open(f"/proc/{p}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        deadline = time.time() + 20  # workers exit within ~1 s of their raylet
        while any(running(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        print(json.dumps({"alive_at": alive_at, "left": [p for p in pids if running(p)], "worker": got[0]}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(got["worker"], int), got  # the task ran
    assert "gcs_server" in got["alive_at"], got
    assert got["alive_at"]["gcs_server"].get("monitor") is False, got  # the monitor went first
    assert got["left"] == [], got
