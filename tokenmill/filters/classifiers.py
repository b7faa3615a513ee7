"""Model-based quality scores: fastText (DCLM-style) and transformers (FineWeb-Edu-style) classifiers.

In: documents' text, in batches. Out: one float per document and model: the probability of
`label` (fastText; a transformers classification model) or the model's single output (a
transformers regression model, e.g. FineWeb-Edu's 0-5 educational score). Nothing is ever
downloaded: `model` is a local path (or an fsspec URL, copied to a local temporary file once per
worker, since fastText and transformers load from local files).

fastText sees the text as `normalize_for_classifier` gives it, and `tokenmill classifier train`
trains on exactly that form: lowercased, every whitespace character (newlines too) a space. Cost
on this machine (bench/classify_speed.py): ~0.8 ms of fastText `predict` for a 600-word page with
a 2-label bigram model, ~0.08 ms of normalisation. transformers models get the raw text (their
tokenizer has its own normalisation), truncated to `max_length` tokens, `batch_size` documents at
a time, on the GPU when torch sees one (`device: auto`), else on the CPU.

A model spec is checked when the config is loaded (the file exists, is a fastText model with
that label, or a model directory whose config.json has that label), so a bad path fails at
start, naming the key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin/.ftz file
LABEL_PREFIX = "__label__"


_OTHER_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def normalize_for_classifier(text: str) -> str:
    """The one form fastText classifiers see, in training and in the stage: lowercased, every
    whitespace character a space (a newline ends an example in fastText's files; a no-break space
    would glue two words). Runs of spaces are left: fastText's tokenizer skips them. ~0.05 ms for
    a 5 kB page; a `\\s+` regex over every space took 0.4 ms, as long as the prediction itself."""
    t = text.lower()
    for ch in "\n\r\t\x0b\x0c":
        if ch in t:
            t = t.replace(ch, " ")
    return _OTHER_SPACE.sub(" ", t).strip()


def _is_url(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    if _is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return fs.exists(p)
    return os.path.exists(path)


def fasttext_labels(path: str) -> list[str]:
    """The labels of a local fastText model, read from its dictionary (fasttext-predict's model
    has no `labels`). Raises ValueError when the file is not a fastText model."""
    from tokenmill.filters.language import read_fasttext_labels

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if len(head) < 4 or struct.unpack("<i", head)[0] != _FASTTEXT_MAGIC:
        raise ValueError(f"{path} is not a fastText model (.bin/.ftz)")
    return [lab[len(LABEL_PREFIX):] if lab.startswith(LABEL_PREFIX) else lab for lab in read_fasttext_labels(path)]


def transformers_labels(model_dir: str) -> list[str]:
    """The output labels a local transformers model directory declares (config.json's id2label,
    in id order); one label means a regression head (a single score)."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{model_dir} is not a transformers model directory (no config.json)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    id2label = cfg.get("id2label") or {}
    n = int(cfg.get("num_labels") or len(id2label) or 2)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


@dataclass(frozen=True)
class ModelSpec:
    """One classifier of the `classify` stage."""

    name: str  # the score is doc.scores["classify.<name>"]; drops are named classify_<name>_below
    model: str  # a .bin/.ftz file (fasttext) or a model directory (transformers); local path or fsspec URL
    kind: Literal["fasttext", "transformers"] = "fasttext"
    label: str | None = None  # whose probability is the score; null for a regression model (one output)
    min_score: float | None = None  # drop documents scoring below it; null: annotate only
    batch_size: int = 32  # transformers: documents per forward pass
    max_length: int = 512  # transformers: tokens per document (the rest is cut)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # transformers: auto = cuda when torch sees a GPU

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"name: {self.name!r} must be letters, digits and _ (it names a score and a reason)")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.max_length < 1:
            raise ValueError("max_length: must be at least 1")
        model = self.model if _is_url(self.model) else os.path.abspath(os.path.expanduser(self.model))
        object.__setattr__(self, "model", model)  # workers may run elsewhere than the driver's cwd
        if not _exists(model):
            raise ValueError(f"model: {model}: no such file or directory (nothing is downloaded: give a local path)")
        if _is_url(model):
            return  # its labels are checked when a worker loads it
        self._check_label(self.labels())

    def labels(self) -> list[str]:
        if self.kind == "fasttext":
            if os.path.isdir(self.model):
                raise ValueError(f"model: {self.model} is a directory; kind fasttext needs a .bin/.ftz file")
            try:
                return fasttext_labels(self.model)
            except ValueError as e:
                raise ValueError(f"model: {e}") from None
        if not os.path.isdir(self.model):
            raise ValueError(f"model: {self.model}: kind transformers needs a model directory (config.json, weights)")
        try:
            return transformers_labels(self.model)
        except ValueError as e:
            raise ValueError(f"model: {e}") from None

    def _check_label(self, labels: list[str]) -> None:
        if self.kind == "transformers" and len(labels) == 1:
            if self.label is not None and self.label != labels[0]:
                raise ValueError(f"label: {self.model} is a regression model (one output, {labels[0]!r}); "
                                 "leave label out: its output is the score")
            return
        if self.label is None:
            raise ValueError(f"label: say whose probability is the score, one of: {', '.join(labels)}")
        label = self.label.removeprefix(LABEL_PREFIX)
        if label not in labels:
            raise ValueError(f"label: {self.model} has no label {self.label!r}; its labels: {', '.join(labels)}")


