"""The `tokenmill` command. Thin: parses arguments, calls the library, prints, sets the exit code.

    tokenmill run CONFIG [--executor ray|local] [--workers N] [--ray-address A] [--force] [--retry-failed]
    tokenmill inspect RUN [--failed] [--json]
    tokenmill verify RUN
    tokenmill report RUN                      write RUN/report.html: the run in charts
    tokenmill sample RUN --stage S [--reason R] [-n 5] [--kept] [--seed 0] [--json]
    tokenmill show RUN DOC_ID [--json]        one document's lineage, from its WARC record on
    tokenmill demo [--out DIR] [--executor ray|local] [--no-train]
    tokenmill train pretrain --tokens RUN/tokens [--out CKPT] [--steps N] [--preset tiny|demo|small|gpt2]
    tokenmill train sample --ckpt CKPT --prompt "..."
    tokenmill classifier train --positive P --negative N --out M.bin [--lr 0.5] [--epoch 10] [--max-examples N]

Exit status: 0 done; 1 the run failed (one-line summary on stderr) or `verify` found a mismatch;
2 bad config or usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["ray", "local"], help="override executor.kind")
    p.add_argument("--workers", type=int, help="override executor.workers (parallel tasks at most)")
    p.add_argument("--ray-address", help="Ray cluster to attach to (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenmill", description="Raw web crawls in, curated documents and training tokens out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a pipeline config (resumes when the output directory has a run)")
    p.add_argument("config", help="YAML pipeline config")
    _add_run_options(p)
    p.add_argument("--force", action="store_true", help="redo steps whose config changed since the last run in this directory")
    p.add_argument("--retry-failed", action="store_true",
                   help="also retry tasks that failed for good in an earlier run that ended within executor.max_failed_tasks")

    p = sub.add_parser("inspect", help="per-stage table of a run directory: tasks, documents, drop reasons")
    p.add_argument("run_dir")
    p.add_argument("--failed", action="store_true", help="list only the tasks that failed for good, with their errors")
    p.add_argument("--json", action="store_true", help="the run record, steps (tasks done/pending) and stages as JSON")

    p = sub.add_parser("verify", help="check every output of a run against its manifests (checksums, counts)")
    p.add_argument("run_dir")

    p = sub.add_parser("report", help="write RUN/report.html: funnel, drop reasons, scores and thresholds, tokens, time")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where to write it (default RUN/report.html)")
    p.add_argument("--max-parts", type=int, default=256, help="part files read per directory for distributions")

    p = sub.add_parser("sample", help="print documents a stage dropped (or kept), to judge a filter")
    p.add_argument("run_dir")
    p.add_argument("--stage", required=True, help="the stage, e.g. quality, language, dedup, url_filter")
    p.add_argument("--reason", help="only documents dropped for this reason (e.g. too_few_stop_words)")
    p.add_argument("-n", type=int, default=5, help="how many documents (default 5)")
    p.add_argument("--kept", action="store_true", help="documents the stage kept, not dropped")
    p.add_argument("--seed", type=int, default=0, help="which random documents (default 0: the same each time)")
    p.add_argument("--lines", type=int, default=8, help="lines of text per document (default 8)")
    p.add_argument("--json", action="store_true", help="JSON for scripts (full text, every score)")

    p = sub.add_parser("show", help="one document's lineage: WARC record, text, what each stage did")
    p.add_argument("run_dir")
    p.add_argument("doc_id")
    p.add_argument("--lines", type=int, default=30, help="lines of text to print (default 30)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")

    p = sub.add_parser("demo", help="generate a small crawl, run the default recipe, train a tiny model on it")
    p.add_argument("--out", default="runs/demo", help="demo directory (default runs/demo)")
    p.add_argument("--train-seconds", type=float, default=60.0, help="CPU seconds of training after curation")
    p.add_argument("--no-train", action="store_true", help="stop after curation and tokenization")
    _add_run_options(p)

    p = sub.add_parser("classifier", help="model-based quality: train a fastText classifier for the classify stage")
    csub = p.add_subparsers(dest="classifier_command", required=True)
    p = csub.add_parser("train", help="fastText on positive vs negative examples (DCLM's recipe); prints held-out accuracy")
    p.add_argument("--positive", required=True, help="JSONL or Parquet with a `text` column, or a run directory (its docs/)")
    p.add_argument("--negative", required=True, help="the same forms; e.g. a sample of a run")
    p.add_argument("--out", required=True, help="the model file to write (.bin)")
    from tokenmill.classifier_train import TrainSettings

    d = TrainSettings()
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--epoch", type=int, default=d.epoch, help=f"passes over the data (default {d.epoch})")
    p.add_argument("--word-ngrams", type=int, default=d.word_ngrams, help=f"word n-gram features (default {d.word_ngrams})")
    p.add_argument("--dim", type=int, default=d.dim, help=f"vector size (default {d.dim})")
    p.add_argument("--min-count", type=int, default=d.min_count, help=f"rarest word kept (default {d.min_count})")
    p.add_argument("--bucket", type=int, default=d.bucket, help=f"hashed n-gram rows (default {d.bucket:,}; sets the file size)")
    p.add_argument("--threads", type=int, default=d.threads, help=f"training threads (default {d.threads})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"shuffle and hold-out seed (default {d.seed})")
    p.add_argument("--max-examples", type=int, help="per class: a seeded sample of each input (default: all)")

    from tokenmill.train.cli import add_train_parser  # torch loads only when `train` runs

    add_train_parser(sub)
    return parser


def _overrides(args) -> dict:
    return {"kind": args.executor, "workers": args.workers, "address": args.ray_address}


def cmd_run(args) -> int:
    from tokenmill.config import ConfigError, load
    from tokenmill.manifests.inspect import describe
    from tokenmill.pipeline import ConfigChanged, run_pipeline

    from tokenmill.readers import InputUnavailable

    try:
        cfg = load(args.config, overrides=_overrides(args))
    except ConfigError as e:
        print(f"tokenmill: bad config: {e}", file=sys.stderr)
        return 2
    except InputUnavailable as e:
        print(f"tokenmill: input unavailable: {e}; nothing was run, try again later", file=sys.stderr)
        return 1
    try:
        summary = run_pipeline(cfg, force=args.force, progress=not args.no_progress, retry_failed=args.retry_failed)
    except ConfigChanged as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    print(describe(cfg.output))
    _write_report(cfg)
    for note in summary.notes:
        print(f"tokenmill: warning: {note}", file=sys.stderr)
    if not summary.ok:
        print(f"tokenmill: {summary.one_line()}", file=sys.stderr)
        return 1
    print(summary.one_line())
    return 0


def cmd_inspect(args) -> int:
    from tokenmill.manifests.inspect import describe, describe_failed, describe_json

    try:
        if args.json:
            print(describe_json(args.run_dir))
        else:
            print(describe_failed(args.run_dir) if args.failed else describe(args.run_dir))
    except FileNotFoundError as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    return 0


def _write_report(cfg) -> None:
    """RUN/report.html at the end of every run (executor.report: false turns it off). A report
    that cannot be written is said on stderr; it never changes the run's exit status."""
    if not getattr(cfg.executor, "report", True):
        return
    from tokenmill.manifests.report import write_report

    try:
        print(f"report: {write_report(cfg.output)}")
    except (OSError, ValueError, KeyError) as e:
        print(f"tokenmill: could not write the report: {e}", file=sys.stderr)


