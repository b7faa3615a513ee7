"""Bad config fails at start, naming the key and the file; exit status 2 from the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tokenmill import cli, stages
from tokenmill.config import ConfigError, from_dict, load


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n')
    return str(tmp_path / "*.jsonl")


def write(tmp_path, data) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("patch, key, words", [
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"input": {"paths": ["X"], "fromat": "warc"}}, "input.fromat", "unknown key"),
    ({"extract": {"timeout_s": "fast"}}, "extract.timeout_s", "expected a number"),
    ({"extract": {"timeout_s": -1}}, "extract.timeout_s", "must be positive"),
    ({"extract": {"include_tables": "yes"}}, "extract.include_tables", "expected true or false"),
    ({"input": {"paths": ["X"], "retries": -1}}, "input.retries", "must be 0 or more"),
    ({"input": {"paths": ["X"], "retries": "lots"}}, "input.retries", "expected a whole number"),
    ({"input": {"paths": ["X"], "retry_max_s": 0}}, "input.retry_max_s", "more than 0 seconds"),
    ({"language": {"languages": "en"}}, "language.languages", "expected a list of language codes (e.g. [en, de]), or all"),
    ({"executor": {"kind": "spark"}}, "executor.kind", "must be one of"),
    ({"executor": {"workers": 0}}, "executor.workers", "at least 1"),
    ({"stages": ["extract", "sharpen"]}, "stages", "no stage named 'sharpen'"),
    ({"stages": "extract"}, "stages", "must be a list"),
    ({"input": {"paths": ["nowhere/*.warc.gz"]}}, "input.paths[0]", "no file matches"),
    ({"output": 3}, "output", "must be a path"),
    ({"quality": {"gopher_repetition": {"dup_line_frac": 2}}}, "quality.gopher_repetition.dup_line_frac", "must be in"),
    ({"language": {"languages": ["xx-bogus"]}}, "language.languages", "does not know"),
    ({"dedup": {"bands": 0}}, "dedup.bands", "must be >= 1"),
    ({"tokenize": {"vocab_size": 10}}, "tokenize.vocab_size", "must be in"),
])
def test_bad_config_names_key_and_file(tmp_path, inputs, patch, key, words):
    data = {"input": {"paths": [inputs]}, "output": str(tmp_path / "run"), **patch}
    if isinstance(data["input"], dict) and data["input"].get("paths") == ["X"]:
        data["input"]["paths"] = [inputs]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}"), msg
    assert words in msg


def test_missing_sections(tmp_path, inputs):
    with pytest.raises(ConfigError, match="input: missing"):
        from_dict({"output": "x"}, "f.yaml")
    with pytest.raises(ConfigError, match="output: missing"):
        from_dict({"input": {"paths": [inputs]}}, "f.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(_bad_yaml(tmp_path)))
    with pytest.raises(ConfigError, match="config file not found"):
        load(str(tmp_path / "none.yaml"))


def _bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("input: [unclosed\n")
    return p


def test_defaults_and_order(tmp_path, inputs):
    avail = stages.available()
    cfg = from_dict({"input": inputs, "output": "runs/x"}, "f.yaml")
    assert list(cfg.stages) == avail, "no stages key: every available stage, in pipeline order"
    assert cfg.executor.kind == "ray" and cfg.input.paths == (inputs,)
    # a subset runs in pipeline order, whatever order it is written in
    cfg = from_dict({"input": inputs, "output": "x", "stages": list(reversed(avail))}, "f.yaml")
    assert list(cfg.stages) == avail
    # the resolved config has every default, and its hash follows any option
    a = from_dict({"input": inputs, "output": "x"}, "f.yaml")
    b = from_dict({"input": inputs, "output": "x", "extract": {"timeout_s": 3}}, "f.yaml")
    assert a.resolved()["extract"]["timeout_s"] == 10.0 and a.hash() != b.hash()


def test_cli_exits_2_on_bad_config(tmp_path, inputs, capsys):
    path = write(tmp_path, {"input": {"paths": [inputs]}, "output": str(tmp_path / "r"), "extract": {"bogus": 1}})
    assert cli.main(["run", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}: extract.bogus: unknown key" in err
    assert cli.main(["inspect", str(tmp_path / "no-run")]) == 2


PYTHON_TYPE_WORDS = re.compile(r"\b(Union|Optional|Literal|NoneType|tuple|str|int|float|bool|dict)\b|\[\.\.\.\]|typing")


@pytest.mark.parametrize("section, value", [
    ("language", {"languages": 3}), ("language", {"languages": [1, 2]}), ("language", {"min_score": "high"}),
    ("executor", {"workers": "many"}), ("executor", {"kind": 5}), ("input", {"paths": 7}),
    ("input", {"max_files": 1.5}), ("extract", ["timeout_s"]), ("quality", {"gopher_repetition": [1]}),
])
def test_messages_name_shapes_not_python_types(tmp_path, inputs, section, value):
    data = {"input": {"paths": [inputs]}, "output": str(tmp_path / "run")}
    data[section] = {**data.get(section, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, data))
    assert not PYTHON_TYPE_WORDS.search(str(e.value).split(": ", 1)[1]), str(e.value)


def test_yaml_booleans_where_words_are_meant(tmp_path, inputs):
    """Issue 18: `languages: [en, no]` (no: Norwegian) failed with "expected Union, got ['en', False]"."""
    path = tmp_path / "p.yaml"
    path.write_text(f"input: {inputs}\noutput: {tmp_path / 'run'}\nlanguage: {{languages: [en, no]}}\n")
    with pytest.raises(ConfigError) as e:
        load(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: language.languages[1]: expected a string, got false")
    assert 'unquoted no, off or false' in msg and 'put it in quotes: "no"' in msg and "Union" not in msg
    path.write_text(f"input: {inputs}\noutput: {tmp_path / 'run'}\nlanguage: {{languages: [en, 'no']}}\n")
    assert load(str(path)).options("language").languages == ("en", "no")
    path.write_text(f"input: {inputs}\noutput: {tmp_path / 'run'}\nexecutor: {{kind: on}}\n")
    with pytest.raises(ConfigError, match=r'executor.kind: expected one of: ray, local, got true: .*quotes: "yes"'):
        load(str(path))


def test_cli_names_the_yaml_boolean_and_exits_2(tmp_path, inputs):
    path = tmp_path / "p.yaml"
    path.write_text(f"input: {inputs}\noutput: {tmp_path / 'run'}\nlanguage: {{languages: [en, no]}}\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "tokenmill"), "run", str(path), "--executor", "local",
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert 'language.languages[1]: expected a string, got false' in proc.stderr and "Traceback" not in proc.stderr


def test_classify_may_be_written_as_a_list_of_models(tmp_path):
    """`classify: [{...}]` is `classify: {models: [{...}]}`: the issue's form of the section."""
    from tokenmill.config import ConfigError, from_dict

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    data = {"input": str(tmp_path / "a.jsonl"), "output": str(tmp_path / "o"),
            "classify": [{"name": "q", "kind": "fasttext", "model": str(tmp_path / "missing.bin"), "label": "positive"}]}
    with pytest.raises(ConfigError, match=r"classify\.models\[0\]\.model"):
        from_dict(data, "t.yaml")
    cfg = from_dict({**data, "classify": []}, "t.yaml")
    assert cfg.options("classify").models == ()
