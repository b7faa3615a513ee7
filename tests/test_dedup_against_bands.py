"""Band entries persisted with a run's signatures (RUN/dedup/signatures/part-*.bands): a later run
at the same operating point reads them instead of recomputing, with the same drops; a missing,
other-point, corrupt or foreign file is recomputed, counted and named."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_dedup import change_word, edit, local_runner, run_dedup, text

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.stages.dedup import DedupConfig
from tokenmill.stages.dedup.files import (
    BlockFileError,
    read_block_file,
    read_block_header,
    read_block_rows,
    read_block_take,
    write_block_file,
)
from tokenmill.stages.dedup.lsh import band_part


def _history_and_new(seed: int = 5) -> tuple[list[list[Doc]], list[list[Doc]]]:
    """Earlier run: 3 shards of distinct texts (plus copies among themselves); new run: copies
    and edits of them (some dated before the earlier run), duplicates among the new documents,
    and novel ones."""
    rng = random.Random(seed)
    base = [text(rng) for _ in range(45)]
    old = [[Doc(id=f"o{s}-{i}", text=base[s * 15 + i], warc_date=f"2025-0{1 + i % 9}-01T00:00:00Z")
            for i in range(15)] for s in range(3)]
    old[1].append(Doc(id="o-copy", text=base[0].upper(), warc_date="2025-02-03T00:00:00Z"))
    new, k = [], 0
    for s in range(2):
        shard = []
        for i in range(12):
            j = rng.randrange(45)
            t = [base[j], change_word(base[j], 50), edit(rng, base[j], 0.02), edit(rng, base[j], 0.6), text(rng)][i % 5]
            shard.append(Doc(id=f"n{k}", text=t, warc_date=f"20{20 + i % 8}-03-01T00:00:00Z" if i % 3 else None))
            k += 1
        new.append(shard)
    new[1].append(Doc(id="n-dup", text=new[0][4].text, warc_date="2019-01-01T00:00:00Z"))
    new[1].append(Doc(id="n-empty", text="", warc_date=None))
    return old, new


def _earlier(tmp: Path, old) -> str:
    run_dedup(tmp, old, DedupConfig(), run="earlier")
    return str(tmp / "earlier")


def _bands_files(run: str) -> list[str]:
    return storage.glob(storage.join(run, "dedup", "signatures", "part-*.bands"))


class Spy:
    """A runner that records which earlier-run sources each step recomputed or read."""

    def __init__(self):
        self.recomputed, self.checks = [], []

    def __call__(self, name, fn, args):
        out = local_runner(name, fn, args)
        if name == "dedup.bands":
            self.recomputed += [a[1] for a in args if not a[2]]
        if name == "dedup.against_bands":
            self.checks += [v for r in out for v in r.value["files"]]
        return out


def _against(tmp: Path, new, run: str, against: str, **cfg):
    spy = Spy()
    removed, stats = run_dedup(tmp, new, DedupConfig(against=(against,), **cfg), run=run, runner=spy)
    return removed, spy, stats


@pytest.mark.parametrize("keep,partitions", [("earliest", None), ("latest", 4), ("earliest", 3)])
def test_persisted_band_entries_are_read_and_give_the_same_drops(tmp_path, keep, partitions):
    old, new = _history_and_new()
    earlier = _earlier(tmp_path, old)
    files = _bands_files(earlier)
    assert len(files) == 3
    read, spy, stats = _against(tmp_path, new, "read", earlier, keep=keep, partitions=partitions)
    assert spy.recomputed == [] and [c["use"] for c in spy.checks] == [True] * 3
    assert stats.counters["earlier_entries_read"] > 0
    assert any(v[1]["rep_id"].startswith("o") for v in read.values())  # earlier documents removed some
    assert len({"n4", "n-dup"} & set(read)) == 1  # a duplicate within the new run, too
    for f in files:  # without the band files: recomputed from the signatures, same drops
        storage.remove(f)
    again, spy2, _ = _against(tmp_path, new, "recomputed", earlier, keep=keep, partitions=partitions)
    assert sorted(spy2.recomputed) == [0, 1, 2] and {c["kind"] for c in spy2.checks} == {"missing"}
    assert again == read


def _flip_byte(url: str) -> None:
    data = bytearray(Path(url).read_bytes())
    data[len(data) - 7] ^= 0x10
    Path(url).write_bytes(bytes(data))


@pytest.mark.parametrize("damage,kind", [
    ("flip", "corrupt"), ("truncate", "corrupt"), ("garbage", "corrupt"), ("empty", "corrupt"), ("swap", "foreign"),
])
def test_damaged_band_file_is_recomputed_counted_and_named(tmp_path, caplog, damage, kind):
    old, new = _history_and_new(seed=8)
    earlier = _earlier(tmp_path, old)
    reference, _, _ = _against(tmp_path, new, "ok", earlier)
    f0, f1 = sorted(_bands_files(earlier))[:2]
    if damage == "flip":
        _flip_byte(f0)
    elif damage == "truncate":
        Path(f0).write_bytes(Path(f0).read_bytes()[:-100])
    elif damage == "garbage":
        Path(f0).write_bytes(b"PAR1 not a band file at all")
    elif damage == "empty":
        Path(f0).write_bytes(b"")
    else:  # another shard's (valid) file under this shard's name
        shutil.copy(f1, f0)
    with caplog.at_level(logging.INFO, logger="tokenmill.stages.dedup.stage"):
        removed, spy, _ = _against(tmp_path, new, "damaged", earlier)
    assert spy.recomputed == [0]
    assert [c.get("kind") for c in spy.checks] == [kind, None, None]
    assert f"1 persisted band file(s) {kind}" in caplog.text and "part-00000.bands" in caplog.text
    assert "2 of 3 earlier signature files read" in caplog.text
    assert removed == reference


def test_other_operating_point_is_recomputed_and_said(tmp_path, caplog):
    old, new = _history_and_new(seed=9)
    earlier = _earlier(tmp_path, old)  # 20 x 5 (100 permutations)
    with caplog.at_level(logging.INFO, logger="tokenmill.stages.dedup.stage"):
        removed, spy, _ = _against(tmp_path, new, "other", earlier, bands=10, rows=10)
    assert sorted(spy.recomputed) == [0, 1, 2] and {c["kind"] for c in spy.checks} == {"other_point"}
    assert "band entries recomputed (other_point)" in caplog.text and "'bands': 10" in caplog.text
    for f in _bands_files(earlier):
        storage.remove(f)
    assert _against(tmp_path, new, "other-none", earlier, bands=10, rows=10)[0] == removed


def test_band_file_is_a_finalize_output(tmp_path):
    """Listed among the task's outputs, so the runner records its sha256 (resume, `tokenmill verify`)."""
    old, _ = _history_and_new()
    outs = []

    def runner(name, fn, args):
        out = local_runner(name, fn, args)
        if name == "dedup.finalize":
            outs.extend(o for r in out for o in r.outputs)
        return out

    run_dedup(tmp_path, old, DedupConfig(), run="r", runner=runner)
    assert sorted(o for o in outs if o.endswith(".bands")) == sorted(_bands_files(str(tmp_path / "r")))


