"""Parquet manifests: what every task did, and the run record. Readable without tokenmill.

    RUN/manifest/tasks/*.parquet   one row per task attempt and stage it ran (TASK_SCHEMA)
    RUN/manifest/runs/*.parquet    one row per invocation of `tokenmill run` (RUN_SCHEMA)

    duckdb.sql("SELECT stage, sum(docs_in), sum(docs_out) FROM 'RUN/manifest/tasks/*.parquet'
                WHERE status = 'done' GROUP BY stage")
"""

from tokenmill.manifests.store import (  # noqa: F401
    RUN_SCHEMA,
    TASK_SCHEMA,
    read_runs,
    read_tasks,
    write_run,
    write_task_rows,
)
