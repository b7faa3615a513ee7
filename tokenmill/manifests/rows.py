"""Manifest rows of one task attempt: what the driver writes to RUN/manifest/tasks/ (TASK_SCHEMA).

A done map task gives one row per part of its step (the reader, then each fused stage) with that
part's counts; a done global task one row named by its sub-step (e.g. "dedup.pairs"); a failed
attempt one row with the error.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tokenmill.stats import StageStats


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def stats_fields(s: StageStats) -> dict:
    return {
        "stage": s.stage,
        "docs_in": s.docs_in,
        "docs_out": s.docs_out,
        "drops": dict(s.drops),
        "counters": dict(s.counters),
        "stage_seconds": round(s.seconds, 4),
    }


def attempt_rows(base: dict, *, ok: bool, stats: list[StageStats] = (), outputs: list[str] = (),
                 bytes_out: int = 0, checksum: str | None = None, checksums: list[str] | None = None,
                 output_ids: list[str] | None = None,
                 error: str | None = None, stage: str | None = None) -> list[dict]:
    """`base`: the fields every row of the attempt shares (run_id, step, task_id, attempt, inputs,
    worker, started, finished, seconds...). `stage`, when given, names every row (global tasks)."""
    if not ok:
        return [dict(base, status="failed", stage=stage, error=error)]
    done = dict(base, status="done", outputs=list(outputs), bytes_out=bytes_out, checksum=checksum,
                checksums=list(checksums) if checksums is not None else None,
                output_ids=list(output_ids) if output_ids is not None else None)
    rows = [dict(done, **stats_fields(s)) for s in stats] or [dict(done)]
    for row in rows:
        row["stage"] = stage or row.get("stage")
    return rows