@pytest.mark.parametrize("root", ["local", "memory"])
def test_block_file_round_trip_ranges_and_errors(tmp_path, root):
    base = str(tmp_path) if root == "local" else f"memory://blocks-{tmp_path.name}"
    url = storage.join(base, "x.bands")
    rng = np.random.default_rng(0)
    key = np.sort(rng.integers(0, 2**63, 1000, dtype=np.uint64))
    sketch = rng.integers(0, 256, (300, 7), dtype=np.uint8)
    write_block_file(url, {"a": 1}, key=key, sketch=sketch, empty=np.zeros(0, np.uint64))
    head, arr = read_block_file(url)
    assert head["meta"] == {"a": 1} and np.array_equal(arr["key"], key) and np.array_equal(arr["sketch"], sketch)
    assert arr["empty"].size == 0
    head = read_block_header(url)
    assert np.array_equal(read_block_rows(url, head, "key", 10, 500), key[10:500])
    assert read_block_rows(url, head, "key", 7, 7).size == 0
    rows = np.array([299, 3, 3, 150, 0, 298, 151])
    assert np.array_equal(read_block_take(url, head, "sketch", rows), sketch[rows])
    assert np.array_equal(read_block_take(url, head, "sketch", rows, gap=0), sketch[rows])
    with pytest.raises(BlockFileError, match="outside"):
        read_block_rows(url, head, "key", 990, 1001)
    with pytest.raises(BlockFileError, match="outside"):
        read_block_take(url, head, "sketch", np.array([300]))
    with pytest.raises(BlockFileError, match="no array 'nope'"):
        read_block_rows(url, head, "nope", 0, 1)
    with pytest.raises(FileNotFoundError):
        read_block_header(storage.join(base, "missing.bands"))


