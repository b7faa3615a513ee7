"""Extract: raw HTML bytes in, main text out (trafilatura with FineWeb's settings, or resiliparse).

Decoding order: the HTTP header's charset, then the HTML `<meta>` charset, then detection
(charset-normalizer), each tried strictly before the next; labels follow the WHATWG mapping
(latin-1 and ascii decode as windows-1252, gb2312 as gb18030...). Bytes never crash it.

trafilatura runs in a child process (one per worker, reused) so a document that hangs lxml
or a regex is killed after `timeout_s` and counted (`extract_timeout`); the worker goes on.
Documents that already carry text (WET, JSONL, Parquet input) pass through untouched.
Extraction quality against bare trafilatura on 150 real pages: tests/test_extract.py; both
extractors' snippet F1 and speed: bench/extract_modes.py.

`language_prefilter` (off by default) skips extraction for pages that a cheap language pre-pass
on the raw HTML calls confidently in a language that is not kept (filters/prefilter.py); they
are dropped here as `language_prefilter`. Measured with `[en]` at 0.8 on the real pages of
../shared/data: 160 of the 233 WARC pages not extracted (~4 ms each instead of ~25), no keep/drop
verdict changed in any set (bench/prefilter.py).
"""

from __future__ import annotations

import codecs
import importlib.util
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import re
from dataclasses import dataclass, field
from typing import Literal

from tokenmill.doc import Doc
from tokenmill.stages.base import MapStage, StageContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    # trafilatura (FineWeb's) or resiliparse (the `fast` extra: ~1/10 of the CPU, snippet F1 0.863
    # against 0.917 on the shared pages; bench/extract_modes.py). The four options below are trafilatura's.
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    favor_precision: bool = True  # FineWeb: precision over recall
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = False
    timeout_s: float = 10.0  # per document; the child process is killed and restarted past it
    max_html_bytes: int = 5_000_000  # larger bodies are dropped as html_too_large
    isolate: bool = True  # False runs trafilatura in-process (no time limit): for debugging only
    # Languages kept downstream (e.g. [en]): a page whose tag-stripped HTML lid.176 calls another
    # language with at least `prefilter_min_score` is dropped as `language_prefilter` without being
    # extracted (filters/prefilter.py). auto: the language stage's `languages` when that stage runs
    # and keeps a list (resolved by config.from_dict; otherwise off). null: every page is extracted.
    language_prefilter: tuple[str, ...] | Literal["auto"] | None = field(
        default=None, metadata={"shape": "a list of language codes (e.g. [en]), auto, or null"})
    prefilter_min_score: float = 0.8

    def __post_init__(self):
        if self.extractor == "resiliparse" and importlib.util.find_spec("resiliparse") is None:
            raise ValueError("extractor: resiliparse is not installed: pip install 'tokenmill[fast]'")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s: must be positive")
        if not 0.0 < self.prefilter_min_score <= 1.0:
            raise ValueError(f"prefilter_min_score: must be in (0, 1], got {self.prefilter_min_score}")
        if self.language_prefilter is not None and self.language_prefilter != "auto" and (
                isinstance(self.language_prefilter, str) or not self.language_prefilter):
            raise ValueError(f"language_prefilter: a list of language codes (e.g. [en]), auto, or null; "
                             f"got {self.language_prefilter!r}")
        if self.language_prefilter not in (None, "auto"):
            from tokenmill.filters.language import canonical_code, model_labels

            unknown = sorted(c for c in self.language_prefilter if canonical_code(c) not in model_labels())
            if unknown:
                raise ValueError(f"language_prefilter: lid.176 does not know {unknown}")
        if self.max_html_bytes < 1:
            raise ValueError("max_html_bytes: must be at least 1")


# WHATWG encoding labels that Python names differently or decodes too strictly.
CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
    "ascii": "cp1252", "iso8859-1": "cp1252", "windows-1252": "cp1252",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "big5": "big5hkscs", "tis-620": "cp874",
    "iso-8859-9": "cp1254", "utf8": "utf-8", "unicode": "utf-8", "x-user-defined": "cp1252",
}
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.I)


