"""`tokenmill classifier train`: a fastText quality classifier, DCLM's recipe, from your own examples.

In: positive and negative examples, each a JSONL or Parquet file with a `text` column, or a run
directory (its `docs/*.parquet`, so a sample of a run can serve as the negatives). Out: a fastText
.bin with labels `positive` and `negative`, for the classify stage (`label: positive`).

Text is normalised as the stage does it (`normalize_for_classifier`: lowercased, every whitespace
character a space); word bigrams, softmax loss. A fixed 10% of each class (seeded shuffle) is held out
and scored with the saved model loaded the way the stage loads it (fasttext-predict), so the
accuracy printed is the stage's. Defaults (lr 0.5, 10 epochs, dim 100, bucket 200,000), measured on
main text against page chrome of 150 real pages (bench/classify_speed.py, BENCHMARKS.md): held-out
accuracy 0.70 / 0.80 / 0.81 with 300 / 1,000 / 3,380 examples per class, where fastText's own
defaults (lr 0.1, 5 epochs) give 0.58 / 0.61 / 0.78.

Training uses `fasttext_new` (the `fasttext-new` package: a Rust port of fastText that trains and
writes models the C++ fastText reads) under its own module name, so it never clashes with the
`fasttext` module of fasttext-predict that loads models. It is in the `classify` extra.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import random
import tempfile
from dataclasses import dataclass

from tokenmill.filters.classifiers import normalize_for_classifier

log = logging.getLogger(__name__)

HOLDOUT = 0.1
MIN_EXAMPLES = 10  # per class: the hold-out needs at least one


class TrainInputError(ValueError):
    """An input the user must fix (missing, unreadable, no text): the CLI exits 2."""


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 0.5
    epoch: int = 10
    word_ngrams: int = 2
    dim: int = 100
    min_count: int = 1
    bucket: int = 200_000  # hashed word-bigram rows: the .bin is ~(words + bucket) x dim x 4 bytes
    threads: int = 2
    seed: int = 0
    max_examples: int | None = None  # per class: a seeded sample of each input (None: all of it)

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"--lr: must be more than 0, got {self.lr}")
        for name in ("epoch", "word_ngrams", "dim", "min_count", "bucket", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        if self.max_examples is not None and self.max_examples < MIN_EXAMPLES:
            raise ValueError(f"--max-examples: must be at least {MIN_EXAMPLES}, got {self.max_examples}")


@dataclass
class TrainReport:
    out: str
    positive: int  # examples used (non-empty after normalisation; at most max_examples)
    negative: int
    train: int
    heldout: int
    accuracy: float  # on the held-out examples
    settings: TrainSettings


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        docs = os.path.join(path, "docs")
        base = docs if os.path.isdir(docs) else path
        files = sorted(glob.glob(os.path.join(base, "*.parquet"))) + sorted(glob.glob(os.path.join(base, "*.jsonl*")))
        if not files:
            raise TrainInputError(f"{path}: a directory with no docs/*.parquet (a run) and no .parquet or .jsonl files")
        return files
    if not os.path.exists(path):
        raise TrainInputError(f"{path}: no such file or directory")
    return [path]


def read_texts(path: str) -> list[str]:
    """The `text` of every row of a JSONL or Parquet file, or of a run directory's docs/."""
    texts: list[str] = []
    for f in _files(path):
        if f.endswith(".parquet"):
            import pyarrow.parquet as pq

            try:
                schema = pq.read_schema(f)
                if "text" not in schema.names:
                    raise TrainInputError(f"{f}: no `text` column (columns: {', '.join(schema.names)})")
                col = pq.read_table(f, columns=["text"]).column("text").to_pylist()
            except TrainInputError:
                raise
            except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
                raise TrainInputError(f"{f}: not a readable Parquet file ({type(e).__name__}: {e})") from None
            texts.extend(t for t in col if isinstance(t, str))
        elif f.endswith((".jsonl", ".jsonl.gz", ".json")):
            opener = gzip.open if f.endswith(".gz") else open
            try:
                with opener(f, "rt", encoding="utf-8") as fh:
                    for no, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise TrainInputError(f"{f} line {no}: not JSON ({e.msg})") from None
                        if not isinstance(row, dict) or "text" not in row:
                            raise TrainInputError(f"{f} line {no}: an object with a `text` field is expected")
                        if isinstance(row["text"], str):
                            texts.append(row["text"])
            except (OSError, UnicodeDecodeError, EOFError) as e:
                raise TrainInputError(f"{f}: cannot read it ({e})") from None
        else:
            raise TrainInputError(f"{f}: expected .jsonl or .parquet (or a run directory)")
    return texts


def _examples(path: str, what: str) -> list[str]:
    texts = [t for t in (normalize_for_classifier(t) for t in read_texts(path)) if t]
    if not texts:
        raise TrainInputError(f"--{what} {path}: no non-empty `text` in it")
    if len(texts) < MIN_EXAMPLES:
        raise TrainInputError(f"--{what} {path}: {len(texts)} examples; at least {MIN_EXAMPLES} are needed "
                              "(10% of them are held out to measure the classifier)")
    return texts


def _sample(texts: list[str], k: int, seed: int) -> list[str]:
    return texts if len(texts) <= k else random.Random(seed).sample(texts, k)


def split(texts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(train, held out): a seeded shuffle, the last ~10% held out (at least 1 when there are 2+)."""
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    k = max(1, round(len(texts) * HOLDOUT)) if len(texts) > 1 else 0
    return texts[: len(texts) - k], texts[len(texts) - k:]


def train(positive: str, negative: str, out: str, settings: TrainSettings = TrainSettings()) -> TrainReport:
    try:
        import fasttext_new
    except ImportError:
        raise ImportError("training a classifier needs fasttext-new: pip install 'tokenmill[classify]'") from None
    import fasttext

    if "://" in out:
        raise TrainInputError(f"--out {out}: a local path (copy the model to remote storage afterwards)")
    pos, neg = _examples(positive, "positive"), _examples(negative, "negative")
    if settings.max_examples is not None:  # e.g. a sample of a large run as the negatives
        pos = _sample(pos, settings.max_examples, settings.seed)
        neg = _sample(neg, settings.max_examples, settings.seed + 1)
    pos_train, pos_held = split(pos, settings.seed)
    neg_train, neg_held = split(neg, settings.seed + 1)
    rows = [f"__label__positive {t}" for t in pos_train] + [f"__label__negative {t}" for t in neg_train]
    random.Random(settings.seed).shuffle(rows)
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tokenmill-classifier-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
        model = fasttext_new.train_supervised(
            input=train_file, lr=settings.lr, epoch=settings.epoch, wordNgrams=settings.word_ngrams,
            dim=settings.dim, minCount=settings.min_count, bucket=settings.bucket, thread=settings.threads, seed=settings.seed,
            loss="softmax", verbose=0)
        part = os.path.join(out_dir, f".{os.path.basename(out)}.tmp-{os.getpid()}")
        model.save_model(part)
        os.replace(part, out)
    loaded = fasttext.load_model(out)  # what the classify stage loads
    held = [(t, "__label__positive") for t in pos_held] + [(t, "__label__negative") for t in neg_held]
    right = sum(loaded.predict(t, k=1)[0][0] == want for t, want in held)
    acc = right / len(held) if held else float("nan")
    log.info("trained %s: %d train, %d held out, accuracy %.3f", out, len(rows), len(held), acc)
    return TrainReport(out, len(pos), len(neg), len(rows), len(held), acc, settings)
