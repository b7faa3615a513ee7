"""Tokenize: curated documents → llm.c-compatible token shards in RUN/tokens/.

A global stage (it runs on the driver once the documents are final) that fans out its work:

    1 tokenizer  `tokenizer: path` → copied; else sample_shard per input shard, then one
                 train_tokenizer task (byte-level BPE)                  → tokens/tokenizer.json
    2 encode     encode_shard per input shard (encode_batch)           → work/tokenize/enc-*
    3 write      write_shard_range per output shard (shuffled by a seeded key; val by id hash)
                                                      → tokens/NAME_{train,val}_{i:06d}.bin/.idx
    4 manifest   tokens/manifest.parquet, written last: its existence means the tokens are complete

In: `job.inputs`, Parquet documents, one file per shard. Out: the files above (see
tokenmill/tokenize/shards.py for the format). Task bodies live in tasks.py beside this file.
Measured: bench/tokenize_speed.py (stage vs raw encode_batch on the same text).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import GlobalJob, GlobalStage
from tokenmill.stages.tokenize import tasks as build
from tokenmill.tokenize.shards import MANIFEST, MANIFEST_SCHEMA, TOKENIZER
from tokenmill.tokenize.tokenizer import DEFAULT_SPECIAL_TOKENS, token_id

log = logging.getLogger(__name__)

TRAIN_CPUS = 8  # CPUs reserved for training the tokenizer (fewer when no node has that many)
SHARD_FILE = re.compile(r"([^_]+_(?:train|val)_\d+)\.(?:bin|idx)")  # NAME_{split}_{index}.bin/.idx


@dataclass(frozen=True)
class TokenizeConfig:
    # a tokenizer.json, or an earlier run's directory (or its tokens/ folder) whose tokenizer is used
    # unchanged, so the two runs' token ids mean the same; None: train a byte-level BPE on the curated text
    tokenizer: str | None = None
    vocab_size: int = 32768  # trained tokenizer only; <= 65,535 gives uint16 shards
    sample_bytes: int = 50_000_000  # text sampled across all shards to train the tokenizer (~3 s per 3 MB here)
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS  # trained tokenizer only; ids 0, 1, ...
    bos_token: str = "<|bos|>"  # written before every document; must be in the tokenizer
    shard_tokens: int = 100_000_000  # target tokens per shard (llm.c's FineWeb shards hold 100M)
    val_fraction: float = 0.01  # documents whose id hashes below this go to the val split
    val_min_documents: int = 1  # grow val to at least this many documents (smallest id hashes)
    seed: int = 1234  # shuffles documents across shards; does not change the split
    name: str = "tokenmill"  # shard file prefix: NAME_train_000000.bin
    batch_docs: int = 256  # documents per encode_batch call (small: see encode_shard; output does not depend on it)
    word_cache: int = 200_000  # BPE words cached per worker (~0.5 KB each; tokenizers' default 10,000); 0: default

    def __post_init__(self):
        if not 256 + len(self.special_tokens) <= self.vocab_size < 2**32:
            raise ValueError(f"vocab_size: must be in [{256 + len(self.special_tokens)}, 2**32)")
        if self.sample_bytes < 1:
            raise ValueError("sample_bytes: must be positive")
        if self.tokenizer is None and self.bos_token not in self.special_tokens:
            raise ValueError(f"bos_token: {self.bos_token!r} must be one of special_tokens {list(self.special_tokens)}")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError("special_tokens: listed twice")
        if not 1000 <= self.shard_tokens < 2**31:
            raise ValueError("shard_tokens: must be in [1000, 2**31) (the header holds an int32 count)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction: must be in [0, 1)")
        if self.val_min_documents < 0:
            raise ValueError("val_min_documents: must be >= 0")
        if self.batch_docs < 1:
            raise ValueError("batch_docs: must be positive")
        if not 0 <= self.word_cache <= 10_000_000:
            raise ValueError("word_cache: must be in [0, 10,000,000] (0: the tokenizer's default)")
        if not self.name or "/" in self.name or "_" in self.name:
            raise ValueError("name: a non-empty file prefix without '/' or '_'")
        if self.tokenizer is not None:
            self._check_tokenizer()

    def tokenizer_file(self) -> str | None:
        """The tokenizer.json to use: `tokenizer` itself, or DIR/tokens/tokenizer.json or
        DIR/tokenizer.json when it names an earlier run's directory or its tokens/ folder."""
        if self.tokenizer is None:
            return None
        for candidate in (storage.join(self.tokenizer, "tokens", TOKENIZER), storage.join(self.tokenizer, TOKENIZER)):
            if storage.exists(candidate):
                return candidate
        return self.tokenizer

    def _check_tokenizer(self) -> None:
        path = self.tokenizer_file()
        if not storage.exists(path) or storage.fs_and_path(path)[0].isdir(storage.fs_and_path(path)[1]):
            raise ValueError(f"tokenizer: no tokenizer at {self.tokenizer!r}: give a tokenizer.json, or an earlier "
                             f"run's directory (or its tokens/ folder) that holds one")
        try:  # loaded once per process: run_global (and its encode tasks, when in this process) reuse it
            tok = build.cached_tokenizer(path)
        except Exception as e:  # noqa: BLE001 (any parse error: the message says which file)
            raise ValueError(f"tokenizer: cannot read {path}: {type(e).__name__}: {e}") from None
        if tok.token_to_id(self.bos_token) is None:
            raise ValueError(f"bos_token: {self.bos_token!r} is not in {path}; set tokenize.bos_token to one of its "
                             f"special tokens")


