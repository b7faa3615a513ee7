"""`tokenmill train pretrain|sample`: thin argparse over `pretrain.train` and `sample.generate`.

torch is imported only when a train command runs, so `tokenmill --help` works without it.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add `train` (with `pretrain` and `sample`) to the `tokenmill` command's subparsers."""
    p = subparsers.add_parser("train", help="train a compact GPT on the token shards, or sample from it")
    sub = p.add_subparsers(dest="train_command", metavar="{pretrain,sample}", required=True)

    pre = sub.add_parser("pretrain", help="pretrain on RUN/tokens; one line per log step")
    pre.add_argument("--tokens", required=True, help="the tokens directory of a run (RUN/tokens)")
    pre.add_argument("--out", default=None, help="checkpoint directory (default: RUN/ckpt beside the tokens)")
    pre.add_argument("--steps", type=int, default=None, help="optimizer steps in total (default: the preset's)")
    pre.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    pre.add_argument("--preset", choices=["tiny", "demo", "small", "gpt2"], default=None,
                     help="model size (default: tiny on CPU, small on CUDA)")
    pre.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt up to --steps")
    pre.add_argument("--eval-every", type=int, default=None, help="validate every N steps (and at the first and last)")
    pre.add_argument("--log-every", type=int, default=None)
    pre.add_argument("--batch-size", type=int, default=None)
    pre.add_argument("--grad-accum", type=int, default=None)
    pre.add_argument("--lr", type=float, default=None)
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (CUDA)")
    pre.add_argument("--max-seconds", type=float, default=None, help="stop (validate, save) after this long")

    smp = sub.add_parser("sample", help="generate text from a checkpoint")
    smp.add_argument("--ckpt", required=True, help="checkpoint directory written by `train pretrain`")
    smp.add_argument("--prompt", default="")
    smp.add_argument("--max-new-tokens", type=int, default=100)
    smp.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    smp.add_argument("--top-k", type=int, default=50)
    smp.add_argument("--top-p", type=float, default=None)
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    return p


def run_train(args: argparse.Namespace) -> int:
    """Run `tokenmill train ...`; returns the exit code (2: a problem the user must fix)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("tokenmill train needs PyTorch: pip install 'tokenmill[train]'", file=sys.stderr)
        return 2
    try:
        if args.train_command == "pretrain":
            from tokenmill.train import pretrain

            overrides = {k: getattr(args, k) for k in ("steps", "eval_every", "log_every", "batch_size",
                                                       "grad_accum", "lr", "seed", "compile", "max_seconds")}
            pretrain.train(args.tokens, args.out, preset=args.preset, device=args.device, resume=args.resume,
                           log_fn=lambda line: print(line, flush=True), **overrides)
            return 0
        if args.train_command == "sample":
            from tokenmill.train import sample

            text = sample.generate(args.ckpt, args.prompt, args.max_new_tokens, args.temperature,
                                   args.top_k if args.top_k and args.top_k > 0 else None, args.top_p,
                                   args.seed, args.device)
            print(args.prompt + text)
            return 0
    except (AssertionError, ValueError) as e:  # our assertions say how to fix it
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"unknown train command {args.train_command!r}", file=sys.stderr)
    return 2

