"""The tokenize stage inside the real pipeline (local executor): `tokenmill run` writes RUN/tokens,
a rerun resumes without redoing work, and `train pretrain --tokens RUN/tokens` needs nothing else."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq

from helpers import need
from tokenmill.config import from_dict
from tokenmill.pipeline import run_pipeline
from tokenmill.tokenize import TokenShards, decode_shard


def test_run_then_resume_then_train(tmp_path):
    rng = random.Random(1)
    words = "the river carries plastic from city to sea and water moves it fast".split()
    inputs = []
    for s in range(2):
        path = tmp_path / f"in-{s}.jsonl"
        with open(path, "w") as f:
            for i in range(40):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 200)))
                f.write(json.dumps({"id": f"s{s}-{i}", "text": text}) + "\n")
        inputs.append(str(path))
    out = tmp_path / "run"
    cfg = from_dict({"input": {"paths": inputs}, "output": str(out), "executor": {"kind": "local", "max_attempts": 1},
                     "stages": ["tokenize"], "tokenize": {"vocab_size": 300, "shard_tokens": 2000}}, "test.yaml")
    summary = run_pipeline(cfg, progress=False)
    assert summary.ok, summary.one_line()
    ds = TokenShards(str(out / "tokens"))
    tok = ds.tokenizer()
    texts = [t for split in ("train", "val") for r in ds.shards(split) for t in decode_shard(ds.path(r), tok)]
    docs = pq.read_table(out / "docs").column("text").to_pylist()
    assert sorted(texts) == sorted(docs) and len(texts) == 80
    first = (out / "tokens/manifest.parquet").read_bytes()

    again = run_pipeline(cfg, progress=False)
    assert again.ok and again.done == 0 and again.skipped > 0, again.one_line()
    assert (out / "tokens/manifest.parquet").read_bytes() == first

    need("torch")
    from tokenmill.train import pretrain

    record = pretrain.train(str(out / "tokens"), steps=3, eval_every=3, log_fn=lambda s: None)
    assert record["step"] == 3 and (out / "ckpt/ckpt.pt").exists()
