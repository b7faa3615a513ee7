"""The pipeline config: YAML in, validated frozen objects out, errors that name the key and file.

    input:  {paths: ["crawl/*.warc.gz"], format: auto}
    output: runs/demo
    executor: {kind: ray, address: null, workers: null}
    stages: [url_filter, extract, language, quality]   # any subset; run in pipeline order
    extract: {timeout_s: 10}                           # one optional section per stage

Each stage declares its options as a frozen dataclass (`Stage.Config`); this module checks
the YAML against those dataclasses: an unknown key, a wrong type, a bad value or a missing
input fails at start with `ConfigError("FILE: key.path: what is wrong")`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from tokenmill import stages as stage_registry
from tokenmill.readers import InputConfig, InputUnavailable, expand_paths


class ConfigError(ValueError):
    """A config problem the user must fix; the CLI prints it and exits with status 2."""


@dataclass(frozen=True)
class ExecutorConfig:
    kind: Literal["ray", "local"] = "ray"
    address: str | None = None  # Ray cluster address; None: $RAY_ADDRESS, else a local Ray
    workers: int | None = None  # parallel tasks at most; None: the cluster's CPUs
    max_attempts: int = 3  # a task that fails this many times fails for good
    keep_removed: bool = True  # write dropped documents to removed/<stage>/
    report: bool = True  # write RUN/report.html (the run in charts) at the end of `tokenmill run`
    # Map tasks that may fail for good before the run fails: a count (0: none), or a fraction of a
    # step's tasks (0.01: 1%). Their shards are left out of the rest of the run, and said so.
    max_failed_tasks: int | float = 0

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers: must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        limit = self.max_failed_tasks
        if limit < 0 or (isinstance(limit, float) and limit >= 1):
            raise ValueError(f"max_failed_tasks: a count of tasks (0, 1, 2 ...) or a fraction of a step's tasks "
                             f"below 1 (0.01 for 1%), got {limit}")


@dataclass(frozen=True)
class PipelineConfig:
    input: InputConfig
    output: str
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    stages: tuple[str, ...] = ()  # in pipeline order
    stage_options: dict = field(default_factory=dict)  # stage name -> its Config object
    source: str = "<dict>"  # the file this came from

    def options(self, stage: str):
        return self.stage_options[stage]

    def resolved(self) -> dict:
        """The config with every default filled in: what the run record stores and hashes."""
        return {
            "input": dataclasses.asdict(self.input),
            "output": self.output,
            "executor": dataclasses.asdict(self.executor),
            "stages": list(self.stages),
            **{name: dataclasses.asdict(opts) for name, opts in self.stage_options.items() if name in self.stages},
        }

    def hash(self) -> str:
        return config_hash(self.resolved())


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


TOP_KEYS = ("input", "output", "executor", "stages")


def load(path: str, overrides: dict | None = None) -> PipelineConfig:
    """Read and validate a YAML config file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return from_dict(data if data is not None else {}, source=path, overrides=overrides)