def test_band_part_is_contiguous_on_sorted_keys_for_any_parts():
    keys = np.sort(np.random.default_rng(1).integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True))
    for parts in (1, 2, 7, 24):
        p = band_part(keys, parts)
        assert p.max() < parts and (np.diff(p.astype(np.int64)) >= 0).all()
        assert np.bincount(p.astype(np.int64), minlength=parts).min() > 5000 / parts * 0.7  # even
    edge = np.array([0, 2**63, 2**64 - 1], np.uint64)
    assert band_part(edge, 2).tolist() == [0, 1, 1]


@pytest.mark.parametrize("keep,rep", [("earliest", "e2"), ("latest", "e1")])
def test_keep_rule_among_earlier_runs_with_persisted_entries(tmp_path, keep, rep):
    """The same text in two earlier runs: a new copy's representative is the earlier document the
    keep rule picks by day (run e1's is the later one, and its files come first)."""
    rng = random.Random(3)
    t = text(rng)
    run_dedup(tmp_path, [[Doc(id="e1", text=t, warc_date="2025-06-01T00:00:00Z")]], DedupConfig(), run="e1")
    run_dedup(tmp_path, [[Doc(id="e2", text=t, warc_date="2025-01-01T00:00:00Z")]], DedupConfig(), run="e2")
    spy = Spy()
    new = [[Doc(id="copy", text=change_word(t, 10), warc_date="2025-03-01T00:00:00Z")]]
    cfg = DedupConfig(against=(str(tmp_path / "e1"), str(tmp_path / "e2")), keep=keep)
    removed, _ = run_dedup(tmp_path, new, cfg, run="n", runner=spy)
    assert spy.recomputed == [] and removed["copy"][1] == {"rep_id": rep, "cluster_size": 2}


def test_recomputed_sources_count_towards_partitions(tmp_path, monkeypatch, caplog):
    """Persisted entries do not count towards the partitions (they are read in chunks); when a
    band file falls back to recomputation, its entries do, and the other files are checked again
    for the larger partition count. Same drops either way."""
    from tokenmill.stages.dedup import stage as stage_mod

    monkeypatch.setattr(stage_mod, "ENTRIES_PER_PARTITION", 200)
    old, new = _history_and_new(seed=12)
    earlier = _earlier(tmp_path, old)
    parts_seen = {}

    class PartsSpy(Spy):
        def __call__(self, name, fn, args):
            if name == "dedup.pairs":
                parts_seen.setdefault(self.tag, []).append(len(args))
            return super().__call__(name, fn, args)

    def go(tag):
        spy = PartsSpy()
        spy.tag = tag
        removed, _ = run_dedup(tmp_path, new, DedupConfig(against=(earlier,)), run=tag, runner=spy)
        return removed, spy

    reference, spy = go("ok")
    assert len(spy.checks) == 3 and spy.recomputed == []
    _flip_byte(min(_bands_files(earlier)))
    with caplog.at_level(logging.INFO, logger="tokenmill.stages.dedup.stage"):
        damaged, spy = go("damaged")
    assert spy.recomputed == [0] and len(spy.checks) == 3 + 2  # checked again for more partitions
    assert parts_seen["damaged"][0] > parts_seen["ok"][0] >= 2
    assert damaged == reference


def test_persisted_ranges_read_in_small_chunks_give_the_same_drops(tmp_path):
    old, new = _history_and_new(seed=6)
    earlier = _earlier(tmp_path, old)
    reference, _, _ = _against(tmp_path, new, "whole", earlier, partitions=2)

    def chunked(name, fn, args):
        if name == "dedup.pairs":
            args = [(*a, 5) for a in args]  # chunk: 5 entries
        return local_runner(name, fn, args)

    removed, _ = run_dedup(tmp_path, new, DedupConfig(against=(earlier,), partitions=2), run="chunked", runner=chunked)
    assert removed == reference
