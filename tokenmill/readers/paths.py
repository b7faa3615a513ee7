"""Which files a run reads, and how they are cut into shards (on the driver).

In: `InputConfig` (paths, globs, fsspec URLs, Common Crawl `warc.paths(.gz)` listings). Out: the
input files in a stable order (`expand_paths`) and the `Shard`s that are the unit of parallel work
(`list_shards`): one per file, or byte ranges of a record-gzipped WARC when `split_bytes` is set.
Listings and sizes are read through `remote.open_input`: a throttled server is retried, and a 404
is "does not exist" while a 503 that outlasts `input.retries` is "unavailable".
"""

from __future__ import annotations

import gzip
import posixpath
from dataclasses import dataclass
from typing import Literal

from tokenmill import storage
from tokenmill.readers import remote

FORMATS = ("warc", "wet", "jsonl", "parquet")


@dataclass(frozen=True)
class InputConfig:
    paths: tuple[str, ...] = ()  # paths, globs, fsspec URLs, or warc.paths(.gz) listings
    format: Literal["auto", "warc", "wet", "jsonl", "parquet"] = "auto"
    base_url: str = "https://data.commoncrawl.org/"  # prefix for lines of a warc.paths listing
    split_bytes: int | None = None  # cut record-gzipped WARCs into shards of about this many bytes
    max_files: int | None = None  # read only the first N files (a quick look at a crawl)
    max_body_bytes: int = 10_000_000  # larger HTTP bodies are skipped (counted), not loaded
    retries: int = 8  # I/O retries per read position (429/5xx, dropped connections), before the task fails
    retry_max_s: float = 60.0  # the longest wait between two I/O retries (backoff and Retry-After)

    def __post_init__(self):
        if self.retries < 0:
            raise ValueError("retries: must be 0 or more")
        if not self.retry_max_s > 0:
            raise ValueError("retry_max_s: must be more than 0 seconds")
        if self.split_bytes is not None and self.split_bytes < 1_000_000:
            raise ValueError("split_bytes: must be at least 1000000 (1 MB)")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError("max_files: must be at least 1")


@dataclass(frozen=True)
class Shard:
    """The unit of parallel work: one input file, or the records of a WARC starting in [start, end)."""

    index: int
    path: str
    format: str
    start: int = 0
    end: int | None = None

    @property
    def label(self) -> str:
        name = posixpath.basename(self.path)
        return name if self.start == 0 and self.end is None else f"{name}[{self.start}:{self.end}]"


def detect_format(path: str) -> str:
    p = path.lower()
    for suffix in (".gz", ".zst", ".bz2"):
        if p.endswith(suffix):
            p = p[: -len(suffix)]
    if p.endswith(".wet"):
        return "wet"
    if p.endswith((".warc", ".arc")):
        return "warc"
    if p.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if p.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"cannot tell the format of {path!r} from its name; set input.format")


def is_listing(path: str) -> bool:
    return path.endswith((".paths", ".paths.gz"))


def read_listing(path: str, base_url: str, policy: remote.RetryPolicy | None = None) -> list[str]:
    """A Common Crawl `warc.paths(.gz)` file: one path per line, relative to `base_url`."""
    with remote.open_input(path, policy) as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    lines = [ln.strip() for ln in data.decode("utf-8").splitlines()]
    return [ln if "://" in ln else storage.join(base_url, ln) for ln in lines if ln and not ln.startswith("#")]


def expand_paths(cfg: InputConfig) -> list[str]:
    """Every input file, in a stable order. Raises FileNotFoundError naming the pattern that matched nothing."""
    files: list[str] = []
    policy = remote.RetryPolicy.from_config(cfg)
    remote.use_policy(policy)  # also for what asks fsspec about these files later (sizes, identities)
    for i, pattern in enumerate(cfg.paths):
        if is_listing(pattern):
            try:
                files.extend(read_listing(pattern, cfg.base_url, policy))
            except remote.InputNotFound as e:
                raise FileNotFoundError(f"input.paths[{i}]: listing {pattern!r} does not exist (HTTP {e.status})") from None
            except FileNotFoundError:
                raise FileNotFoundError(f"input.paths[{i}]: listing {pattern!r} does not exist") from None
            except remote.InputUnavailable as e:  # retried until the limit: say so, never "does not exist"
                raise remote.InputUnavailable(f"input.paths[{i}]: listing {pattern!r}: {e}", e.url, e.status) from None
            except OSError as e:  # refused, or another I/O error
                raise OSError(f"input.paths[{i}]: listing {pattern!r}: {e}") from None
        elif any(ch in pattern for ch in "*?["):
            hits = storage.glob(pattern)
            if not hits:
                raise FileNotFoundError(f"input.paths[{i}]: no file matches {pattern!r}")
            files.extend(hits)
        else:
            if "://" not in pattern and not storage.exists(pattern):
                raise FileNotFoundError(f"input.paths[{i}]: {pattern!r} does not exist")
            files.append(pattern)
    if cfg.max_files is not None:
        files = files[: cfg.max_files]
    return files


def list_shards(cfg: InputConfig, files: list[str] | None = None) -> list[Shard]:
    files = expand_paths(cfg) if files is None else files
    shards: list[Shard] = []
    for path in files:
        fmt = detect_format(path) if cfg.format == "auto" else cfg.format
        size = None
        if cfg.split_bytes and fmt in ("warc", "wet") and path.endswith(".gz"):
            size = remote.input_size(path, remote.RetryPolicy.from_config(cfg))
        if size and size > cfg.split_bytes:
            for start in range(0, size, cfg.split_bytes):
                end = min(start + cfg.split_bytes, size)
                shards.append(Shard(len(shards), path, fmt, start, None if end == size else end))
        else:
            shards.append(Shard(len(shards), path, fmt))
    return shards