def from_dict(data: Any, source: str = "<dict>", overrides: dict | None = None, check_inputs: bool = True) -> PipelineConfig:
    """Validate a config mapping; `overrides` are executor settings from the command line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): must be a mapping of keys to values")
    _check_top_keys(data, source)
    input_cfg = _input_config(data["input"], source)
    executor = _executor_config(data.get("executor") or {}, overrides, source)
    names = _stage_names(data.get("stages"), source)
    stage_options = {name: build(stage_registry.stage_class(name).Config, _section(name, data.get(name)), name, source)
                     for name in stage_registry.available()}
    stage_options = _resolve_prefilter(stage_options, names)
    cfg = PipelineConfig(input_cfg, _absolute(data["output"]), executor, names, stage_options, source)
    if check_inputs:
        try:
            expand_paths(input_cfg)
        except InputUnavailable:
            raise  # the server is there but did not answer in time: not the config's fault (exit 1)
        except (FileNotFoundError, OSError) as e:
            raise ConfigError(f"{source}: {e}") from None
    return cfg


def _resolve_prefilter(stage_options: dict, names: tuple[str, ...]) -> dict:
    """`extract.language_prefilter: auto` becomes the language stage's `languages` when that stage
    runs and keeps a list, and off (null) otherwise, so the resolved config (and its hash) names
    the codes the pre-pass really uses."""
    extract = stage_options.get("extract")
    if extract is None or extract.language_prefilter != "auto":
        return stage_options
    language = stage_options.get("language")
    codes = None
    if "language" in names and language is not None and language.languages != "all":
        codes = tuple(language.languages)
    return {**stage_options, "extract": dataclasses.replace(extract, language_prefilter=codes)}


# A stage whose options are mostly one list may be written as that list: `classify: [{name: ...}]`
# means `classify: {models: [{name: ...}]}`.
LIST_SECTIONS = {"classify": "models"}


def _section(name: str, value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, list) and name in LIST_SECTIONS:
        return {LIST_SECTIONS[name]: value}
    return value


def _check_top_keys(data: dict, source: str) -> None:
    known = {*TOP_KEYS, *stage_registry.PIPELINE_ORDER}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: {key}: unknown key (known: {', '.join(sorted(known))})")
    if "input" not in data:
        raise ConfigError(f"{source}: input: missing: say which files to read, e.g. input: {{paths: [crawl/*.warc.gz]}}")
    if "output" not in data:
        raise ConfigError(f"{source}: output: missing: the run directory to write, e.g. output: runs/demo")
    if not isinstance(data["output"], str) or not data["output"]:
        raise ConfigError(f"{source}: output: must be a path or URL string")


def _input_config(inp: Any, source: str) -> InputConfig:
    if isinstance(inp, (str, list)):  # shorthand: input: crawl/*.warc.gz
        inp = {"paths": inp}
    if isinstance(inp, dict) and isinstance(inp.get("paths"), str):
        inp = {**inp, "paths": [inp["paths"]]}
    input_cfg = build(InputConfig, inp, "input", source)
    if not input_cfg.paths:
        raise ConfigError(f"{source}: input.paths: must list at least one path, glob, URL or warc.paths listing")
    # Local paths are made absolute here, on the driver: workers on other nodes have other cwds.
    return dataclasses.replace(input_cfg, paths=tuple(_absolute(p) for p in input_cfg.paths))


def _executor_config(section: Any, overrides: dict | None, source: str) -> ExecutorConfig:
    """The executor section, then the command line's overrides, validated as one (so a bad
    `--workers 0` is a config error naming the option, like a bad `executor.workers`)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: executor: must be a mapping (got {type(section).__name__})")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = {**section, **given}
    flags = {"kind": "--executor", "address": "--ray-address"}
    where = {k: f"{flags.get(k, '--' + k.replace('_', '-'))} (executor.{k})" for k in given}
    try:
        return build(ExecutorConfig, merged, "executor", source)
    except ConfigError as e:
        msg = str(e)
        for k, label in where.items():
            msg = msg.replace(f"executor.{k}", label)
        raise ConfigError(msg) from None


def _stage_names(names: Any, source: str) -> tuple[str, ...]:
    """The configured stages, in pipeline order (the default: every available stage)."""
    if names is None:
        names = stage_registry.available()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{source}: stages: must be a list of stage names")
    for n in names:
        if n not in stage_registry.PIPELINE_ORDER:
            raise ConfigError(f"{source}: stages: no stage named {n!r} (stages: {', '.join(stage_registry.PIPELINE_ORDER)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: stages: a stage is listed twice")
    return tuple(s for s in stage_registry.PIPELINE_ORDER if s in names)


def _absolute(path: str) -> str:
    """Relative local paths are relative to the working directory of `tokenmill run`."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def build(cls, data: Any, where: str, source: str):
    """Build frozen dataclass `cls` from a YAML mapping, checking keys, types and values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping of options (key: value), got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{source}: {where}.{key}: unknown key (known: {', '.join(fields)})")
        # A field may name its shape in the user's words: field(metadata={"shape": "a list of language codes, or all"})
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}", source, fields[key].metadata.get("shape"))
    try:
        return cls(**kwargs)
    except ValueError as e:
        msg = str(e)
        # Options say "field: problem"; some name their full path ("quality.c4.x ..."): keep that one.
        if not msg.startswith(where.split(".")[0] + "."):
            msg = f"{where}.{msg}"
        raise ConfigError(f"{source}: {msg}") from None
    except TypeError as e:
        raise ConfigError(f"{source}: {where}: {e}") from None


