"""classify and `tokenmill classifier train`, through the CLI as users run them.

Training on a labelled set built here prints a held-out accuracy well above chance; a run with a
fastText model keeps and drops by the threshold and records every model's score on every
document; a tiny transformers model made here from a config (nothing downloaded) scores on CPU;
bad model paths and labels fail at start naming the key (exit 2).
"""

from __future__ import annotations

import json
import random
import re

import pyarrow.parquet as pq
import pytest
import yaml

from helpers import make_jsonl, run_cli
from tokenmill import storage
from tokenmill.classifier_train import TrainSettings, train
from tokenmill.config import ConfigError, load
from tokenmill.doc import Doc
from tokenmill.manifests.inspect import stage_table
from tokenmill.stages.classify import ClassifyConfig, ClassifyStage
from tokenmill.stats import StageContext

TOPICS = ["river", "glacier", "protein", "galaxy", "volcano", "enzyme", "forest", "neutron", "delta", "coral"]
VERBS = ["measured", "described", "compared", "explained", "modelled", "observed", "estimated", "tested"]
CHROME = ["click here", "subscribe to our newsletter", "share on facebook", "accept all cookies", "log in",
          "privacy policy", "terms of use", "read more", "follow us on twitter", "sign up now", "contact us",
          "all rights reserved", "next article", "advertisement", "skip to content", "back to top"]


def prose(rng: random.Random) -> str:
    """Main text: sentences of a study, in many combinations."""
    return " ".join(f"The researchers {rng.choice(VERBS)} how the {rng.choice(TOPICS)} changed over the years, "
                    f"and the {rng.choice(TOPICS)} data show why it {rng.choice(VERBS)} the result."
                    for _ in range(rng.randint(1, 3)))


def chrome(rng: random.Random) -> str:
    """Page chrome: menu, footer and widget phrases."""
    return " | ".join(rng.choice(CHROME) for _ in range(rng.randint(3, 8)))


def labelled(tmp_path, n=200, seed=0):
    rng = random.Random(seed)
    pos, neg = tmp_path / "pos.jsonl", tmp_path / "neg.jsonl"
    make_jsonl(pos, [{"text": prose(rng)} for _ in range(n)])
    make_jsonl(neg, [{"text": chrome(rng)} for _ in range(n)])
    return pos, neg


SMALL = ["--dim", "16", "--bucket", "10000", "--threads", "1"]


def test_train_prints_held_out_accuracy_well_above_chance(tmp_path):
    pos, neg = labelled(tmp_path)
    # the negatives as a run directory: its docs/ Parquet parts
    run = tmp_path / "negrun"
    rows = [json.loads(line)["text"] for line in neg.read_text().splitlines()]
    storage.write_docs(str(run / "docs" / "part-00000.parquet"), [Doc(id=str(i), text=t) for i, t in enumerate(rows)])
    out = tmp_path / "m.bin"
    proc = run_cli("classifier", "train", "--positive", pos, "--negative", run, "--out", out, "--max-examples", 150,
                   *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "examples: 150 positive, 150 negative; trained on 270, held out 30" in proc.stdout
    acc = float(re.search(r"held-out accuracy: ([0-9.]+)", proc.stdout).group(1))
    # 30 held-out examples: chance is 0.5 with a standard deviation of 0.091; 0.9 is 4.4 of them
    # above chance. The two classes share no word, so a working classifier gets ~1.0.
    assert acc >= 0.9, proc.stdout
    import fasttext

    labels, _ = fasttext.load_model(str(out)).predict("the researchers measured how the river changed", k=1)
    assert labels[0] == "__label__positive"


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "none.jsonl", "no such file or directory"),
    (lambda d: (d / "empty.jsonl").write_text("\n") and d / "empty.jsonl", "no non-empty `text`"),
    (lambda d: (d / "notext.jsonl").write_text('{"body": "x"}\n') and d / "notext.jsonl", "line 1: an object with a `text`"),
    (lambda d: (d / "bad.parquet").write_text("not parquet") and d / "bad.parquet", "not a readable Parquet file"),
    (lambda d: (d / "emptydir").mkdir() or d / "emptydir", "no docs/*.parquet"),
    (lambda d: (d / "few.jsonl").write_text('{"text": "a b"}\n' * 3) and d / "few.jsonl", "3 examples; at least 10"),
])
def test_train_on_a_bad_input_exits_2(tmp_path, make, words):
    pos, _ = labelled(tmp_path, n=20)
    bad = make(tmp_path)
    proc = run_cli("classifier", "train", "--positive", pos, "--negative", bad, "--out", tmp_path / "m.bin", *SMALL)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.bin").exists()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    pos, neg = labelled(d)
    out = d / "quality.bin"
    report = train(str(pos), str(neg), str(out), TrainSettings(dim=16, bucket=10_000, threads=1))
    assert report.accuracy >= 0.9
    return out


