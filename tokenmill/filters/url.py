"""URL filter: drop documents whose URL is on the UT1 blocklist or spells out banned words.

In: a Doc with `url` (it runs before extraction: `text` may be None). Out: keep, or the
reason. Lists are datatrove's shipped assets, the ones FineWeb used: the UT1 adult/malware
blocklist (`url_filterblacklistsv0_3_0.tar.gz`: 4,558,940 domains, 19,587 URLs) and
`banned_words.txt` / `banned_subwords.txt` / `soft_banned_words.txt`. The rules are those of
datatrove's `URLFilter`:
  - the registered domain, the full host, or any domain between them is listed -> `blocklisted_domain`
  - the URL (without scheme, with or without "www.") is listed -> `blocklisted_url`
  - a banned word is a word of the URL -> `banned_word_in_url`
  - >= `soft_word_threshold` soft-banned words are words of the URL -> `too_many_soft_banned_words_in_url`
  - a banned subword occurs in the URL stripped of non-alphanumerics -> `banned_subword_in_url`
User additions: `extra_domains`, `extra_domain_files`, `extra_url_files` (one entry a line,
"#" comments) add to the blocklist; a host under `allow_domains` / `allow_domain_files` is
never dropped. Documents without a URL are kept (the stage counts them as `no_url`).

Why not `URLFilter` itself: it keeps the domains as a Python set (~700 MB per worker,
measured) and unpacks the archive into the Hugging Face cache. Here the domains are
xxh3-64 hashes in a sorted numpy array: 36 MB, binary search per lookup. A false hit needs a
64-bit hash collision (~2.5e-13 per lookup). Speed: ~5,800 docs/s on real page URLs.
tldextract runs on its bundled public-suffix snapshot: no network, no cache directory.

Loading, once per worker process: hashing the 4.56M domains costs ~1.8 CPU-s (gunzip, split,
hash, sort; peak ~130 MB), so the result is cached on disk, keyed by the archive's content hash (xxh3-128)
and a format version, and later workers read it in ~0.1 s. The cache directory is
$TOKENMILL_CACHE_DIR, else $XDG_CACHE_HOME/tokenmill, else ~/.cache/tokenmill; an empty
TOKENMILL_CACHE_DIR turns the cache off. Writers write a temporary file and rename it, so
concurrent workers never read a partial file; a file that does not read back as a sorted hash
array is rebuilt; a directory that cannot be written is skipped (the list is used from memory).
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import numpy as np
import xxhash

from tokenmill.doc import Doc

log = logging.getLogger(__name__)

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")  # datatrove's URL word normaliser (after lowercasing)
_hash = xxhash.xxh3_64_intdigest


@dataclass(frozen=True)
class UrlFilterConfig:
    use_blocklist: bool = True  # UT1 domains + URLs
    use_banned_words: bool = True  # banned words, soft-banned words, banned subwords
    soft_word_threshold: int = 2
    extra_domains: tuple[str, ...] = ()
    extra_domain_files: tuple[str, ...] = ()
    extra_url_files: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] = ()
    allow_domain_files: tuple[str, ...] = ()

    def __post_init__(self):
        if self.soft_word_threshold < 1:
            raise ValueError(f"url_filter.soft_word_threshold must be >= 1, got {self.soft_word_threshold}")


def _assets_path() -> str:
    from datatrove.utils._import_utils import ASSETS_PATH

    return ASSETS_PATH


def _read_list(path: str) -> list[str]:
    """One entry a line, '#' comments and blank lines skipped; local path or fsspec URL."""
    import fsspec

    with fsspec.open(path, "rt", encoding="utf-8") as f:
        return [s for s in (line.strip() for line in f) if s and not s.startswith("#")]


def _hash_array(entries) -> np.ndarray:
    """Sorted unique xxh3-64 hashes of byte strings: (n,) uint64."""
    a = np.fromiter(map(_hash, entries), dtype=np.uint64)
    a.sort()
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


def _in(sorted_hashes: np.ndarray, key: str) -> bool:
    h = np.uint64(_hash(key.encode()))
    i = np.searchsorted(sorted_hashes, h)
    return bool(i < len(sorted_hashes) and sorted_hashes[i] == h)


BLOCKLIST_ARCHIVE = "url_filterblacklistsv0_3_0.tar.gz"
BLOCKLIST_CACHE_FORMAT = 1  # bump when what is cached changes (the hash function, the URL key rules)
_ASCII_SPACE_BUT_NEWLINE = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")  # what bytes.strip() strips, but b"\n"


def cache_dir() -> str | None:
    """$TOKENMILL_CACHE_DIR, else $XDG_CACHE_HOME/tokenmill, else ~/.cache/tokenmill; None when
    TOKENMILL_CACHE_DIR is set empty (no cache)."""
    env = os.environ.get("TOKENMILL_CACHE_DIR")
    if env is not None:
        return env or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tokenmill")


def _nonempty_lines(data: bytes, lower: bool = False) -> list[bytes]:
    """The lines of `data` stripped of ASCII whitespace, empty ones dropped: what iterating the file
    and `line.strip()` gives, in bulk (the UT1 domains have no spaces, so no line needs stripping)."""
    if lower:
        data = data.lower()
    lines = data.split(b"\n")
    if any(c in data for c in _ASCII_SPACE_BUT_NEWLINE):
        lines = [line.strip() for line in lines]
    return [line for line in lines if line]


def _hash_lines(f, chunk_bytes: int = 1 << 22) -> np.ndarray:
    """Sorted unique hashes of the lowercased non-empty lines of a binary file, read in chunks
    (peak memory ~ the hashes plus one chunk's lines, not the whole file's)."""
    parts, rest = [], b""
    while True:
        block = f.read(chunk_bytes)
        data = rest + block
        if block:
            cut = data.rfind(b"\n") + 1  # the last, maybe partial, line waits for the next block
            data, rest = data[:cut], data[cut:]
        parts.append(np.fromiter(map(_hash, _nonempty_lines(data, lower=True)), dtype=np.uint64))
        if not block:
            break
    a = np.concatenate(parts)
    del parts
    a.sort()
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


def build_blocklist(path: str) -> tuple[np.ndarray, list[str]]:
    """From the UT1 archive: the domains' sorted unique hashes and the URLs' keys (~1.8 CPU-s)."""
    with tarfile.open(path, "r:gz") as tar:
        files = {name: tar.extractfile(name) for name in ("urls", "domains")}
        for name, f in files.items():
            if f is None:
                raise ValueError(f"{path}: {name!r} is not a file in the archive")
        urls = sorted({_url_key(line.decode("utf-8", "replace")) for line in _nonempty_lines(files["urls"].read())})
        domains = _hash_lines(files["domains"])
    return domains, urls


def _cache_file(archive: str, directory: str) -> str:
    h = xxhash.xxh3_128()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return os.path.join(directory, f"ut1-{h.hexdigest()}-v{BLOCKLIST_CACHE_FORMAT}.npz")


def _read_cache(path: str) -> tuple[np.ndarray, list[str]] | None:
    """The cached (domains, urls), or None when the file is missing or does not read back whole."""
    try:
        with np.load(path, allow_pickle=False) as z:
            domains, url_bytes, n_urls = z["domains"], z["urls"], int(z["n_urls"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("the URL blocklist cache %s is unreadable (%s); rebuilding it", path, e)
        return None
    urls = url_bytes.tobytes().decode("utf-8").split("\n") if n_urls else []
    if (domains.dtype != np.uint64 or domains.ndim != 1 or len(urls) != n_urls
            or not bool(np.all(domains[1:] > domains[:-1]))):
        log.warning("the URL blocklist cache %s does not hold a sorted hash array; rebuilding it", path)
        return None
    return domains, urls


def _write_cache(path: str, domains: np.ndarray, urls: list[str]) -> None:
    """Temporary file, then rename: a concurrent reader sees the whole file or none."""
    directory = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ut1-", suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, domains=domains, n_urls=np.int64(len(urls)),
                     urls=np.frombuffer("\n".join(urls).encode("utf-8"), dtype=np.uint8))
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        log.warning("could not cache the URL blocklist in %s (%s); set TOKENMILL_CACHE_DIR to a writable "
                    "directory to save ~1.8 CPU-s per worker", directory, e)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@lru_cache(maxsize=1)
def load_blocklist() -> tuple[np.ndarray, frozenset[str]]:
    """UT1 domains as a sorted hash array (36 MB) and the URLs as keys; once per process, from the
    on-disk cache when it holds this archive's (see the module docstring)."""
    path = os.path.join(_assets_path(), BLOCKLIST_ARCHIVE)
    directory = cache_dir()
    cached = _cache_file(path, directory) if directory else None
    got = _read_cache(cached) if cached else None
    if got is None:
        got = build_blocklist(path)
        if cached:
            _write_cache(cached, *got)
    domains, urls = got
    return domains, frozenset(urls)