_NONE = type(None)
_WORDS = {str: ("a string", "strings"), int: ("a whole number", "whole numbers"), float: ("a number", "numbers"),
          bool: ("true or false", "true/false values"), Any: ("any value", "values")}


def _shape(tp, plural: bool = False) -> str:
    """What a value of Python type `tp` looks like in YAML, in the user's words (never a type name):
    `tuple[str, ...] | Literal["all"]` -> 'a list of strings, or all'."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_shape(a, plural) for a in typing.get_args(tp) if a is not _NONE]
        if _NONE in typing.get_args(tp):
            options.append("null" if not plural else "nulls")
        return ", or ".join(options)
    if origin is Literal:
        words = [str(v).lower() if isinstance(v, bool) else str(v) for v in typing.get_args(tp)]
        return words[0] if len(words) == 1 else "one of: " + ", ".join(words)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return ("lists" if plural else "a list") + (f" of {_shape(args[0], plural=True)}" if args else "")
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return ("mappings" if plural else "a mapping") + (f" of names to {_shape(args[1], plural=True)}" if args else "")
    if dataclasses.is_dataclass(tp):
        return "mappings of options" if plural else "a mapping of options (key: value)"
    if tp in _WORDS:
        return _WORDS[tp][1 if plural else 0]
    return "values" if plural else "a value"


def _show(value: Any) -> str:
    """A value as the user would write it in YAML (false, not False; [a, b], not ['a', 'b'])."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _yaml_bool(value: bool, where: str, source: str, shape: str) -> ConfigError:
    """YAML 1.1 (PyYAML) reads unquoted yes/no/on/off/true/false as booleans: `[en, no]` is
    ['en', False]. We cannot know which word was written, so say which ones and how to quote."""
    words = "yes, on or true" if value else "no, off or false"
    example = "yes" if value else "no"
    return ConfigError(f"{source}: {where}: expected {shape}, got {_show(value)}: YAML reads an unquoted {words} "
                       f"as {_show(value)}; if you meant the word, put it in quotes: \"{example}\"")


def _matches(tp, value: Any) -> bool:
    """Whether `value` has the outer form of `tp` (a list for a list type, a mapping for a mapping)."""
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return False


def _coerce(tp, value: Any, where: str, source: str, shape: str | None = None):
    def bad():
        if isinstance(value, bool) and _takes_text(tp):
            raise _yaml_bool(value, where, source, shape or _shape(tp))
        raise ConfigError(f"{source}: {where}: expected {shape or _shape(tp)}, got {_show(value)}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if _NONE in options:
                return None
            bad()
        errors = {}
        for opt in options:
            if opt is _NONE:
                continue
            try:
                return _coerce(opt, value, where, source)
            except ConfigError as e:
                errors[opt] = e
        # A list given for "a list, or all" failed inside the list: that error says where and why.
        inner = [e for opt, e in errors.items() if _matches(opt, value)]
        if len(inner) == 1:
            raise inner[0]
        bad()
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):  # True is not 1 here
            return value
        if isinstance(value, bool) and _takes_text(tp):
            raise _yaml_bool(value, where, source, shape or _shape(tp))
        raise ConfigError(f"{source}: {where}: must be {shape or _shape(tp)}; got {_show(value)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            bad()
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            bad()
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _coerce(vt, v, f"{where}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, source)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        bad()
    if tp is str:
        if isinstance(value, str):
            return value
        bad()
    if value is None:
        bad()
    return value


def _takes_text(tp) -> bool:
    """Text, a Literal of words (e.g. "all"), or a union with one: a YAML boolean there was
    probably a word too."""
    if tp is str:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_takes_text(a) for a in typing.get_args(tp))
    return origin is Literal and any(isinstance(v, str) for v in typing.get_args(tp))