def normalize_charset(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("'\"").lower()
    label = CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(raw: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """(text, charset used). Header, then <meta>, then detection; never raises on bytes.

    A declared charset that fails on a few stray bytes (seen: a UTF-8 page with one latin-1
    byte) is kept, with those bytes replaced, rather than handed to detection, which guesses
    a wrong single-byte charset for the whole page.
    """
    if raw.startswith(codecs.BOM_UTF8):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8"
    declared = [normalize_charset(http_charset)]
    m = META_CHARSET.search(raw[:4096])
    if m:
        declared.append(normalize_charset(m.group(1).decode("ascii", "ignore")))
    declared = [cs for cs in dict.fromkeys(declared) if cs]
    for cs in [*declared, "utf-8"]:
        try:
            return raw.decode(cs), cs
        except UnicodeDecodeError:
            continue
    for cs in declared:
        text = raw.decode(cs, errors="replace")
        if text.count("\ufffd") <= max(8, len(text) // 1000):
            return text, cs
    import charset_normalizer

    best = charset_normalizer.from_bytes(raw[:200_000]).best()
    cs = normalize_charset(best.encoding) if best else None
    cs = cs or (declared[0] if declared else "utf-8")
    return raw.decode(cs, errors="replace"), cs


def _extract(html: str, opts: dict) -> str | None:
    if opts.get("extractor") == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text

        return extract_plain_text(html, preserve_formatting=True, main_content=True, list_bullets=False,
                                  alt_texts=False, links=False, form_fields=False, noscript=False,
                                  comments=opts["include_comments"])
    import trafilatura

    return trafilatura.extract(html, **opts)


class _Child:
    """One reusable extraction process (`python -m tokenmill.stages.extract_child`), killed and
    replaced when a document overruns. A plain subprocess, not multiprocessing: it does not
    re-import the parent's __main__ (a Ray worker's, a notebook's) and is safe beside threads."""

    def __init__(self, opts: dict):
        self.opts = opts
        self.proc: subprocess.Popen | None = None
        self.ready = False

    def spawn(self) -> None:
        """Start the process without waiting for it, so that its import of trafilatura runs beside
        the set-up of the stages after extract; `start` (or the first `extract`) waits for it.
        Measured (set-up of the FineWeb recipe's four stages plus the first page, idle machine, 5
        alternating runs): 1.22 s median against 1.54 s starting it at the first page. A worker
        whose documents are all text already (WET, JSONL) pays the idle child once (~0.4 CPU-s)."""
        if self.proc is None or self.proc.poll() is not None:
            self.ready = False
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tokenmill.stages.extract_child"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )

    def start(self, startup_timeout_s: float = 120.0) -> None:
        self.spawn()
        if self.ready:
            return
        # The child says "ready" once trafilatura is imported (~1 s): start-up is not a document's time.
        ready, _, _ = select.select([self.proc.stdout], [], [], startup_timeout_s)
        try:
            kind, detail = recv_frame(self.proc.stdout) if ready else ("", f"no answer in {startup_timeout_s:.0f} s")
        except EOFError:
            kind, detail = "", f"it exited with code {self.proc.wait(5)}; its error is in this worker's stderr"
        if kind != "ready":
            self.stop()
            raise RuntimeError(f"the extraction process did not start: {detail}")
        self.ready = True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
            self.proc = None
        self.ready = False

    def extract(self, html: str, timeout_s: float) -> tuple[str, str | None]:
        """("ok", text) | ("error", message) | ("timeout", None)."""
        if not self.ready or self.proc.poll() is not None:
            self.start()
        try:
            send_frame(self.proc.stdin, (html, self.opts))
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            if ready:
                return recv_frame(self.proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            self.stop()
            return "error", f"extraction process died: {e}"
        self.stop()
        return "timeout", None


def send_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def recv_frame(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("extraction process closed its output")
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("extraction process closed its output")
    return pickle.loads(data)


class ExtractStage(MapStage):
    name = "extract"
    version = 1
    Config = ExtractConfig

    def setup(self) -> None:
        c = self.config
        if c.extractor == "resiliparse":
            self.opts = dict(extractor="resiliparse", include_comments=c.include_comments)
        else:
            self.opts = dict(
                favor_precision=c.favor_precision,
                include_comments=c.include_comments,
                include_tables=c.include_tables,
                deduplicate=c.deduplicate,
                include_images=False,
            )
        self.child = _Child(self.opts) if c.isolate else None
        if self.child is not None:
            self.child.spawn()  # imports trafilatura while the later stages set up
        self.prefilter = None
        if c.language_prefilter == "auto":  # config.from_dict resolves it; a hand-built config must name the codes
            raise ValueError("extract.language_prefilter: auto is resolved from the language stage by "
                             "tokenmill.config.from_dict; give the language codes when building ExtractConfig directly")
        if c.language_prefilter is not None:
            from tokenmill.filters.prefilter import LanguagePrefilter

            self.prefilter = LanguagePrefilter(c.language_prefilter, c.prefilter_min_score)
            self.prefilter.setup()

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        if doc.raw is None:
            if doc.text is None:
                ctx.drop(doc, "no_content")
                return None
            return doc  # already text (WET / JSONL / Parquet input)
        raw, doc.raw = doc.raw, None
        if len(raw) > self.config.max_html_bytes:
            ctx.drop(doc, "html_too_large")
            return None
        html, charset = decode_html(raw, doc.http_charset)
        doc.meta["charset"] = charset
        if self.prefilter is not None:
            label, score, stripped = self.prefilter.predict(html)
            if self.prefilter.decide(label, score):
                # what removed/extract/ shows: the text lid.176 saw, its label and score
                doc.text, doc.language, doc.language_score = stripped, label, score
                ctx.drop(doc, "language_prefilter")
                return None
        if self.child is None:
            status, text = "ok", _extract(html, self.opts)
        else:
            status, text = self.child.extract(html, self.config.timeout_s)
        if status == "timeout":
            log.warning("extraction of %s (%s) took over %.1fs; skipped", doc.id, doc.url, self.config.timeout_s)
            ctx.drop(doc, "extract_timeout")
            return None
        if status == "error":
            log.warning("extraction of %s (%s) failed: %s", doc.id, doc.url, text)
            ctx.drop(doc, "extract_error")
            return None
        if not text or not text.strip():
            ctx.drop(doc, "no_text_extracted")
            return None
        doc.text = text
        return doc

    def close(self) -> None:
        if getattr(self, "child", None) is not None:
            self.child.stop()