def _local_copy(path: str) -> str:
    """A local file (or directory) for a model given as an fsspec URL: copied once per process."""
    if not _is_url(path):
        return path
    import fsspec

    fs, p = fsspec.core.url_to_fs(path)
    dest = os.path.join(tempfile.mkdtemp(prefix="tokenmill-model-"), os.path.basename(p.rstrip("/")))
    fs.get(p, dest, recursive=fs.isdir(p))
    log.info("copied %s to %s", path, dest)
    return dest


class FastTextClassifier:
    """A fastText model: the probability of one label. Loaded with fasttext-predict's `fasttext`."""

    def __init__(self, spec: ModelSpec):
        import fasttext

        self.spec = spec
        self._tmp = _local_copy(spec.model)
        labels = fasttext_labels(self._tmp)
        spec._check_label(labels)
        self.label = LABEL_PREFIX + spec.label.removeprefix(LABEL_PREFIX)
        self.model = fasttext.load_model(self._tmp)
        self.k = len(labels)  # every label's probability, so a missing one means ~0

    def score(self, texts: list[str]) -> list[float]:
        out = []
        for t in texts:
            labels, probs = self.model.predict(normalize_for_classifier(t), k=self.k)
            out.append(next((float(p) for lab, p in zip(labels, probs) if lab == self.label), 0.0))
        return out

    def close(self) -> None:
        if self._tmp != self.spec.model:
            shutil.rmtree(os.path.dirname(self._tmp), ignore_errors=True)


class TransformersClassifier:
    """A local sequence-classification (or regression) model directory, run in batches under
    torch.inference_mode. Needs the `classify` extra (transformers) and torch."""

    def __init__(self, spec: ModelSpec):
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as e:
            raise ImportError(f"classify model {spec.name!r} (kind transformers) needs torch and transformers: "
                              f"pip install 'tokenmill[classify]' ({e})") from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar per worker in a run's output
        self.spec = spec
        self.torch = torch
        self._tmp = _local_copy(spec.model)
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"classify model {spec.name!r}: device cuda, but torch sees no GPU on this worker")
        self.device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self._tmp, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(self._tmp, local_files_only=True)
        self.model.to(self.device).eval()
        labels = [str(self.model.config.id2label[i]) for i in range(self.model.config.num_labels)]
        spec._check_label(labels)
        self.index = None if len(labels) == 1 else labels.index(spec.label)
        # never past what the model can take: its tokenizer's limit (512 for RoBERTa's 514 positions) and its positions
        limits = [spec.max_length, getattr(self.model.config, "max_position_embeddings", None) or spec.max_length]
        if 0 < (self.tokenizer.model_max_length or 0) < 1_000_000:
            limits.append(self.tokenizer.model_max_length)
        self.max_length = min(limits)
        log.info("classify %s: %s on %s", spec.name, spec.model, self.device)

    def score(self, texts: list[str]) -> list[float]:
        torch = self.torch
        out: list[float] = []
        for i in range(0, len(texts), self.spec.batch_size):
            batch = texts[i:i + self.spec.batch_size]
            enc = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()  # (B, num_labels)
            if self.index is None:
                out.extend(logits[:, 0].tolist())
            else:
                out.extend(torch.softmax(logits, dim=-1)[:, self.index].tolist())
        return out

    def close(self) -> None:
        if self._tmp != self.spec.model:
            shutil.rmtree(os.path.dirname(self._tmp), ignore_errors=True)


def load_classifier(spec: ModelSpec):
    return FastTextClassifier(spec) if spec.kind == "fasttext" else TransformersClassifier(spec)