def cmd_report(args) -> int:
    from tokenmill.manifests.report import write_report

    try:
        url = write_report(args.run_dir, max_parts=args.max_parts, out=args.out)
    except FileNotFoundError as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    print(f"wrote {url}")
    return 0


def cmd_sample(args) -> int:
    from tokenmill.manifests.sample import SampleError, format_sample, sample, to_json

    try:
        docs = sample(args.run_dir, args.stage, args.reason, n=args.n, kept=args.kept, seed=args.seed)
    except (FileNotFoundError, SampleError) as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    print(to_json(docs) if args.json else format_sample(docs, args.stage, args.kept, lines=args.lines))
    return 0


def cmd_show(args) -> int:
    from tokenmill.manifests.show import DocNotFound, format_lineage, lineage, to_json

    try:
        d = lineage(args.run_dir, args.doc_id)
    except (FileNotFoundError, DocNotFound) as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    print(to_json(d) if args.json else format_lineage(d, text_lines=args.lines))
    return 0


def cmd_verify(args) -> int:
    from tokenmill.manifests.verify import verify_run

    try:
        problems = verify_run(args.run_dir)
    except FileNotFoundError as e:
        print(f"tokenmill: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    if problems:
        print(f"tokenmill verify: {len(problems)} problem(s) in {args.run_dir}", file=sys.stderr)
        return 1
    print(f"tokenmill verify: {args.run_dir}: every output matches its manifest")
    return 0


def cmd_demo(args) -> int:
    from tokenmill import demo, storage
    from tokenmill.config import from_dict
    from tokenmill.manifests.inspect import describe
    from tokenmill.pipeline import run_pipeline

    crawl_dir = storage.join(args.out, "crawl")
    n = demo.write_warc(storage.join(crawl_dir, "demo-00000.warc.gz"), seed=0, n_articles=60)
    n += demo.write_warc(storage.join(crawl_dir, "demo-00001.warc.gz"), seed=1, n_articles=40)
    print(f"generated a crawl of {n} HTTP responses in {crawl_dir}")
    raw = demo.demo_config(crawl_dir, storage.join(args.out, "run"))
    cfg = from_dict(raw, source="tokenmill demo", overrides=_overrides(args))
    summary = run_pipeline(cfg, force=True, progress=not args.no_progress)
    print(describe(cfg.output))
    _write_report(cfg)
    print(summary.one_line())
    if not summary.ok:
        return 1
    if args.no_train:
        return 0
    try:
        from tokenmill.train import pretrain, sample
    except ImportError:
        print("tokenmill demo: PyTorch is not installed (pip install 'tokenmill[train]'); skipping the training part")
        return 0
    tokens = storage.join(cfg.output, "tokens")
    print(f"\ntraining a tiny GPT on {tokens} for about {args.train_seconds:.0f} s on the CPU:")
    pretrain.train(tokens, preset="demo", device="cpu", max_seconds=args.train_seconds, log_fn=print)
    prompt = "The city council"
    text = sample.generate(storage.join(cfg.output, "ckpt"), prompt, max_new_tokens=40, seed=0, device="cpu")
    print(f"\nsample: {prompt}{text}")
    print(f"\nnext: tokenmill inspect {cfg.output}   |   tokenmill train pretrain --tokens {tokens}")
    return 0


def cmd_classifier(args) -> int:
    from tokenmill.classifier_train import TrainInputError, TrainSettings, train

    try:
        settings = TrainSettings(lr=args.lr, epoch=args.epoch, word_ngrams=args.word_ngrams, dim=args.dim,
                                 min_count=args.min_count, bucket=args.bucket, threads=args.threads, seed=args.seed,
                                 max_examples=args.max_examples)
    except ValueError as e:
        print(f"tokenmill classifier train: {e}", file=sys.stderr)
        return 2
    try:
        r = train(args.positive, args.negative, args.out, settings)
    except (TrainInputError, ImportError) as e:
        print(f"tokenmill classifier train: {e}", file=sys.stderr)
        return 2
    print(f"examples: {r.positive} positive, {r.negative} negative; trained on {r.train}, held out {r.heldout}")
    print(f"held-out accuracy: {r.accuracy:.3f}")
    print(f"wrote {r.out} (lr {settings.lr}, epoch {settings.epoch}, word n-grams {settings.word_ngrams}, "
          f"dim {settings.dim}, bucket {settings.bucket}); use it with classify: {{kind: fasttext, label: positive}}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "train":
        from tokenmill.train.cli import run_train

        return run_train(args)
    if args.command in ("report", "sample", "show"):
        return {"report": cmd_report, "sample": cmd_sample, "show": cmd_show}[args.command](args)
    return {"run": cmd_run, "inspect": cmd_inspect, "verify": cmd_verify, "demo": cmd_demo,
            "classifier": cmd_classifier}[args.command](args)


def entry() -> None:
    """The console script: run `main`, then leave without the interpreter's teardown.

    The exit status must be the run's. At interpreter exit, Arrow's native thread pools can be
    torn down while a thread still runs ("terminate called without an active exception", exit
    134 — seen in 1 of 6 successful `tokenmill run`s on a 1,000-line JSONL). Everything we own is
    closed by then (Ray shut down, files renamed, manifests written), so after flushing we exit
    with os._exit and the status `main` returned; an uncaught error still prints its traceback
    and exits 1.
    """
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:  # argparse: --help (0), usage errors (2)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to say
            pass
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    entry()
