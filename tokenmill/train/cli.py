"""`tokenmill train pretrain|sft|rm|rl|data|demo|sample`: thin argparse over the stage modules.

torch is imported only when a train command runs, so `tokenmill --help` works without it.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add `train` (pretrain, sft, rm, rl, data, demo, sample) to the `tokenmill` command's subparsers."""
    p = subparsers.add_parser("train", help="train a compact GPT on the token shards (pretrain, sft, rm, rl), or sample")
    sub = p.add_subparsers(dest="train_command", metavar="{pretrain,sft,rm,rl,data,demo,sample}", required=True)

    pre = sub.add_parser("pretrain", help="pretrain on RUN/tokens; one line per log step")
    pre.add_argument("--tokens", required=True, action="append",
                     help="the tokens directory of a run (RUN/tokens); repeat it to train on a blend of runs")
    pre.add_argument("--weights", type=float, nargs="+", default=None,
                     help="one weight per --tokens (default: each folder's share of train tokens)")
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
    pre.add_argument("--compile", action="store_true", default=None,
                     help="torch.compile the model (CUDA; on CPU it needs a C++ compiler)")
    pre.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None,
                     help="auto (default): bf16 autocast on a GPU with bf16, else fp32; bf16 also on CPU")
    pre.add_argument("--max-seconds", type=float, default=None, help="stop (validate, save) after this long")

    def stage_args(sp, data_help: str | None) -> None:
        sp.add_argument("--ckpt", required=True, help="the checkpoint directory to start from")
        if data_help:
            sp.add_argument("--data", required=True, help=data_help)
        sp.add_argument("--out", required=True, help="the new checkpoint directory")
        sp.add_argument("--steps", type=int, default=None)
        sp.add_argument("--lr", type=float, default=None)
        sp.add_argument("--eval-every", type=int, default=None, help="validate every N steps (and at the first and last)")
        sp.add_argument("--log-every", type=int, default=None)
        sp.add_argument("--seed", type=int, default=None)
        sp.add_argument("--max-seconds", type=float, default=None, help="stop (validate, save) after this long")
        sp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        sp.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None,
                        help="auto (default): bf16 autocast on a GPU with bf16, else fp32; bf16 also on CPU")

    sft = sub.add_parser("sft", help="fine-tune on conversations (JSONL); loss on assistant tokens only")
    stage_args(sft, 'conversations, one {"messages": [{"role": "user"|"assistant", "content": ...}, ...]} per line')
    sft.add_argument("--batch-size", type=int, default=None, help="packed rows per step")
    sft.add_argument("--val-fraction", type=float, default=None, help="conversations held out for val_loss")

    rm = sub.add_parser("rm", help="train a reward model on preference pairs (Bradley-Terry)")
    stage_args(rm, 'preference pairs, one {"prompt": ..., "chosen": ..., "rejected": ...} per line')
    rm.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    rm.add_argument("--val-fraction", type=float, default=None, help="pairs held out for val_accuracy")
    rm.add_argument("--head-only", action="store_true",
                    help="score with the last-token head alone, without the learned weight on the answer's likelihood")

    rl = sub.add_parser("rl", help="reinforcement learning: groups of sampled answers, rewarded, policy gradient")
    stage_args(rl, None)
    rl.add_argument("--task", default="arithmetic", help="the prompts and their exact-answer check (arithmetic, reverse)")
    rl.add_argument("--reward-model", default=None, help="an `rm` checkpoint: its score is the reward (RLHF)")
    rl.add_argument("--group-size", type=int, default=None, help="answers sampled per prompt")
    rl.add_argument("--prompts-per-step", type=int, default=None)
    rl.add_argument("--temperature", type=float, default=None)
    rl.add_argument("--kl-coef", type=float, default=None, help="weight of the KL to the starting policy")
    rl.add_argument("--ppo-epochs", type=int, default=None, help="passes over each step's samples (clipped)")
    rl.add_argument("--max-heldout", type=int, default=None, help="held-out prompts evaluated (default 250)")

    data = sub.add_parser("data", help="write a synthetic task's sft.jsonl, prefs.jsonl and prompts.jsonl")
    data.add_argument("--task", default="arithmetic", help="arithmetic or reverse")
    data.add_argument("--out", required=True, help="directory for the JSONL files")

    demo = sub.add_parser("demo", help="the whole chain on CPU: pretrain, sft, rm, rl; prints what each improved")
    demo.add_argument("--tokens", default="runs/demo/run/tokens",
                      help="a run's tokens (default: those of `tokenmill demo --out runs/demo --no-train`)")
    demo.add_argument("--out", default=None, help="where the stages go (default: RUN/chain beside the tokens)")
    demo.add_argument("--task", default="arithmetic")
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    demo.add_argument("--seed", type=int, default=None,
                      help="seed every stage with it (another base, SFT order, RL draws; default: each stage's own)")

    smp = sub.add_parser("sample", help="generate text from a checkpoint")
    smp.add_argument("--ckpt", required=True, help="checkpoint directory written by `train pretrain`")
    smp.add_argument("--prompt", default="")
    smp.add_argument("--max-new-tokens", type=int, default=100)
    smp.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    smp.add_argument("--top-k", type=int, default=50)
    smp.add_argument("--top-p", type=float, default=None)
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    smp.add_argument("--chat", action="store_true", help="the prompt is a user message; print the assistant's reply")
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
                                                       "grad_accum", "lr", "seed", "compile", "max_seconds",
                                                       "precision")}
            pretrain.train(args.tokens, args.out, preset=args.preset, device=args.device, resume=args.resume,
                           log_fn=lambda line: print(line, flush=True), weights=args.weights, **overrides)
            return 0
        if args.train_command in ("sft", "rm", "rl"):
            return run_stage(args)
        if args.train_command == "data":
            from tokenmill.train import tasks

            for name, path in tasks.write_task_data(tasks.get_task(args.task), args.out).items():
                print(f"{name}: {path}")
            return 0
        if args.train_command == "demo":
            from tokenmill.train import demo

            demo.run(args.tokens, args.out, task=args.task, device=args.device, seed=args.seed,
                     log_fn=lambda line: print(line, flush=True))
            return 0
        if args.train_command == "sample":
            from tokenmill.train import sample

            top_k = args.top_k if args.top_k and args.top_k > 0 else None
            if args.chat:
                print(sample.chat_reply(args.ckpt, args.prompt, args.max_new_tokens, args.temperature, top_k,
                                        args.seed, args.device))
                return 0
            text = sample.generate(args.ckpt, args.prompt, args.max_new_tokens, args.temperature,
                                   top_k, args.top_p, args.seed, args.device)
            print(args.prompt + text)
            return 0
    except (ValueError, FileNotFoundError) as e:  # our errors say how to fix it
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"unknown train command {args.train_command!r}", file=sys.stderr)
    return 2



