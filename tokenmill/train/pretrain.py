"""Pretrain the compact GPT on token shards: reads top to bottom like nanoGPT's train.py.

    train("runs/demo/tokens")  # → runs/demo/ckpt/{ckpt.pt, metrics.jsonl, tokenizer.json}

In: a tokens directory written by the tokenize stage. Out: a checkpoint (model config, weights,
step, optimizer state, the token manifest's sha256) and one metrics line per log step
(step, train loss, val loss, val bits per byte, tokens/s), also appended to metrics.jsonl.
AdamW, linear warmup then cosine decay, gradient clipping and accumulation; on CUDA bf16
autocast and, with `compile=True`, torch.compile. Measured: the `tiny` preset (vocab 342, the
test's toy language) does 60 steps in ~4 s on this machine's 2 shared CPU cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tokenmill.tokenize import TOKENIZER
from tokenmill.train.data import Blend, TrainBatches, val_batches
from tokenmill.train.model import GPT, GPTConfig

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 150
    batch_size: int = 16  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine ends at lr * this
    warmup_steps: int = 15
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50  # and always at the first and the last step
    eval_batches: int = 4
    log_every: int = 10
    seed: int = 1337
    compile: bool = False  # torch.compile (CUDA; on CPU it needs a C++ compiler)
    max_seconds: float | None = None  # stop early (validate, save) once training has run this long
    precision: str = "auto"  # auto (bf16 on a bf16 GPU, else fp32), bf16 (autocast, CPU too) or fp32


# name -> (model shape, training defaults). tiny (CPU default): 8x128 tokens/step; 150 steps with
# their evals took 18 s at vocab 4096 on this machine's 2 shared cores; ~0.3 s/step at vocab 32768
# (the tied head dominates).
PRESETS: dict[str, tuple[dict, dict]] = {
    "tiny": (dict(block_size=128, n_layer=2, n_head=4, n_embd=128), dict(batch_size=8, lr=3e-3)),
    # the demo: tiny, for about a minute whatever the machine
    "demo": (dict(block_size=128, n_layer=2, n_head=4, n_embd=128), dict(batch_size=16, lr=3e-3, steps=600,
                                                                       eval_every=100, max_seconds=60.0)),
    "small": (dict(block_size=256, n_layer=6, n_head=6, n_embd=384), dict(batch_size=32, lr=1e-3, steps=2000,
                                                                        eval_every=200)),
    "gpt2": (dict(block_size=1024, n_layer=12, n_head=12, n_embd=768), dict(batch_size=16, grad_accum=8, lr=6e-4,
                                                                           steps=20000, warmup_steps=700,
                                                                           eval_every=500, log_every=20)),
}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no GPU; use --device cpu")
    return device


def default_out(tokens_dir: str) -> str:
    """RUN/tokens → RUN/ckpt."""
    return os.path.join(os.path.dirname(os.path.abspath(tokens_dir.rstrip("/"))), "ckpt")


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))  # 1 → 0
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * coeff)


@torch.no_grad()
def evaluate(model: GPT, batches: list, autocast) -> float:
    model.eval()
    total = n = 0
    for x, y in batches:
        with autocast:
            _, loss = model(x, y)
        total += loss.item() * y.numel()
        n += y.numel()
    model.train()
    return total / n


@dataclass
class Setup:
    """What the loop needs, built once by `setup`: model, optimizer, data, and where to write."""
    model: GPT
    step_model: torch.nn.Module  # the model, or its torch.compile wrapper
    optimizer: torch.optim.Optimizer
    mcfg: GPTConfig
    tc: TrainConfig
    preset: str
    start: int  # the first step (0, or the checkpoint's step on --resume)
    device: str
    autocast: contextlib.AbstractContextManager
    train_data: TrainBatches
    val_data: dict  # folder name -> fixed val batches
    bytes_per_token: float
    ds: Blend  # the token folders (one, or a blend)
    ckpt_path: str
    metrics_path: str


PRECISIONS = ("auto", "bf16", "fp32")


def autocast_for(device: str, precision: str = "auto") -> tuple[contextlib.AbstractContextManager, bool]:
    """The autocast context for `precision` and whether it is bf16. auto: bf16 where the GPU has it
    (Ampere and newer), fp32 elsewhere; bf16: autocast to bf16 on any device (the CPU too: how the
    GPU's path is tested here); fp32: none. bf16 needs no loss scaling."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if precision == "auto":
        precision = "bf16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), False
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16, but this GPU has no bf16; use precision fp32 or auto")
    return torch.autocast(device_type, dtype=torch.bfloat16), True


def stage_start(config_cls, overrides: dict, device: str):
    """What sft, rm and rl begin with: their config from the given overrides (None: the default),
    checked, and where they run. Seeds torch. Returns (cfg, device, device_type, autocast)."""
    from tokenmill.train.chat import DataError

    cfg = config_cls(**{k: v for k, v in overrides.items() if v is not None})
    if cfg.steps <= 0 or cfg.eval_every <= 0 or cfg.log_every <= 0:
        raise DataError("steps, eval_every and log_every must be positive")
    device = resolve_device(device)
    torch.manual_seed(cfg.seed)
    autocast, _ = autocast_for(device, cfg.precision)
    return cfg, device, "cuda" if device.startswith("cuda") else "cpu", autocast


def setup(tokens_dir: str | list[str], out_dir: str | None = None, preset: str | None = None, device: str = "auto",
          resume: bool = False, log_fn: Callable[[str], None] | None = None, weights: list[float] | None = None,
          **overrides) -> Setup:
    """Build the model, optimizer and batches; on `resume`, from OUT/ckpt.pt (its preset and model
    config win over `preset`: a checkpoint's weights only fit the shape they were trained with).
    Several token folders (a list) are a blend: batches drawn by `weights` (see data.Blend)."""
    log_fn = log_fn or log.info
    device = resolve_device(device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if not (preset is None or preset in PRESETS):
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    dirs = [tokens_dir] if isinstance(tokens_dir, str) else list(tokens_dir)
    ds = Blend(dirs, weights)  # refuses empty folders and mixed tokenizers before anything is written
    out_dir = out_dir or default_out(dirs[0])
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    overrides = {k: v for k, v in overrides.items() if v is not None}

    start, ckpt = 0, None
    if resume:
        if not os.path.exists(ckpt_path):
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["tokens_manifest_sha256"] != ds.manifest_sha256:
            raise ValueError(f"{ckpt_path} was trained on other tokens than {tokens_dir}; use a new --out to start over")
        if preset is not None and preset != ckpt["preset"]:
            log_fn(f"--resume: keeping the checkpoint's preset {ckpt['preset']!r} (its model config); "
                   f"--preset {preset} is ignored")
        preset = ckpt["preset"]
        mcfg = GPTConfig(**ckpt["model_config"])
        tc = TrainConfig(**{**ckpt["train_config"], **overrides})
        start = ckpt["step"]
    else:
        preset = preset or ("small" if device_type == "cuda" else "tiny")
        shape, train_defaults = PRESETS[preset]
        mcfg = GPTConfig(vocab_size=ds.vocab_size, **shape)
        tc = TrainConfig(**{**train_defaults, **overrides})
    if not (tc.steps > 0 and tc.eval_every > 0 and tc.log_every > 0):
        raise ValueError("steps, eval_every and log_every must be positive")

    torch.manual_seed(tc.seed)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast, bf16 = autocast_for(device, tc.precision)
    model = GPT(mcfg).to(device)
    optimizer = model.configure_optimizer(tc.lr, tc.weight_decay, device_type)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    step_model = torch.compile(model) if tc.compile else model

    train_data = TrainBatches(ds, mcfg.block_size, tc.batch_size, tc.seed, device)
    # validation per folder; the blend's val loss is their mean by the blend's weights
    val_data = {name: val_batches(one, mcfg.block_size, tc.batch_size, tc.eval_batches, device)
                for name, one in zip(ds.names, ds.sets)}
    log_fn(ds.describe(tc.seed, min(tc.steps, 200), tc.batch_size * tc.grad_accum))
    shutil.copyfile(os.path.join(ds.dir, TOKENIZER), os.path.join(out_dir, TOKENIZER))
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    if not resume and os.path.exists(metrics_path):
        os.remove(metrics_path)  # a fresh run starts a fresh log
    log_fn(f"{preset}: {model.num_params() / 1e6:.2f}M parameters, vocab {mcfg.vocab_size}, context "
           f"{mcfg.block_size}, {tc.batch_size}x{tc.grad_accum} sequences/step on {device}"
           f"{' (bf16 autocast)' if bf16 else ''}{' (torch.compile)' if tc.compile else ''}; steps {start}→{tc.steps}")
    return Setup(model, step_model, optimizer, mcfg, tc, preset, start, device, autocast, train_data, val_data,
                 ds.bytes_per_token("val"), ds, ckpt_path, metrics_path)


def train(tokens_dir: str | list[str], out_dir: str | None = None, preset: str | None = None, device: str = "auto",
          resume: bool = False, log_fn: Callable[[str], None] | None = None, weights: list[float] | None = None,
          **overrides) -> dict:
    """Train (or, with `resume`, continue) and return the last metrics record. `overrides` set
    TrainConfig fields (steps, lr, eval_every, ...) over the preset's defaults; several token
    folders with `weights` train on a blend."""
    log_fn = log_fn or log.info
    s = setup(tokens_dir, out_dir, preset, device, resume, log_fn, weights=weights, **overrides)
    model, optimizer, tc = s.model, s.optimizer, s.tc

    record: dict = {}
    train_loss, tokens_seen, t_log = None, 0, time.perf_counter()
    t_start = t_log
    for step in range(s.start, tc.steps + 1):
        out_of_time = tc.max_seconds is not None and time.perf_counter() - t_start >= tc.max_seconds
        last = step == tc.steps or (out_of_time and step > s.start)
        do_eval = step == s.start or last or step % tc.eval_every == 0
        do_log = do_eval or step % tc.log_every == 0

        if do_log:
            per_source = {n: evaluate(s.step_model, b, s.autocast) for n, b in s.val_data.items()} if do_eval else {}
            val_loss = float(sum(w * v for w, v in zip(s.ds.weights, per_source.values()))) if do_eval else None
            dt = time.perf_counter() - t_log
            record = {"step": step, "train_loss": None if train_loss is None else train_loss.item(),
                      "val_loss": val_loss,
                      **({f"val_loss.{n}": v for n, v in per_source.items()} if len(per_source) > 1 else {}),
                      "val_bpb": val_loss / math.log(2) / s.bytes_per_token if do_eval else None,
                      "lr": lr_at(min(step, tc.steps - 1), tc), "tokens_per_s": tokens_seen / dt if tokens_seen else None}
            log_fn(format_record(record))
            with open(s.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            tokens_seen, t_log = 0, time.perf_counter()
        if do_eval and step > s.start:
            save_checkpoint(s.ckpt_path, model, optimizer, s.mcfg, tc, step, s.ds, s.preset)
        if last:
            if step < tc.steps:
                log_fn(f"stopped at step {step} of {tc.steps}: max_seconds={tc.max_seconds} reached")
            break

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tc)
        loss_sum = torch.zeros((), device=s.device)
        for micro in range(tc.grad_accum):
            x, y = s.train_data.get(step * tc.grad_accum + micro)
            with s.autocast:
                _, loss = s.step_model(x, y)
            (loss / tc.grad_accum).backward()
            loss_sum += loss.detach()  # no .item() here: on a GPU it would wait for every micro-step
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = loss_sum / tc.grad_accum  # a tensor: read (a GPU sync) only when logged
        tokens_seen += tc.batch_size * tc.grad_accum * s.mcfg.block_size
    return record


def save_checkpoint(path: str, model: GPT, optimizer, mcfg: GPTConfig, tc: TrainConfig, step: int,
                    ds: Blend, preset: str) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_config": dataclasses.asdict(mcfg),
             "train_config": dataclasses.asdict(tc), "step": step, "tokens_manifest_sha256": ds.manifest_sha256,
             "bos_id": ds.bos_id, "preset": preset, "tokens_dir": ds.dir}
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a checkpoint that exists is complete


def format_record(r: dict) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    per_source = "".join(f" {k[len('val_loss.'):]} {v:.4f}" for k, v in r.items() if k.startswith("val_loss."))
    return (f"step {r['step']:>6} | train loss {f(r['train_loss'], '.4f')} | val loss {f(r['val_loss'], '.4f')}"
            + (f" ({per_source.strip()})" if per_source else "")
            + f" | val bpb {f(r['val_bpb'], '.3f')} | lr {r['lr']:.2e} | {f(r['tokens_per_s'], ',.0f')} tok/s")
