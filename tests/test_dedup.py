"""DedupStage end to end with an in-process runner: reasons, keep rule, quality, determinism, earlier runs."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.stages.base import GlobalJob, StageContext
from tokenmill.stages.dedup import DedupConfig, DedupStage
from tokenmill.stages.dedup.files import U64
from tokenmill.stages.dedup.lsh import write_edges

VOCAB = [f"w{i}" for i in range(2000)]


def local_runner(name, fn, args):
    return [fn(*a) for a in args]


def run_dedup(tmp: Path, shards: list[list[Doc]], config: DedupConfig, run: str = "run", runner=local_runner):
    """Write the shards, run the global step and the apply step; returns ({id: (reason, meta)}, stats)."""
    inputs = []
    for i, docs in enumerate(shards):
        url = str(tmp / run / "in" / f"{i:05d}.parquet")
        storage.write_docs(url, docs)
        inputs.append(url)
    stage = DedupStage(config)
    work = str(tmp / run / "work" / "dedup")
    results = []

    def recording(name, fn, args):
        out = runner(name, fn, args)
        results.extend(out)
        return out

    stage.run_global(GlobalJob(inputs, work, str(tmp / run), recording))
    stats = sum((r.stats[0] for r in results[1:]), results[0].stats[0])
    ctx = StageContext("dedup")
    for i, url in enumerate(inputs):
        stage.begin_shard(i, work)
        for d in storage.read_docs(url):
            stage.process(d, ctx)
    assert sum(ctx.stats.drops.values()) == len(ctx.removed)
    return {d.id: (reason, d.meta.get("dedup")) for d, reason in ctx.removed}, stats


def text(rng: random.Random, n: int = 200) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def edit(rng: random.Random, t: str, rate: float) -> str:
    return " ".join(w if rng.random() >= rate else rng.choice(VOCAB) for w in t.split())


def change_word(t: str, i: int = 100) -> str:
    words = t.split()
    words[i] = "changed"
    return " ".join(words)


def corpus(seed: int = 0, families: int = 30) -> list[Doc]:
    """Families of a base text and copies (exact, light edits, a heavy edit that is not a duplicate)."""
    rng = random.Random(seed)
    docs = []
    for f in range(families):
        base = text(rng)
        variants = [base, base.upper() + "!", edit(rng, base, 0.01), edit(rng, base, 0.02), edit(rng, base, 0.5)]
        for k, t in enumerate(variants[: rng.randint(1, 5)]):
            docs.append(Doc(id=f"f{f}-{k}", text=t, warc_date=f"2024-0{rng.randint(1, 9)}-1{k}T00:00:00Z"))
    rng.shuffle(docs)
    return docs


def test_config_validation():
    with pytest.raises(ValueError, match="bands: must be"):
        DedupConfig(bands=0)
    with pytest.raises(ValueError, match="threshold: must be"):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValueError, match="verify: must be"):
        DedupConfig(verify=2.0)
    with pytest.raises(ValueError, match="partitions: must be"):
        DedupConfig(partitions=0)
    with pytest.raises(ValueError, match="num_perm: 50"):
        DedupConfig(num_perm=50)
    assert DedupConfig().lsh() == (20, 5, 100)
    assert DedupConfig(bands=14, rows=8).lsh() == (14, 8, 112)  # FineWeb's
    b, r, k = DedupConfig(threshold=0.8, bands=14, rows=8).lsh()
    assert k == 112 and b * r <= 112 and (b, r) != (14, 8)


def test_reasons_meta_and_earliest_survivor(tmp_path):
    rng = random.Random(3)
    a, c = text(rng), text(rng)
    shards = [
        [Doc(id="late", text=a, warc_date="2024-03-01T00:00:00Z"),
         Doc(id="other", text=c, warc_date="2024-01-01T00:00:00Z"),
         Doc(id="empty", text="", warc_date="2024-01-01T00:00:00Z")],
        [Doc(id="early", text=a.upper().replace(" ", " ,  "), warc_date="2024-02-01T00:00:00Z"),
         Doc(id="near", text=change_word(a) + " extra", warc_date="2023-12-01T00:00:00Z"),
         Doc(id="empty2", text="", warc_date="2024-01-01T00:00:00Z")],
    ]
    removed, stats = run_dedup(tmp_path, shards, DedupConfig())
    # "near" is the earliest of the cluster {late, early, near}: it survives; both copies of a go
    assert removed == {
        "late": ("near_duplicate", {"rep_id": "near", "cluster_size": 3}),
        "early": ("near_duplicate", {"rep_id": "near", "cluster_size": 3}),
    }
    assert stats.counters["clusters"] == 1 and stats.counters["cluster_size.3"] == 1
    assert stats.counters["no_words"] == 2  # empty texts are counted and kept

    shards[1][1] = Doc(id="near", text=change_word(a), warc_date="2025-01-01T00:00:00Z")
    removed, stats = run_dedup(tmp_path, shards, DedupConfig(), run="run2")
    assert removed["late"] == ("exact_duplicate", {"rep_id": "early", "cluster_size": 3})
    assert removed["near"] == ("near_duplicate", {"rep_id": "early", "cluster_size": 3})
    assert stats.counters["exact_duplicates"] == 1 and stats.counters["near_duplicates"] == 1

    removed, _ = run_dedup(tmp_path, shards, DedupConfig(keep="latest"), run="run3")
    assert set(removed) == {"late", "early"} and removed["late"][1]["rep_id"] == "near"


def test_exact_only_cluster_without_minhash_match(tmp_path):
    """Two-word documents: the exact band finds them even when verification is strict."""
    shards = [[Doc(id="x", text="Hello world"), Doc(id="y", text="hello, WORLD")], [Doc(id="z", text="hello there")]]
    removed, _ = run_dedup(tmp_path, shards, DedupConfig(verify=1.0))
    assert removed == {"y": ("exact_duplicate", {"rep_id": "x", "cluster_size": 2})}
    removed, _ = run_dedup(tmp_path, shards, DedupConfig(exact=False, bands=1, rows=112), run="r2")
    assert removed == {"y": ("near_duplicate", {"rep_id": "x", "cluster_size": 2})}


def test_quality_on_neardup(shared_data, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from dedup_quality import load, run_tokenmill, score

    docs, jac = load(shared_data / "neardup")
    ids = [d["id"] for d in docs]
    for cfg in (DedupConfig(seed=1), DedupConfig(seed=2), DedupConfig(seed=3)):  # not one lucky seed
        recall, precision = score(ids, jac, run_tokenmill(docs, cfg))
        assert recall >= 0.97 and precision >= 0.99, (cfg, recall, precision)


def test_same_survivors_for_any_partitions_and_shard_split(tmp_path):
    docs = corpus()
    one, stats1 = run_dedup(tmp_path, [docs], DedupConfig(partitions=1), run="p1")
    assert len(one) > 20 and stats1.counters["near_duplicates"] and stats1.counters["exact_duplicates"]
    two, _ = run_dedup(tmp_path, [docs[:50], docs[50:]], DedupConfig(partitions=2), run="p2")
    five, _ = run_dedup(tmp_path, [docs[:10], docs[10:77], docs[77:]], DedupConfig(partitions=5), run="p5")
    assert one == two == five
    # each removed document's representative is kept and of the same family
    for doc_id, (_, meta) in one.items():
        assert meta["rep_id"] not in one and meta["rep_id"].split("-")[0] == doc_id.split("-")[0]
        assert not doc_id.endswith("-4")  # the 50%-edited copy is no duplicate


def test_ray_runner_gives_the_same_result(ray_session, tmp_path):
    ray = ray_session

    def ray_runner(name, fn, args):
        remote = ray.remote(fn)
        return ray.get([remote.remote(*a) for a in args])

    docs = corpus(seed=5, families=10)
    local, _ = run_dedup(tmp_path, [docs[:20], docs[20:]], DedupConfig(partitions=2), run="local")
    remote, _ = run_dedup(tmp_path, [docs[:20], docs[20:]], DedupConfig(partitions=2), run="ray", runner=ray_runner)
    assert local == remote and local


def _write_run_docs(run: Path, docs: list[Doc]) -> None:
    storage.write_docs(str(run / "docs" / "part-00000.parquet"), docs)


def test_dedup_against_earlier_runs(tmp_path):
    rng = random.Random(11)
    old_texts = [text(rng) for _ in range(6)]
    old = [Doc(id=f"old{i}", text=t, warc_date="2025-06-01T00:00:00Z") for i, t in enumerate(old_texts)]
    old.append(Doc(id="old-copy", text=old_texts[0], warc_date="2025-07-01T00:00:00Z"))
    removed, _ = run_dedup(tmp_path, [old], DedupConfig(), run="run1")
    assert set(removed) == {"old-copy"}
    _write_run_docs(tmp_path / "run1", [d for d in old if d.id not in removed])
    assert storage.glob(str(tmp_path / "run1" / "dedup" / "signatures" / "part-*.parquet"))

    # run0 has documents but no persisted signatures: they are computed from run0/docs
    fresh = text(rng)
    _write_run_docs(tmp_path / "run0", [Doc(id="ancient", text=fresh)])

    new = [Doc(id="dup-of-old1", text=change_word(old_texts[1]), warc_date="2020-01-01T00:00:00Z"),
           Doc(id="dup-of-ancient", text=fresh.upper()),
           Doc(id="novel", text=text(rng)), Doc(id="novel-copy", text=edit(rng, old_texts[5], 0.6))]
    against = (str(tmp_path / "run1"), str(tmp_path / "run0"))
    computed = []

    def runner(name, fn, args):
        if name == "dedup.against_signatures":
            computed.extend(a[0] for a in args)
        return local_runner(name, fn, args)

    removed, _ = run_dedup(tmp_path, [new[:2], new[2:]], DedupConfig(against=against), run="run2", runner=runner)
    assert computed == [str(tmp_path / "run0" / "docs" / "part-00000.parquet")]  # run1's are reused
    # earlier runs win even when the new document is older
    assert removed == {
        "dup-of-old1": ("near_duplicate", {"rep_id": "old1", "cluster_size": 2}),
        "dup-of-ancient": ("exact_duplicate", {"rep_id": "ancient", "cluster_size": 2}),
    }
    with pytest.raises(ValueError, match="is .* a finished run"):
        run_dedup(tmp_path, [new], DedupConfig(against=(str(tmp_path / "nowhere"),)), run="run3")


def test_components_converge_on_a_long_chain(tmp_path):
    """A path of 300 nodes in shuffled id order is one component whose root is its smallest id."""
    rng = np.random.default_rng(0)
    nodes = (np.uint64(1) << np.uint64(63)) | rng.permutation(np.arange(1000, 1300, dtype=U64))
    u, v = nodes[:-1], nodes[1:]
    cc = str(tmp_path / "cc")
    write_edges(storage.join(cc, "000"), "t", np.concatenate([u, v]), np.concatenate([v, u]), 3)
    rounds = []

    def runner(name, fn, args):
        rounds.append(name)
        return local_runner(name, fn, args)

    final = DedupStage()._components(GlobalJob([], str(tmp_path), str(tmp_path), runner), cc, 3)
    from tokenmill.stages.dedup.components import _load_edges

    pairs = [_load_edges(storage.join(final, f"p{p:05d}")) for p in range(3)]
    leaf_root = {int(a): int(b) for uu, vv in pairs for a, b in zip(uu, vv) if b < a}
    assert set(leaf_root.values()) == {int(nodes.min())} and len(leaf_root) == 299
    assert rounds.count("dedup.large_star") <= 20


def test_day_of_and_keep_order():
    from tokenmill.stages.dedup.lsh import MAX_DAY, day_of, make_gids

    assert day_of("1970-01-02T10:00:00.25+02:00") == 1 and day_of(None) == day_of("junk") == MAX_DAY
    dates = ["2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z", None, "2024-05-01T23:00:00Z"]
    assert list(np.argsort(make_gids(dates, 0, True, latest=False), kind="stable")) == [1, 3, 0, 2]
    assert list(np.argsort(make_gids(dates, 0, True, latest=True), kind="stable")) == [0, 1, 3, 2]
    assert make_gids(dates, 3, False, False).max() < make_gids(dates, 0, True, False).min()  # earlier runs first


def test_apply_without_global_step_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the dedup global step first"):
        DedupStage().begin_shard(0, str(tmp_path))


def test_persisted_signatures_hold_only_kept_documents(tmp_path):
    docs = corpus(seed=2, families=8)
    removed, _ = run_dedup(tmp_path, [docs], DedupConfig(), run="r")
    import pyarrow.parquet as pq

    t = pq.read_table(str(tmp_path / "r" / "dedup" / "signatures" / "part-00000.parquet"))
    assert sorted(t.column("id").to_pylist()) == sorted(d.id for d in docs if d.id not in removed)
    assert b"tokenmill.dedup.signature" in t.schema.metadata
    assert json.dumps(sorted(removed))  # ids are plain strings


def test_signature_batches_by_characters_give_the_same_file(tmp_path):
    from tokenmill.stages.dedup.signatures import read_signatures, sig_matrix, signatures_task
    from tokenmill.stages.dedup.minhash import MinHasher

    rng = random.Random(4)
    docs = [Doc(id=str(i), text=text(rng, rng.randint(0, 300))) for i in range(40)]
    url = str(tmp_path / "in.parquet")
    storage.write_docs(url, docs)
    h = MinHasher(num_perm=32)
    signatures_task(url, str(tmp_path / "a.parquet"), h)
    res = signatures_task(url, str(tmp_path / "b.parquet"), h, batch=512, batch_chars=500)
    a, meta = read_signatures(str(tmp_path / "a.parquet"))
    b, _ = read_signatures(str(tmp_path / "b.parquet"))
    assert np.array_equal(sig_matrix(a, 32), sig_matrix(b, 32)) and a.column("exact").equals(b.column("exact"))
    assert meta.endswith("num_perm=32:seed=1") and res.stats[0].docs_in == 40


def test_empty_shards_and_no_input(tmp_path):
    rng = random.Random(9)
    t = text(rng)
    removed, stats = run_dedup(tmp_path, [[], [Doc(id="a", text=t), Doc(id="b", text=t)], []], DedupConfig())
    assert removed == {"b": ("exact_duplicate", {"rep_id": "a", "cluster_size": 2})}
    stage = DedupStage()
    stage.run_global(GlobalJob([], str(tmp_path / "w"), str(tmp_path / "r"), local_runner))