def run_stage(args: argparse.Namespace) -> int:
    """`train sft|rm|rl`: the flags that were given override the stage's config defaults."""
    common = {k: getattr(args, k) for k in ("steps", "lr", "eval_every", "log_every", "seed", "max_seconds", "precision")}
    log_fn = lambda line: print(line, flush=True)
    if args.train_command == "sft":
        from tokenmill.train import sft

        sft.finetune(args.ckpt, args.data, args.out, device=args.device, log_fn=log_fn, batch_size=args.batch_size,
                     val_fraction=args.val_fraction, **common)
    elif args.train_command == "rm":
        from tokenmill.train import rm

        rm.train_reward_model(args.ckpt, args.data, args.out, device=args.device, log_fn=log_fn,
                              batch_size=args.batch_size, val_fraction=args.val_fraction,
                              likelihood=False if args.head_only else None, **common)
    else:
        from tokenmill.train import rl

        rl.reinforce(args.ckpt, args.out, task=args.task, reward_model=args.reward_model, device=args.device,
                     log_fn=log_fn, group_size=args.group_size, prompts_per_step=args.prompts_per_step,
                     temperature=args.temperature, kl_coef=args.kl_coef, ppo_epochs=args.ppo_epochs,
                     max_heldout=args.max_heldout, **common)
    return 0
