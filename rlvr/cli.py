"""Command line: ``rlvr train | serve | sft | redi | specs | int | abstain-train | pipeline |
eval | report | tiny-model``.

``rlvr train RECIPE.yaml key.sub=value ...`` validates the recipe (overrides included),
writes the resolved recipe into ``runs/<name>/`` and trains. ``rlvr eval [RECIPE.yaml]
key=value ... --flags`` runs the eval harness on the same recipe system (eval/config.py;
``python -m eval`` is the same). ``rlvr serve MODEL`` starts a vLLM rollout server
for ``rollout.mode=server`` (rlvr/serve.py). ``rlvr report RUN ...`` writes an HTML report
(rlvr/report.py). ``rlvr tiny-model DIR`` builds a random tiny Qwen2
model with an offline tokenizer (for tests and experiments).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

TRAIN_EPILOG = """\
overrides:
  Any recipe key can be set on the command line as dotted key=value (values parsed as YAML):
    rlvr train recipes/quickstart.yaml train.steps=20 rollout.engine=hf algo.eps_high=0.28
    rlvr train recipes/grpo_math.yaml model.path=/models/Qwen2.5-0.5B-Instruct rewards.0.weight=2
  Unknown keys and wrong types stop the run with the file, the key and a close match.

main recipe sections (see recipes/*.yaml for complete examples):
  model       path, dtype, trust_remote_code, gradient_checkpointing
  data        source (arithmetic|file|hf), path, prompt_field, answer_field, prompt_template,
              system_prompt, use_chat_template
  rollout     mode (colocate|server: vLLM servers from rlvr serve, with server.urls,
              server.timeout_s, server.receipt_tol), engine (hf|vllm), group_size, max_new_tokens, temperature, top_p, top_k,
              dtype (rollout precision, e.g. bfloat16 with float32 training; the gap is
              logprob_mismatch), enforce_eager (vLLM on GPU: CUDA graphs), sleep (the vLLM
              KV cache freed between rollouts: sleep mode on GPU, on by default on CPU),
              kv_cache_gib (vLLM on CPU); soft_thinking {top_k, top_p, tau_g, noise_scale,
              temperature} switches on SofT-GRPO soft-thinking rollouts (hf engine;
              docs/soft_thinking.md)
  rewards     list of {name, weight, params}; name is a built-in, pkg.module:fn or file.py:fn
  algo        advantage (grpo|dr_grpo|rloo|...), eps_low, eps_high, kl_coef, loss_aggregation
  train       steps, prompts_per_step, micro_batch_size, lr, warmup_steps, schedule,
              max_grad_norm, logprob_impl (fused|naive),
              skip_zero_rows (true: rows with no gradient skip forward/backward; the
              gradient is unchanged, train/skipped_rows counts them),
              micro_batch_order (length|index: length-sorted micro-batches, less padding)
  checkpoint  every, keep_last          logging  tensorboard, wandb, plots, progress
  eval        before, after, num_problems, samples (held-out accuracy around training)

resume:
  Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and stops; a second Ctrl-C
  or an exception inside a step checkpoints the last completed step on the way out; after a
  kill -9 the last periodic checkpoint remains. Run the same command with resume=true to
  continue. A step with a NaN/inf advantage, loss or gradient norm is skipped and never
  checkpointed; train.max_nonfinite_steps (3) in a row stop the run.

outputs (runs/<name>/):
  recipe.yaml, metrics.jsonl, tensorboard/, plots/*.png, checkpoints/step_N/ (safetensors),
  log.txt (every log line), summary.json; `rlvr report runs/<name>` writes report.html
"""


def _setup_logging(verbose: bool) -> None:
    from rlvr.console import setup_logging

    setup_logging(verbose)


def _print_recipe(recipe: Any) -> int:
    """Print the resolved recipe (file + overrides + defaults) as YAML."""
    import yaml

    print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rlvr.config import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_recipe:
        return _print_recipe(recipe)
    from rlvr.preflight import PreflightError, check_recipe

    try:  # everything the recipe alone can tell, before any model loads
        report = check_recipe(recipe)
    except PreflightError as e:
        print(f"error: {args.recipe}: {e}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        logging.getLogger("rlvr").warning(warning)
    from rlvr.distributed import DistEnv, WorldSizeError, follow

    try:  # torchrun / accelerate launch: the world size asked for is the one launched
        dist = DistEnv.setup(recipe)
    except WorldSizeError as e:
        print(f"error: {args.recipe}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not dist.is_driver:  # ranks > 0 learn on their shard of rank 0's batches
        code = follow(recipe, dist)  # the process group is already torn down
        # a follower has nothing left to do: leave without the interpreter's teardown, where
        # a C++ thread still joinable at exit has aborted a follower now and then ("terminate
        # called without an active exception", SIGABRT after a finished run)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    from rlvr.trainer import Trainer

    try:
        try:
            trainer = Trainer(recipe)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            summary = trainer.train()
        except KeyboardInterrupt:  # a second Ctrl-C: the trainer has saved what it could
            print(f"stopped: {trainer.crash_note or 'interrupted'}", file=sys.stderr)
            return 130
        except Exception as e:  # the traceback, then what was saved and how to resume, last
            logging.getLogger("rlvr").error("training failed", exc_info=e)
            print(f"stopped: {trainer.crash_note or repr(e)}", file=sys.stderr)
            return 1
        finally:
            trainer.close()
    finally:
        dist.finish()  # the other ranks stop
    _print_summary(summary)
    return 130 if summary.get("interrupted") else 0


def _print_summary(summary: dict[str, Any]) -> None:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from rlvr.console import fmt

    console = Console()
    table = Table(title="run summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("eval_before", "eval_after"):
        for k, v in (summary.get(key) or {}).items():
            table.add_row(f"{key.split('_')[1]}: {k}", fmt(k, v))
    final = summary.get("final_metrics") or {}
    for k in ("reward/mean", "accuracy", "entropy", "length/mean", "time/step"):
        if k in final:
            table.add_row(f"last step: {k}", fmt(k, final[k]))
    for key, t in (summary.get("reward_failures") or {}).items():
        if t.get("failed") or t.get("timeout"):
            table.add_row(
                f"reward {key}: failed / timed out",
                f"{t['failed']} / {t['timeout']} of {t['entries']} ({fmt('rate', t['rate'])})",
            )
    data = summary.get("data") or {}
    if data.get("skipped") or data.get("overlong_prompts") or data.get("numeric_answers"):
        skipped = sum((data.get("skipped") or {}).values())
        table.add_row("data: rows used / read", f"{data.get('used')} / {data.get('rows')}")
        if skipped:
            table.add_row("data: malformed rows skipped", str(skipped))
        if data.get("overlong_prompts"):
            table.add_row(
                f"data: overlong prompts ({data.get('overlong_policy')})",
                str(data["overlong_prompts"]),
            )
        if data.get("numeric_answers"):
            table.add_row("data: numeric answers used as text", str(data["numeric_answers"]))
    if summary.get("nonfinite_steps"):
        table.add_row("non-finite steps skipped", str(summary["nonfinite_steps"]))
    console.print(table)
    if summary.get("stopped_reason"):
        console.print(f"[red]stopped:[/] {summary['stopped_reason']}", soft_wrap=True)
    elif summary.get("interrupted"):
        console.print("[yellow]stopped early; run again with resume=true to continue[/]")
    # paths printed whole (soft_wrap): a terminal may wrap them, rich never breaks them
    console.print(f"run: {summary['run_dir']}", soft_wrap=True, highlight=False)
    if summary.get("checkpoint"):
        console.print(f"final checkpoint: {summary['checkpoint']}", soft_wrap=True, highlight=False)
    summary_path = Path(summary["run_dir"]) / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=1, default=str))
    console.print(f"summary: {summary_path}", soft_wrap=True, highlight=False)


def cmd_stage(args: argparse.Namespace) -> int:
    from rlvr.config import RecipeError, load_recipe
    from rlvr.data.datasets import DataError
    from rlvr.stages.registry import get_stage

    spec = get_stage(args.command)
    try:
        recipe = load_recipe(args.recipe, args.overrides, schema=spec.schema)
        if args.print_recipe:
            return _print_recipe(recipe)
        summary = spec.runner(recipe)
    except (RecipeError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "steps" in summary and "loss" in summary:  # a TRL training report (sft)
        losses = [e["loss"] for e in summary.get("log_history", []) if "loss" in e]
        print(
            f"{args.command}: {summary['steps']} steps, mean loss {summary['loss']:.4f}"
            + (f", last logged {losses[-1]:.4f}" if losses else "")
        )
    for key in ("counts", "pair_stats", "eval_before", "eval_after_sft", "eval_after"):
        if key in summary:
            print(f"{key}: {json.dumps(summary[key])}")
    if "head" in summary:
        cal = summary["calibration"]
        dyn = cal["rules"]["dynamic"]
        print(
            f"calibration split at threshold {cal['threshold']:.3f} ({cal['rule']}): "
            f"coverage {dyn['coverage']:.3f}, selective accuracy {dyn['selective_accuracy']}, "
            f"tokens saved {dyn['tokens_saved']:.3f}"
        )
        print(f"head: {summary['head']}")
    print(f"model: {summary['model_dir']}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from rlvr.config import RecipeError, load_recipe
    from rlvr.data.datasets import DataError
    from rlvr.pipeline import PipelineRecipe, run_pipeline

    try:
        pipe = load_recipe(args.recipe, args.overrides, schema=PipelineRecipe)
        records = run_pipeline(pipe)
    except (RecipeError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 130
    for r in records:
        print(f"{r['stage']:>16s} ({r['kind']}): {r['model']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlvr.report import ReportError, write_report

    try:
        out = write_report([Path(p) for p in args.runs], Path(args.out) if args.out else None)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from rlvr.data.tiny import build_tiny_model

    path = build_tiny_model(
        args.out,
        seed=args.seed,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        vocab_size=args.vocab_size,
    )
    print(path)
    return 0


# commands that are not stage kinds: parsing them needs no import of the stage modules
BUILTIN_COMMANDS = ("train", "serve", "eval", "pipeline", "report", "tiny-model")


def build_parser(with_stages: bool = True) -> argparse.ArgumentParser:
    """The ``rlvr`` parser; ``with_stages`` adds one subcommand per registered stage kind
    (rlvr/stages/registry.py), which imports the stage modules."""
    parser = argparse.ArgumentParser(
        prog="rlvr",
        description="Reinforcement learning with verifiable rewards for reasoning LLMs.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log line on the terminal, third-party ones included (by default "
        "they go to <run dir>/log.txt)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train with an RL recipe",
        description="Train a policy with RL from a YAML recipe.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("recipe", help="path to a YAML recipe (see recipes/)")
    train.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    train.add_argument(
        "--print-recipe", action="store_true", help="print the resolved recipe and exit"
    )
    train.add_argument(
        "-v", "--verbose", dest="sub_verbose", action="store_true", help="show every log line"
    )
    train.set_defaults(func=cmd_train)

    serve = sub.add_parser(
        "serve",
        help="start a vLLM rollout server for rollout.mode=server (rlvr serve MODEL --help)",
        add_help=False,
    )
    serve.set_defaults(func=None)

    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on benchmark suites (same as python -m eval)",
        add_help=False,
    )
    ev.set_defaults(func=None)

    kinds = ["train"]
    if with_stages:  # every registered stage kind with a command (imports rlvr/stages/)
        from rlvr.stages.registry import stage_kinds

        kinds = []
        for spec in stage_kinds():
            kinds.append(spec.kind)
            if not spec.command:
                continue
            stage = sub.add_parser(spec.kind, help=spec.help, description=spec.description)
            stage.add_argument("recipe", help=f"path to a YAML {spec.kind} recipe")
            stage.add_argument("overrides", nargs="*", help="dotted key=value overrides")
            stage.add_argument(
                "--print-recipe", action="store_true", help="print the resolved recipe and exit"
            )
            stage.add_argument(
                "-v",
                "--verbose",
                dest="sub_verbose",
                action="store_true",
                help="show every log line",
            )
            stage.set_defaults(func=cmd_stage)

    pipe = sub.add_parser(
        "pipeline",
        help="run chained stages (e.g. SFT -> REDI -> GRPO) from one recipe",
        description="Run the stages of a pipeline recipe in order (see "
        f"recipes/pipeline_*.yaml); stage kinds: {', '.join(kinds)}; each stage's "
        "output model feeds the next; each stage writes into runs/<pipeline>/<stage>/; "
        "finished stages are skipped on a re-run and an interrupted RL stage resumes from its "
        "checkpoints.",
    )
    pipe.add_argument("recipe", help="path to a YAML pipeline recipe")
    pipe.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    pipe.add_argument(
        "-v", "--verbose", dest="sub_verbose", action="store_true", help="show every log line"
    )
    pipe.set_defaults(func=cmd_pipeline)

    report = sub.add_parser(
        "report",
        help="one self-contained HTML page of one run or comparing runs",
        description="An HTML report of run directories (or directories of them, or eval "
        "outputs): runs and how they ended, overlaid curves (seeds of one setting as a mean "
        "with a min..max band), configuration differences, eval tables and the method-"
        "signatures table when present. Self-contained: no script, nothing fetched.",
    )
    report.add_argument("runs", nargs="+", help="run directories (runs/<name>)")
    report.add_argument(
        "--out", help="output file (default: RUN/report.html, or ./report.html for several)"
    )
    report.set_defaults(func=cmd_report)

    tiny = sub.add_parser("tiny-model", help="build a random tiny Qwen2 model + offline tokenizer")
    tiny.add_argument("out", help="output directory")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden-size", type=int, default=128)
    tiny.add_argument("--layers", type=int, default=4)
    tiny.add_argument("--heads", type=int, default=4, help="attention heads (head_dim >= 32)")
    tiny.add_argument("--kv-heads", type=int, default=2, help="key/value heads (GQA)")
    tiny.add_argument(
        "--intermediate-size", type=int, default=0, help="MLP width (default: 4 x hidden size)"
    )
    tiny.add_argument(
        "--vocab-size", type=int, default=None,
        help="pad the vocabulary to this many ids (e.g. 151936, Qwen2.5's) with filler tokens",
    )  # fmt: skip
    tiny.set_defaults(func=cmd_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv.pop(0)
    if argv and argv[0] == "serve":
        from rlvr.serve import main as serve_main

        _setup_logging(verbose)
        return serve_main(argv[1:])
    if argv and argv[0] == "eval":
        from eval.cli import main as eval_main

        rest = [a for a in argv[1:] if a not in ("-v", "--verbose")]
        _setup_logging(verbose or len(rest) < len(argv) - 1)
        return eval_main(rest)
    asks_help = any(a in ("-h", "--help") for a in argv)
    parser = build_parser(with_stages=asks_help or not (argv and argv[0] in BUILTIN_COMMANDS))
    args = parser.parse_args((["-v"] if verbose else []) + argv)
    _setup_logging(args.verbose or getattr(args, "sub_verbose", False))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
