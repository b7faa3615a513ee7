"""Bad config fails at start, naming the key and the file; exit status 2 from the CLI."""

from __future__ import annotations

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
    ({"extract": {"timeout_s": "fast"}}, "extract.timeout_s", "expected float"),
    ({"extract": {"timeout_s": -1}}, "extract.timeout_s", "must be positive"),
    ({"extract": {"include_tables": "yes"}}, "extract.include_tables", "expected bool"),
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
    if data["input"].get("paths") == ["X"]:
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