class TokenizeStage(GlobalStage):
    name = "tokenize"
    version = 1
    Config = TokenizeConfig
    has_apply = False  # process() passes documents through; the work is all in run_global
    removes_scratch = True  # sample and encode outputs in its workdir are deleted once the shards exist

    def run_global(self, job: GlobalJob) -> None:
        cfg: TokenizeConfig = self.config
        out_dir = storage.join(job.run_dir, "tokens")
        tok_path = storage.join(out_dir, TOKENIZER)
        n = len(job.inputs)
        if not any(storage.num_rows(p) for p in job.inputs):  # footers only, up to the first non-empty one
            self._nothing_to_encode(job, out_dir, tok_path)
            return

        # CPUs per task: tasks run the tokenizer's threads, so with fewer shards than CPUs each task
        # gets more (under Ray: as many rayon threads). One value for all steps but training: a
        # worker started for one thread count is reused by the next step, not replaced.
        cpus = job.share_of_cpus(n)

        # 1. the tokenizer
        if cfg.tokenizer is not None:
            tok = build.cached_tokenizer(cfg.tokenizer_file())
            tok_sha = build.write_tokenizer(tok, tok_path)  # sha256 of tokenizer.json's text
        else:
            budget = -(-cfg.sample_bytes // n)
            samples = [storage.join(job.workdir, f"sample-{i:05d}.parquet") for i in range(n)]
            job.run_tasks("sample", build.sample_shard,
                          [(p, budget, cfg.seed, s) for p, s in zip(job.inputs, samples)], cpus=cpus)
            job.run_tasks("train", build.train_tokenizer,  # alone on its node: BPE training runs threads
                          [(samples, cfg.vocab_size, tuple(cfg.special_tokens), tok_path)],
                          cpus=max(cpus, TRAIN_CPUS))
            tok, tok_sha = build.cached_tokenizer_and_hash(tok_path)
        bos_id = token_id(tok, cfg.bos_token)
        log.info("tokenizer: vocab %d, bos %s = %d, sha256 %s", tok.get_vocab_size(), cfg.bos_token, bos_id, tok_sha[:12])

        # 2. encode every shard. val_cut: split hashes below it are val (a fraction of 2**64).
        val_cut = min(int(cfg.val_fraction * 2**64), 2**64 - 1)
        parts = [(storage.join(job.workdir, f"enc-{i:05d}.tokens"), storage.join(job.workdir, f"enc-{i:05d}.meta.npy"))
                 for i in range(n)]
        encoded = job.run_tasks("encode", build.encode_shard, [
            (p, tok_path, cfg.bos_token, cfg.seed, cfg.batch_docs, cfg.word_cache, val_cut, cfg.val_min_documents, t, m,
             tok_sha) for p, (t, m) in zip(job.inputs, parts)
        ], cpus=cpus)
        values = [r.value for r in encoded]
        hist = {s: build.dense_hist([v["hist"][s] for v in values]) for s in ("train", "val")}
        val_cut = self._grow_val(values, hist, val_cut, cfg.val_min_documents)
        dtype_name = values[0]["dtype"]

        # 3. write the shards: consecutive key ranges of ~shard_tokens tokens per split
        args, names = [], []
        for split in ("train", "val"):
            for idx, (lo, hi) in enumerate(build.plan_ranges(hist[split], cfg.shard_tokens)):
                names.append((split, idx, f"{cfg.name}_{split}_{idx:06d}.bin"))
                args.append((split, lo, hi, val_cut, parts, dtype_name, storage.join(out_dir, names[-1][2])))
        written = job.run_tasks("write", build.write_shard_range, args, cpus=cpus)

        # 4. the manifest, last
        rows = [dict(shard=fname, split=split, index=idx, vocab_size=tok.get_vocab_size(), bos_id=bos_id,
                     tokenizer_sha256=tok_sha, **r.value) for (split, idx, fname), r in zip(names, written)]
        self._remove_stale(out_dir, {r["shard"] for r in rows})
        with storage.atomic_write(storage.join(out_dir, MANIFEST)) as f:
            pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), f)
        for t, m in parts:  # scratch copies of every token; the shards now hold them
            storage.remove(t)
            storage.remove(m)
        for p in storage.glob(storage.join(job.workdir, "sample-*.parquet")):  # the tokenizer's training text
            storage.remove(p)
        job.record("tokenizer", {"sha256": tok_sha, "from": cfg.tokenizer_file() or "trained on this run"})
        totals = {s: sum(r["tokens"] for r in rows if r["split"] == s) for s in ("train", "val")}
        log.info("tokens: %d train, %d val in %d shards (%s) → %s", totals["train"], totals["val"], len(rows),
                 dtype_name, out_dir)

    def _nothing_to_encode(self, job: GlobalJob, out_dir: str, tok_path: str) -> None:
        """No document reached tokenize: a valid, empty result. tokens/manifest.parquet lists no
        shard (0 tokens); a given tokenizer is still copied, none is trained on nothing."""
        self._remove_stale(out_dir, set())
        if self.config.tokenizer is not None:
            sha = build.write_tokenizer(build.cached_tokenizer(self.config.tokenizer_file()), tok_path)
            job.record("tokenizer", {"sha256": sha, "from": self.config.tokenizer_file()})
        else:
            storage.remove(tok_path)  # left by an earlier run of this directory with documents
            job.record("tokenizer", {"sha256": None, "from": "none: no document to train on"})
        with storage.atomic_write(storage.join(out_dir, MANIFEST)) as f:
            pq.write_table(MANIFEST_SCHEMA.empty_table(), f)
        job.note("tokenize: no document to encode; tokens/manifest.parquet lists no shard (0 tokens)")
        log.warning("tokenize: no document to encode; wrote an empty token manifest to %s", out_dir)

    def fingerprint(self) -> dict:
        """A given tokenizer counts by content: replacing the file redoes the step on resume."""
        fp = super().fingerprint()
        path = self.config.tokenizer_file()
        if path is not None and storage.exists(path):
            fp["tokenizer_sha256"] = storage.sha256_file(path)
        return fp

    @staticmethod
    def _grow_val(values: list[dict], hist: dict, val_cut: int, want: int) -> int:
        """When fewer than `want` documents hash into val, move the train documents with the
        smallest split hashes there (each encode task sent its `want` lowest) by raising the cut
        past them; `hist` is updated in place. At least one document stays in train."""
        n_val = sum(v["val_documents"] for v in values)
        n_train = sum(v["documents"] for v in values) - n_val
        move = min(want - n_val, n_train - 1)
        if move <= 0:
            return val_cut
        lowest = np.concatenate([v["lowest"] for v in values])
        lowest = lowest[np.argsort(lowest["u"], kind="stable")[:move]]
        for rec in lowest:
            b = int(rec["key"] >> np.uint64(48))
            hist["train"][b] -= int(rec["length"])
            hist["val"][b] += int(rec["length"])
        log.info("val split: %d document(s) by hash, %d moved from train to reach val_min_documents=%d",
                 n_val, move, want)
        return min(int(lowest["u"][-1]) + 1, 2**64 - 1)

    @staticmethod
    def _remove_stale(out_dir: str, keep: set[str]) -> None:
        """Shards left by an earlier run of this directory with more shards."""
        for f in storage.glob(storage.join(out_dir, "*_*_*.*")):
            m = SHARD_FILE.fullmatch(f.rsplit("/", 1)[-1])
            if m and m[1] + ".bin" not in keep:
                storage.remove(f)