def _config(tmp_path, inputs, section, stages=("classify",)) -> str:
    cfg = {"input": {"paths": [str(inputs)]}, "output": str(tmp_path / "run"), "stages": list(stages),
           "classify": section}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_run_keeps_and_drops_by_threshold_and_records_scores(tmp_path, model):
    rng = random.Random(7)
    docs = [{"id": f"good-{i}", "text": prose(rng)} for i in range(6)]
    docs += [{"id": f"chrome-{i}", "text": chrome(rng)} for i in range(5)]
    make_jsonl(tmp_path / "docs.jsonl", docs)
    section = {"models": [
        {"name": "q", "kind": "fasttext", "model": str(model), "label": "positive", "min_score": 0.5},
        {"name": "chrome", "kind": "fasttext", "model": str(model), "label": "negative", "min_score": None},
    ]}
    proc = run_cli("run", _config(tmp_path, tmp_path / "docs.jsonl", section), "--executor", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    kept = pq.read_table(run / "docs").to_pylist()
    removed = pq.read_table(run / "removed" / "classify").to_pylist()
    assert {r["id"] for r in kept} == {f"good-{i}" for i in range(6)}
    assert {r["id"]: r["reason"] for r in removed} == {f"chrome-{i}": "classify_q_below" for i in range(5)}
    for r in kept + removed:  # every model's score on every document that has text, dropped ones too
        scores = {s["name"]: s["value"] for s in r["scores"]}
        assert set(scores) == {"classify.q", "classify.chrome"}
        assert abs(scores["classify.q"] + scores["classify.chrome"] - 1) < 1e-3  # two labels: p + (1 - p)
        assert (scores["classify.q"] >= 0.5) == r["id"].startswith("good")
    _, table = stage_table(str(run))
    row = next(t for t in table if t["stage"] == "classify")
    assert row["drops"] == {"classify_q_below": 5}
    assert (row["docs_in"], row["docs_out"]) == (11, 6)


def test_a_document_without_text_is_kept_and_counted(model):
    from tokenmill.filters.classifiers import ModelSpec

    stage = ClassifyStage(ClassifyConfig(models=(ModelSpec(name="q", model=str(model), label="positive", min_score=0.5),)))
    stage.setup()
    ctx = StageContext("classify")
    docs = [Doc(id="none", text=None), Doc(id="blank", text="  \n"), Doc(id="menu", text="click here | log in")]
    assert [d.id for d in stage.run(iter(docs), ctx)] == ["none", "blank"]
    assert ctx.stats.counters == {"no_text": 2} and ctx.stats.drops == {"classify_q_below": 1}
    assert docs[2].scores["classify.q"] < 0.5 and not docs[0].scores


def _need_installed(*modules: str) -> None:
    """Optional dependencies, found without importing them (torch + transformers take ~8 s to
    import): missing outside CI skips, under CI=true fails."""
    import importlib.util
    import os

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        msg = f"needs {', '.join(missing)}: pip install -e '.[classify,train]'"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


def make_tiny_model(path, texts, num_labels=1, seed=0):
    """A tiny BERT sequence-classification model directory made from a config: config.json, random
    weights (numpy, safetensors) for every parameter, and a word-level tokenizer over `texts`.
    Nothing is downloaded, and this process never imports torch."""
    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    path.mkdir()
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for t in texts:
        for w in re.findall(r"\w+|[^\w\s]", t.lower()):
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64,
        "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}))
    labels = ["LABEL_0"] if num_labels == 1 else ["low", "high"]
    h, ff, positions = 16, 32, 64
    (path / "config.json").write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertForSequenceClassification"], "vocab_size": len(vocab),
        "hidden_size": h, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": ff,
        "max_position_embeddings": positions, "type_vocab_size": 2, "pad_token_id": 0,
        "id2label": dict(enumerate(labels)), "label2id": {lab: i for i, lab in enumerate(labels)}}))
    rng = np.random.default_rng(seed)
    shapes = {"bert.embeddings.word_embeddings.weight": (len(vocab), h),
              "bert.embeddings.position_embeddings.weight": (positions, h),
              "bert.embeddings.token_type_embeddings.weight": (2, h),
              "bert.pooler.dense.weight": (h, h), "bert.pooler.dense.bias": (h,),
              "classifier.weight": (num_labels, h), "classifier.bias": (num_labels,)}
    layer = "bert.encoder.layer.0."
    for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
        shapes[layer + name + ".weight"], shapes[layer + name + ".bias"] = (h, h), (h,)
    shapes.update({layer + "intermediate.dense.weight": (ff, h), layer + "intermediate.dense.bias": (ff,),
                   layer + "output.dense.weight": (h, ff), layer + "output.dense.bias": (h,)})
    weights = {k: (rng.standard_normal(v) * 0.5).astype(np.float32) for k, v in shapes.items()}
    for norm in ("bert.embeddings.LayerNorm", layer + "attention.output.LayerNorm", layer + "output.LayerNorm"):
        weights[norm + ".weight"], weights[norm + ".bias"] = np.ones(h, np.float32), np.zeros(h, np.float32)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_transformers_model_on_cpu(tmp_path):
    _need_installed("torch", "transformers")
    rng = random.Random(3)
    texts = [prose(rng) for _ in range(6)] + [chrome(rng) for _ in range(6)]
    reg, cls = tmp_path / "edu", tmp_path / "cls"
    make_tiny_model(reg, texts, num_labels=1)
    make_tiny_model(cls, texts, num_labels=2)
    make_jsonl(tmp_path / "docs.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    section = {"models": [
        # a regression model (one output, the score itself), 4 documents a batch (padded), threshold 0
        {"name": "edu", "kind": "transformers", "model": str(reg), "min_score": 0.0, "batch_size": 4, "device": "cpu"},
        # the same model one document at a time (no padding), annotate only
        {"name": "edu1", "kind": "transformers", "model": str(reg), "batch_size": 1, "device": "cpu"},
        # a two-label classification model: the probability of `high`
        {"name": "cls", "kind": "transformers", "model": str(cls), "label": "high"},
    ]}
    proc = run_cli("run", _config(tmp_path, tmp_path / "docs.jsonl", section), "--executor", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    kept = pq.read_table(run / "docs").to_pylist()
    removed = pq.read_table(run / "removed" / "classify").to_pylist()
    scores = {r["id"]: {s["name"]: s["value"] for s in r["scores"]} for r in kept + removed}
    assert len(scores) == 12
    for s in scores.values():
        assert s["classify.edu"] == pytest.approx(s["classify.edu1"], abs=1e-4)  # padding changes nothing
        assert 0 < s["classify.cls"] < 1
    below = {i for i, s in scores.items() if s["classify.edu"] < 0}
    assert 0 < len(below) < 12, scores  # this seed puts documents on both sides of the threshold
    assert {r["id"] for r in kept} == set(scores) - below
    assert {r["id"]: r["reason"] for r in removed} == {i: "classify_edu_below" for i in below}


@pytest.mark.parametrize("spec, key, words", [
    ({"name": "q", "model": "models/none.bin", "label": "positive"}, "classify.models[0].model", "no such file"),
    ({"name": "q", "model": "MODEL", "label": "good"}, "classify.models[0].label", "has no label 'good'"),
    ({"name": "q", "model": "MODEL"}, "classify.models[0].label", "say whose probability is the score, one of"),
    ({"name": "q", "model": "NOTFT", "label": "positive"}, "classify.models[0].model", "not a fastText model"),
    ({"name": "q", "kind": "transformers", "model": "DIR"}, "classify.models[0].model", "no config.json"),
    ({"name": "q", "kind": "onnx", "model": "MODEL"}, "classify.models[0].kind", "must be one of"),
    ({"name": "q-1", "model": "MODEL", "label": "positive"}, "classify.models[0].name", "letters, digits and _"),
])
def test_bad_model_fails_at_start_naming_the_key(tmp_path, model, spec, key, words):
    (tmp_path / "notft.bin").write_bytes(b"\0" * 64)
    (tmp_path / "dir").mkdir()
    spec = {k: {"MODEL": str(model), "NOTFT": str(tmp_path / "notft.bin"), "DIR": str(tmp_path / "dir")}.get(v, v)
            for k, v in spec.items()}
    make_jsonl(tmp_path / "docs.jsonl", [{"id": "1", "text": "hello"}])
    path = _config(tmp_path, tmp_path / "docs.jsonl", {"models": [spec]})
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: {key}"), str(e.value)
    assert words in str(e.value)


def test_cli_exits_2_on_a_missing_model(tmp_path):
    make_jsonl(tmp_path / "docs.jsonl", [{"id": "1", "text": "hello"}])
    path = _config(tmp_path, tmp_path / "docs.jsonl", {"models": [{"name": "dclm", "model": "models/dclm.bin",
                                                                   "label": "positive", "min_score": 0.5}]})
    proc = run_cli("run", path, "--executor", "local", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"classify.models[0].model: {tmp_path}/models/dclm.bin: no such file" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_no_models_keeps_everything_and_adds_nothing():
    """The default recipe runs classify without models: a pass-through."""
    stage = ClassifyStage(ClassifyConfig())
    stage.setup()
    ctx = StageContext("classify")
    docs = [Doc(id=str(i), text="some text") for i in range(3)]
    assert list(stage.run(iter(docs), ctx)) == docs and all(not d.scores for d in docs)
    assert (ctx.stats.docs_in, ctx.stats.docs_out, dict(ctx.stats.drops)) == (3, 3, {})


def test_a_name_used_twice_is_refused(tmp_path, model):
    make_jsonl(tmp_path / "docs.jsonl", [{"id": "1", "text": "hello"}])
    m = {"name": "q", "model": str(model), "label": "positive"}
    with pytest.raises(ConfigError, match=r"classify\.models\[1\]\.name: 'q' is used twice"):
        load(_config(tmp_path, tmp_path / "docs.jsonl", {"models": [m, m]}))


def test_a_model_given_as_a_url_is_copied_to_the_worker(model):
    """fsspec URLs (s3://, gs://, file://...): copied to a local temporary file once per worker."""
    from tokenmill.filters.classifiers import ModelSpec, load_classifier

    spec = ModelSpec(name="q", model=f"file://{model}", label="positive")
    clf = load_classifier(spec)
    try:
        assert clf._tmp != str(model) and clf.score(["click here | log in | privacy policy"])[0] < 0.5
    finally:
        clf.close()
    import os

    assert not os.path.exists(clf._tmp)
    assert ClassifyStage(ClassifyConfig(models=(spec,))).fingerprint()["model_files"]["q"][0].startswith(f"file://{model}:")


def test_num_gpus_reaches_each_task_of_the_step(tmp_path, model):
    """classify.num_gpus: every task of the fused step asks the executor for that many GPUs."""
    from tokenmill.config import from_dict
    from tokenmill.pipeline import run_pipeline
    from tokenmill.pipeline.executors import LocalExecutor

    class Recording(LocalExecutor):
        seen: list = []

        def run(self, tasks, on_attempt):
            self.seen.extend(t.gpus for t in tasks)
            super().run(tasks, on_attempt)

    make_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": prose(random.Random(1))}])
    cfg = from_dict({"input": str(tmp_path / "docs.jsonl"), "output": str(tmp_path / "run"), "stages": ["pii", "classify"],
                     "classify": {"num_gpus": 0.5, "models": [{"name": "q", "model": str(model), "label": "positive"}]}},
                    "t.yaml")
    ex = Recording()
    assert run_pipeline(cfg, progress=False, executor=ex).ok
    assert ex.seen == [0.5]