def _word_list(name: str) -> set[str]:
    """datatrove's word assets, normalised as datatrove does (lowercase alphanumerics only)."""
    with open(os.path.join(_assets_path(), name), encoding="utf-8") as f:
        return {_WORD_SPLIT.sub("", s.lower()) for s in (x.strip() for x in f) if s and not s.startswith("#")}


def _url_key(url: str) -> str:
    """'https://WWW.Example.com/a/' -> 'example.com/a' (scheme, 'www.', trailing '/' dropped)."""
    s = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", url.strip())
    host, sep, rest = s.partition("/")
    host = host.lower().removeprefix("www.")
    return (host + sep + rest).rstrip("/")


class UrlFilter:
    """`filter(doc)` -> True, or (False, reason); see the module docstring for the rules."""

    name = "url_filter"

    def __init__(self, config: UrlFilterConfig | None = None):
        self.config = config = config if config is not None else UrlFilterConfig()
        self._ready = False

    def setup(self) -> None:
        import ahocorasick
        from tldextract import TLDExtract

        cfg = self.config
        # suffix_list_urls=() + cache_dir=None: the bundled snapshot, never the network
        self.tld = TLDExtract(suffix_list_urls=(), cache_dir=None)
        extra_domains = [d.lower() for d in cfg.extra_domains]
        for path in cfg.extra_domain_files:
            extra_domains += [d.lower() for d in _read_list(path)]
        self.urls = {_url_key(u) for path in cfg.extra_url_files for u in _read_list(path)}
        if cfg.use_blocklist:
            domains, urls = load_blocklist()
            self.urls = self.urls | urls if self.urls else urls
            if extra_domains:
                domains = np.union1d(domains, _hash_array(d.encode() for d in extra_domains))
        else:
            domains = _hash_array(d.encode() for d in extra_domains)
        self.domains = domains
        allow = [d.lower() for d in cfg.allow_domains]
        for path in cfg.allow_domain_files:
            allow += [d.lower() for d in _read_list(path)]
        self.allow = {d.removeprefix("www.") for d in allow}

        self.banned_words = _word_list("banned_words.txt") if cfg.use_banned_words else set()
        self.soft_banned_words = _word_list("soft_banned_words.txt") if cfg.use_banned_words else set()
        self.subwords = None
        if cfg.use_banned_words:
            self.subwords = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for i, w in enumerate(sorted(_word_list("banned_subwords.txt"))):
                self.subwords.add_word(w, i)
            self.subwords.make_automaton()
        self._ready = True

    def _host_chain(self, url: str) -> list[str]:
        """'a.b.example.co.uk' -> ['a.b.example.co.uk', 'b.example.co.uk', 'example.co.uk']."""
        try:
            host = (urlsplit(url if "://" in url else "http://" + url).hostname or "").rstrip(".")
        except ValueError:  # "http://[broken": no host to look up; the word rules still apply
            return []
        if not host:
            return []
        parts = self.tld.extract_str(host)
        # tldextract >= 5.3 names it top_domain_under_public_suffix; older: registered_domain
        new_api = hasattr(parts, "top_domain_under_public_suffix")
        top = parts.top_domain_under_public_suffix if new_api else parts.registered_domain
        # unknown suffix ("intranet.local", an IP): every parent with >= 2 labels
        labels, n_top = host.split("."), (top.count(".") + 1 if top else min(2, host.count(".") + 1))
        return [".".join(labels[i:]) for i in range(0, len(labels) - n_top + 1)]

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        if not self._ready:
            self.setup()
        url = (doc.url or "").strip()
        if not url:
            return True
        hosts = self._host_chain(url)
        if any(h in self.allow or h.removeprefix("www.") in self.allow for h in hosts):
            return True
        if any(_in(self.domains, h) for h in hosts):
            return False, "blocklisted_domain"
        key = _url_key(url)
        if key in self.urls or key.split("#")[0] in self.urls:
            return False, "blocklisted_url"
        words = set(_WORD_SPLIT.split(url.lower()))
        if self.banned_words and not words.isdisjoint(self.banned_words):
            return False, "banned_word_in_url"
        if self.soft_banned_words and len(words & self.soft_banned_words) >= self.config.soft_word_threshold:
            return False, "too_many_soft_banned_words_in_url"
        if self.subwords is not None and next(self.subwords.iter(_WORD_SPLIT.sub("", url.lower())), None):
            return False, "banned_subword_in_url"
        return True
