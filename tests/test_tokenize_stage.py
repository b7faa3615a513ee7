"""The tokenize stage end to end with an in-process runner: decode gives back the documents in
shard order, the manifest's checksums match, the split is stable, output is deterministic."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.stages.base import GlobalJob
from tokenmill.stages.tokenize import TokenizeConfig, TokenizeStage
from tokenmill.tokenize import MAGIC_U32, ShardError, TokenShards, decode_shard, read_header
from tokenmill.stages.tokenize.tasks import shuffle_key, split_hash

WORDS = "the a river house über straße 東京 🙂 cat sat on mat quickly, running. \n".split(" ")


def make_docs(n: int, seed: int = 0) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
        docs.append(Doc(id=f"doc-{i:04d}", text=f"{i}: {body}"))
    docs[3].text = "  leading spaces, a literal <|bos|> and <|eos|> inside\n"
    docs[4].text = ""  # skipped, counted as empty_text
    docs[5].text = None
    return docs


def write_inputs(root, docs: list[Doc], n_parts: int) -> list[str]:
    paths = []
    for s in range(n_parts):
        p = str(root / "docs" / f"part-{s:05d}.parquet")
        storage.write_docs(p, docs[s::n_parts])
        paths.append(p)
    return paths


def run_stage(root, docs, n_parts=3, max_cpus=1, total_cpus=1, **cfg):
    """Run the stage with an in-process runner; returns the tokens dir and each task group's results
    (and, under "cpus", the CPUs each group asked for)."""
    inputs = write_inputs(root, docs, n_parts)
    results = {"cpus": {}}

    def runner(name, fn, args, cpus=1):
        results["cpus"][name] = cpus
        results[name] = [fn(*a) for a in args]
        return results[name]

    cfg = {"vocab_size": 512, "shard_tokens": 3000, "val_fraction": 0.1, **cfg}
    run_dir = str(root / "run")
    job = GlobalJob(inputs, f"{run_dir}/work/tokenize", run_dir, runner, max_cpus=max_cpus, total_cpus=total_cpus)
    TokenizeStage(TokenizeConfig(**cfg)).run_global(job)
    return run_dir + "/tokens", results


@pytest.mark.parametrize("max_cpus,total_cpus,train,share", [
    (3, 3, 3, 1),    # one node of 3: training takes it; 2 shards' tasks get one CPU each
    (4, 8, 4, 4),    # two nodes of 4: 2 shards' tasks get a node each
    (32, 32, 16, 16),  # one big node: 2 shards' tasks get half each; training as much
    (2, 64, 2, 2),   # many small nodes: never more than a node has
])
def test_tasks_that_run_threads_ask_for_their_share_of_cpus(tmp_path, max_cpus, total_cpus, train, share):
    _, results = run_stage(tmp_path, make_docs(30), n_parts=2, max_cpus=max_cpus, total_cpus=total_cpus)
    assert results["cpus"] == {"sample": share, "train": train, "encode": share, "write": share}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    docs = make_docs(300)
    tokens, results = run_stage(root, docs)
    return docs, tokens, results


def test_decode_gives_back_every_document_in_shard_order(built):
    docs, tokens, _ = built
    ds = TokenShards(tokens)
    tok = ds.tokenizer()
    cut = int(0.1 * 2**64)
    kept = [d for d in docs if d.text]
    for split in ("train", "val"):
        expected = sorted((d for d in kept if (split_hash(d.id) < cut) == (split == "val")),
                          key=lambda d: shuffle_key(d.id, 1234))
        got = [t for row in ds.shards(split) for t in decode_shard(ds.path(row), tok)]
        assert got == [d.text for d in expected]
    assert len(ds.shards("train")) > 1, "the test should cover several shards"
    # every document starts with BOS, and the reader's documents agree with decode
    assert all(doc[0] == ds.bos_id for doc in ds.documents("train"))
    assert sum(1 for _ in ds.documents("val")) == len([d for d in kept if split_hash(d.id) < cut])


def test_manifest_checksums_and_counts(built):
    docs, tokens, results = built
    rows = pq.read_table(f"{tokens}/manifest.parquet").to_pylist()
    for row in rows:
        data = open(f"{tokens}/{row['shard']}", "rb").read()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert read_header(f"{tokens}/{row['shard']}").n_tokens == row["tokens"]
        assert row["dtype"] == "uint16" and row["vocab_size"] <= 512
        assert 1000 < row["tokens"] < 6000  # about shard_tokens=3000 each
    st = [s for r in results["encode"] for s in r.stats]
    assert sum(s.counters["tokens"] for s in st) == sum(r["tokens"] for r in rows)
    assert sum(s.counters["documents"] for s in st) == sum(r["documents"] for r in rows) == len(docs) - 2
    assert sum(s.drops["empty_text"] for s in st) == 2
    # scratch (sampled training text, encoded parts) is gone; the shards hold the tokens
    assert list((Path(tokens).parent / "work/tokenize").iterdir()) == []


def test_corrupt_shard_is_detected(tmp_path):
    tokens, _ = run_stage(tmp_path, make_docs(60), n_parts=2)
    row = TokenShards(tokens).shards("train")[0]
    path = f"{tokens}/{row['shard']}"
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(ShardError, match="sha256"):
        TokenShards(tokens)
    TokenShards(tokens, verify=False)  # header and size still fine


def test_rerun_and_resharding_give_identical_shards_and_split(tmp_path, built):
    docs, tokens, _ = built
    again, _ = run_stage(tmp_path / "b", docs, n_parts=2)  # other input sharding, same documents
    a = pq.read_table(f"{tokens}/manifest.parquet").to_pylist()
    b = pq.read_table(f"{again}/manifest.parquet").to_pylist()
    assert [(r["shard"], r["sha256"]) for r in a] == [(r["shard"], r["sha256"]) for r in b]
    # another seed reshuffles the documents but keeps exactly the same val documents
    other, _ = run_stage(tmp_path / "c", docs, seed=7)
    ta, tb = TokenShards(tokens), TokenShards(other)
    tok = ta.tokenizer()
    val_a = [t for r in ta.shards("val") for t in decode_shard(ta.path(r), tok)]
    val_b = [t for r in tb.shards("val") for t in decode_shard(tb.path(r), tok)]
    assert sorted(val_a) == sorted(val_b) and val_a != val_b
    train_a = [t for r in ta.shards("train") for t in decode_shard(ta.path(r), tok)]
    train_b = [t for r in tb.shards("train") for t in decode_shard(tb.path(r), tok)]
    assert sorted(train_a) == sorted(train_b) and train_a != train_b


def test_word_cache_size_does_not_change_the_tokens(tmp_path, built):
    docs, tokens, _ = built  # built with the default 200,000-word cache
    a = pq.read_table(f"{tokens}/manifest.parquet").to_pylist()
    for size in (0, 7):  # the tokenizer's own default; a cache that is full at once
        other, _ = run_stage(tmp_path / str(size), docs, word_cache=size)
        b = pq.read_table(f"{other}/manifest.parquet").to_pylist()
        assert [(r["shard"], r["sha256"]) for r in a] == [(r["shard"], r["sha256"]) for r in b]


def test_rerun_with_fewer_shards_removes_the_extra_ones(tmp_path):
    docs = make_docs(300)
    tokens, _ = run_stage(tmp_path, docs)
    before = {p.name for p in (tmp_path / "run/tokens").iterdir()}
    (tmp_path / "run/tokens/notes_train_keep.txt").write_text("a user's file")
    run_stage(tmp_path, docs, shard_tokens=1_000_000)  # everything fits one train shard now
    after = {p.name for p in (tmp_path / "run/tokens").iterdir()}
    assert "tokenmill_train_000001.bin" in before and "tokenmill_train_000001.idx" in before
    assert after == {"manifest.parquet", "tokenizer.json", "notes_train_keep.txt", "tokenmill_train_000000.bin",
                     "tokenmill_train_000000.idx", "tokenmill_val_000000.bin", "tokenmill_val_000000.idx"}
    assert len(TokenShards(tokens).shards("train")) == 1


def test_shards_without_text_are_counted_not_fatal(tmp_path):
    docs = make_docs(40)
    for d in docs[::3]:  # with 3 input parts, part 0 holds only these: no text at all
        d.text = ""
    tokens, results = run_stage(tmp_path, docs, n_parts=3)
    assert [r.stats[0].counters["sample_documents"] for r in results["sample"]][0] == 0
    enc = [r.stats[0] for r in results["encode"]]
    assert enc[0].drops["empty_text"] == enc[0].docs_in == 14 and enc[0].docs_out == 0
    ds = TokenShards(tokens)
    assert sum(r["documents"] for r in ds.rows) == len([d for d in docs if d.text])


def test_small_run_still_gets_val_documents(tmp_path):
    docs = make_docs(12)
    tokens, _ = run_stage(tmp_path, docs, n_parts=2, val_fraction=0.0, val_min_documents=3)
    ds = TokenShards(tokens)
    assert sum(r["documents"] for r in ds.shards("val")) == 3
    lowest = sorted((d for d in docs if d.text), key=lambda d: split_hash(d.id))[:3]
    tok = ds.tokenizer()
    assert sorted(decode_shard(ds.path(ds.shards("val")[0]), tok)) == sorted(d.text for d in lowest)


def test_user_tokenizer_with_large_vocab_writes_uint32(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(sorted(alphabet))}}
    vocab.update({f"zz{i}": len(vocab) + i for i in range(70_000 - len(vocab))})  # big, mostly unused
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    path = tmp_path / "user.json"
    tok.save(str(path))
    docs = make_docs(20)
    tokens, results = run_stage(tmp_path, docs, n_parts=2, tokenizer=str(path), bos_token="<|endoftext|>")
    assert "sample" not in results and "train" not in results  # no training with a user tokenizer
    ds = TokenShards(tokens)
    row = ds.shards("train")[0]
    assert row["dtype"] == "uint32" and row["vocab_size"] == 70_000 and row["bos_id"] == 0
    assert read_header(ds.path(row)).magic == MAGIC_U32
    assert np.array_equal(np.fromfile(ds.path(row), dtype=np.uint32, offset=256 * 4), ds.tokens(row))
    texts = [t for r in ds.shards("train") + ds.shards("val") for t in decode_shard(ds.path(r), ds.tokenizer())]
    assert sorted(texts) == sorted(d.text for d in docs if d.text)


def test_bos_missing_from_user_tokenizer_is_a_clear_error(tmp_path):
    from tokenmill.tokenize import train_bpe

    path = tmp_path / "t.json"
    train_bpe(["some text"] * 5, 300, special_tokens=("<s>",)).save(str(path))
    with pytest.raises(ValueError, match="bos_token"):
        run_stage(tmp_path, make_docs(10), n_parts=1, tokenizer=str(path))


@pytest.mark.parametrize("bad,field", [
    ({"vocab_size": 100}, "vocab_size"), ({"val_fraction": 1.5}, "val_fraction"),
    ({"bos_token": "<s>"}, "bos_token"), ({"shard_tokens": 10}, "shard_tokens"), ({"name": "a_b"}, "name"),
])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        TokenizeConfig(**bad)


def test_windows_start_at_documents_and_stay_in_shards(built):
    _, tokens, _ = built
    ds = TokenShards(tokens)
    wins = list(ds.windows("train", 65))
    assert wins and all(len(w) == 65 and w[0] == ds.bos_id for w in wins)
    total = sum(len(w) for w in ds.windows("train", 65, bos_aligned=False))
    assert total == sum((r["tokens"] // 65) * 65 for r in ds.shards("train"))


def test_under_ray_the_shards_are_the_same(tmp_path, built, ray_session):
    """The task bodies pickle to Ray workers and give byte-identical shards."""
    from tokenmill.pipeline.executors import RayExecutor, Task

    docs, tokens, _ = built
    ex = RayExecutor(workers=2, max_attempts=1)

    def runner(name, fn, args):
        tasks = [Task(f"{name}-{i}", fn, tuple(a)) for i, a in enumerate(args)]
        done = {}
        ex.run(tasks, lambda att: done.__setitem__(att.task.task_id, att))
        assert all(done[t.task_id].ok for t in tasks), [done[t.task_id].error for t in tasks]
        return [done[t.task_id].result for t in tasks]

    inputs = write_inputs(tmp_path, docs, 3)
    run = tmp_path / "run"
    cfg = TokenizeConfig(vocab_size=512, shard_tokens=3000, val_fraction=0.1)
    TokenizeStage(cfg).run_global(GlobalJob(inputs, str(run / "work/tokenize"), str(run), runner))
    a = pq.read_table(f"{tokens}/manifest.parquet").to_pylist()
    b = pq.read_table(f"{run}/tokens/manifest.parquet").to_pylist()
    assert [r["sha256"] for r in a] == [r["sha256"] for r in b]


def test_plan_ranges_cover_every_token_in_shards_of_about_the_target():
    from tokenmill.stages.tokenize.tasks import KEY_BINS, dense_hist, plan_ranges, sparse_hist

    rng = np.random.default_rng(0)
    bins = rng.integers(0, KEY_BINS, 50_000)
    lengths = rng.integers(50, 1500, 50_000)
    hist = dense_hist([sparse_hist(bins[:20_000], lengths[:20_000]), sparse_hist(bins[20_000:], lengths[20_000:])])
    assert hist.sum() == lengths.sum() and np.array_equal(hist, np.bincount(bins, lengths, KEY_BINS).astype(np.int64))
    ranges = plan_ranges(hist, 1_000_000)
    assert ranges[0][0] == 0 and ranges[-1][1] == KEY_BINS
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous
    sizes = [int(hist[lo:hi].sum()) for lo, hi in ranges]
    assert len(sizes) == -(-int(lengths.sum()) // 1_000_000)
    assert all(abs(s - lengths.sum() / len(sizes)) < 0.01 * 1_000_000 for s in sizes), sizes
    assert plan_ranges(np.zeros(KEY_BINS, np.int64), 1000) == []


def test_a_given_tokenizer_is_loaded_once_per_process(tmp_path, monkeypatch):
    """Checking the config loads the tokenizer; run_global and its in-process encode tasks reuse
    that load (a 32k BPE takes ~0.1 s to load, as long as encoding 0.2 MB of text here)."""
    from tokenmill.stages.tokenize import tasks
    from tokenmill.tokenize import tokenizer as tokenizer_mod
    from tokenmill.tokenize import train_bpe

    path = tmp_path / "given.json"
    train_bpe([d.text for d in make_docs(50, seed=3) if d.text], 400).save(str(path))
    monkeypatch.setattr(tasks, "_TOKENIZERS", {})
    loads = []
    real_prepare = tokenizer_mod.prepare
    monkeypatch.setattr(tokenizer_mod, "prepare", lambda tok: loads.append(1) or real_prepare(tok))
    tokens, _ = run_stage(tmp_path, make_docs(40), n_parts=2, tokenizer=str(path))
    assert len(loads) == 1
    assert sum(r["documents"] for r in TokenShards(tokens).rows) == 38


def test_encode_tasks_trust_the_cache_only_for_the_content_the_driver_wrote(tmp_path, monkeypatch):
    from tokenmill.stages.tokenize import tasks
    from tokenmill.tokenize import train_bpe

    monkeypatch.setattr(tasks, "_TOKENIZERS", {})
    path = str(tmp_path / "tokenizer.json")
    sha = tasks.write_tokenizer(train_bpe(["one two three"] * 5, 300), path)
    held = tasks.cached_tokenizer(path, sha256=sha)
    Path(path).unlink()  # a process that holds this content does not read the file again
    assert tasks.cached_tokenizer(path, sha256=sha) is held
    tasks.write_tokenizer(train_bpe(["four five six"] * 5, 300), path)  # another content under the same name
    monkeypatch.setattr(tasks, "_TOKENIZERS", {})  # as in a fresh worker
    with pytest.raises(ValueError, match="changed while the stage ran"):
        tasks.cached_tokenizer(path, sha256=sha)


def test_encoding_a_shard_does_not_import_pandas(tmp_path):
    """pyarrow imports pandas (0.3-0.7 s here) on its first Python-to-Arrow or Arrow-to-numpy
    conversion; a fresh worker's encode task makes none (empty and missing text included)."""
    import subprocess
    import sys

    from tokenmill.stages.tokenize import tasks
    from tokenmill.tokenize import train_bpe

    docs = make_docs(30)  # holds an empty and a missing text
    inputs = write_inputs(tmp_path, docs, 1)
    tok_path = str(tmp_path / "tokenizer.json")
    tasks.write_tokenizer(train_bpe([d.text for d in docs if d.text], 400), tok_path)
    code = (
        "import sys\n"
        "from tokenmill.stages.tokenize.tasks import encode_shard\n"
        f"r = encode_shard({inputs[0]!r}, {tok_path!r}, '<|bos|>', 1, 7, 1000, 2**62, 1, {str(tmp_path / 't')!r}, "
        f"{str(tmp_path / 'm.npy')!r})\n"
        "print(r.stats[0].docs_in, r.stats[0].docs_out, r.stats[0].drops['empty_text'], 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["30", "28", "2", "False"]


def test_batch_size_does_not_change_the_tokens(tmp_path, built):
    docs, tokens, _ = built
    other, _ = run_stage(tmp_path, docs, batch_docs=7)
    a = pq.read_table(f"{tokens}/manifest.parquet").to_pylist()
    assert a == pq.read_table(f"{other}/manifest.parquet").to_pylist()
