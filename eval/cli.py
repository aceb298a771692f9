"""Command line of the eval harness: ``python -m eval`` and ``rlvr eval``.

``rlvr eval [RECIPE.yaml] [key=value ...] [flags]``: the settings are one typed section,
:class:`eval.config.EvalRecipe`, loaded like a training recipe (unknown keys and wrong types stop
with the file, the key and a close match; ``--print-recipe`` prints the resolved section).
Every flag is a key of that section (the flag name with ``_`` for ``-``, e.g. ``max_tokens``);
``--config FILE`` is the recipe file too.  Precedence: file < dotted overrides < flags.  Sampling
flags left
unset take each suite's default (printed in the summary): AIME n=16, MATH-500 n=4, both at
temperature 0.6 / top-p 0.95 / 32,768 tokens (DeepSeek-R1 protocol); IFEval / IFBench greedy,
n=1.  ``--oracle`` runs the self-checks of :mod:`eval.oracle` instead of a model.
``--backend`` (and a recipe's ``backend:``) is the deprecated name of ``--engine`` (``engine``):
accepted with a warning, hidden from ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from eval.config import EvalRecipe, normalize_keys, require_model
from eval.report import summary_engine
from eval.runner import EvalSettings, ResumeError, run_eval
from eval.suites import PROMPT_TEMPLATES, SUITES, DataError
from rlvr.config import (
    RecipeError,
    apply_override,
    parse_override,
    read_tree,
    renamed_key,
    validate_tree,
)

__all__ = ["build_parser", "load_recipe_args", "load_settings", "main"]

# argparse destinations that are not keys of the eval section
_NOT_SETTINGS = ("config", "items", "print_recipe", "progress", "oracle")
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("rlvr").warning(message)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlvr eval",
        description=(
            "Evaluate a checkpoint on AIME 2024/2025, MATH-500, IFEval, IFBench (and the "
            "synthetic arithmetic suite) with avg@n, pass@k, maj@k from local data."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    S = argparse.SUPPRESS  # unset flags stay unset so YAML values and suite defaults apply
    p.add_argument(
        "items",
        nargs="*",
        default=[],
        metavar="RECIPE.yaml | key=value",
        help="an eval recipe file (see recipes/eval_*.yaml) and dotted key=value overrides "
        "(values parsed as YAML), e.g. n=4 suite_overrides.aime24.n=1",
    )
    p.add_argument("--config", help="the eval recipe file (same as the positional)", default=S)
    p.add_argument(
        "--print-recipe",
        action="store_true",
        default=False,
        help="print the resolved settings (file + overrides + flags + defaults) and exit",
    )
    p.add_argument("--model", help="local model directory or hub name", default=S)
    p.add_argument(
        "--suites",
        default=S,
        help=f"comma-separated suites ({', '.join(SUITES)}); 'NAME=FILE' names a data file "
        "(default: aime24,aime25,math500)",
    )
    p.add_argument("--out", default=S, help="output directory (default: runs/eval)")
    p.add_argument(
        "--engine",
        choices=["vllm", "hf"],
        default=S,
        help="rollout engine: vllm, or hf (transformers.generate) (default: vllm)",
    )
    # the old name of --engine: accepted with a deprecation warning, hidden from --help
    p.add_argument("--backend", choices=["vllm", "hf"], default=S, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=S, help="samples per problem (default: per suite)")
    p.add_argument("--temperature", type=float, default=S, help="default: per suite")
    p.add_argument("--top-p", type=float, default=S, help="default: per suite")
    p.add_argument("--top-k", type=int, default=S, help="-1 = off (default: per suite)")
    p.add_argument("--max-tokens", type=int, default=S, help="new tokens (default: per suite)")
    p.add_argument(
        "--data-dir",
        default=S,
        help="directory with the benchmark files (default: those shipped in eval/data; "
        "'hub': download from the Hugging Face hub)",
    )
    p.add_argument("--limit", type=int, default=S, help="first N problems of each suite")
    p.add_argument("--seed", type=int, default=S, help="sampling seed (default: 0)")
    p.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        default=S,
        help="feed raw prompt text instead of the tokenizer's chat template",
    )
    p.add_argument("--system-prompt", default=S, help="system message (default: none)")
    p.add_argument(
        "--chat-template-kwargs",
        type=_json_object,
        default=S,
        help="JSON object passed to the chat template, e.g. '{\"enable_thinking\": false}'",
    )
    p.add_argument(
        "--prompt-template",
        default=S,
        help=f"math prompt: {', '.join(PROMPT_TEMPLATES)} or a string with "
        "{prompt} (default: per suite; the old {problem} is deprecated)",
    )
    p.add_argument(
        "--keep-thinking",
        dest="strip_thinking",
        action="store_false",
        default=S,
        help="score IF responses including their <think> block",
    )
    p.add_argument(
        "--soft-thinking",
        action="store_true",
        default=S,
        help="soft-thinking decoding (SofT-GRPO): while thinking, feed Gumbel-weighted top-k "
        "embedding mixtures; the answer after </think> is sampled with the flags above "
        "(implies --engine hf)",
    )
    p.add_argument("--soft-top-k", type=int, default=S, help="k of each mixture (default 5)")
    p.add_argument("--soft-top-p", type=float, default=S, help="soft-phase top-p (default 0.95)")
    p.add_argument(
        "--soft-tau-g", type=float, default=S, help="Gumbel-softmax temperature (default 0.1)"
    )
    p.add_argument(
        "--soft-noise-scale", type=float, default=S, help="Gumbel noise scale (default 1; 0 = off)"
    )
    p.add_argument(
        "--soft-temperature", type=float, default=S, help="soft-phase temperature (default 1)"
    )
    p.add_argument(
        "--abstain",
        default=S,
        metavar="HEAD",
        help="dynamic abstention with this value head (head.safetensors from rlvr "
        "abstain-train; implies --engine hf): reports coverage, selective accuracy, tokens "
        "saved against the same seeds without abstention, utility, the baselines never / "
        "pre- / post-generation and curves over the threshold",
    )
    p.add_argument(
        "--threshold", type=float, default=S, help="abstain when V < c (default: the sidecar's)"
    )
    p.add_argument(
        "--r-abstain",
        type=float,
        default=S,
        help="abstention reward r for the utility (default: c)",
    )
    p.add_argument(
        "--abstain-min-tokens", type=int, default=S, help="tokens before the gate may abstain"
    )
    p.add_argument("--dtype", default=S, help="float32 | bfloat16 | float16 | auto")
    p.add_argument("--max-model-len", type=int, default=S, help="engine context length")
    p.add_argument(
        "--gpu-memory-utilization", type=float, default=S, help="vLLM on GPU (default 0.85)"
    )
    p.add_argument("--kv-cache-gib", type=int, default=S, help="vLLM on CPU (default 4)")
    p.add_argument("--trust-remote-code", action="store_true", default=S)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=S,
        help="problems per generate call (results are saved after each)",
    )
    p.add_argument("--score-workers", type=int, default=S, help="scoring processes (default 2)")
    p.add_argument(
        "--score-timeout",
        dest="score_timeout_s",
        type=float,
        default=S,
        help="seconds per scoring call (default 5)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        default=S,
        help="discard samples of an earlier run in --out instead of resuming",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True)
    p.add_argument(
        "--oracle",
        action="store_true",
        default=False,
        help="run the scorer self-checks (no model) and exit non-zero on failure",
    )
    return p


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def load_recipe_args(args: argparse.Namespace) -> EvalRecipe:
    """The eval section from the recipe file, the dotted overrides and the flags."""
    items = list(getattr(args, "items", []) or [])
    files = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    config = getattr(args, "config", None)
    if config:
        files.insert(0, config)
    if len(files) > 1:
        raise RecipeError(
            f"one recipe file at most, got {', '.join(map(repr, files))} "
            "(overrides look like key.sub=value)"
        )
    tree, source = read_tree(files[0] if files else None)
    for text in overrides:
        keys, value = parse_override(text)
        try:
            apply_override(tree, keys, value)
        except (IndexError, ValueError) as e:
            raise RecipeError(f"override '{text}': {e}") from e
    where = source if files else "command line"
    try:
        tree = renamed_key(normalize_keys(tree), "backend", "engine", where)
    except ValueError as e:
        raise RecipeError(str(e)) from e
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    if "backend" in flags:  # --backend, the old name of --engine
        engine = flags.pop("backend")
        if flags.get("engine", engine) != engine:
            raise RecipeError(
                f"--engine {flags['engine']} and --backend {engine} disagree: pass --engine "
                "only (--backend is its deprecated name)"
            )
        flags["engine"] = engine
        _warn_once("--backend is deprecated: use --engine (same values)")
    tree.update(flags)
    require_model(tree)
    return validate_tree(tree, where, EvalRecipe)


def load_settings(args: argparse.Namespace) -> tuple[EvalSettings, dict[str, Any]]:
    """The :class:`EvalSettings` of the command line (see :func:`load_recipe_args`)."""
    return load_recipe_args(args), {"progress": args.progress}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.oracle:
        from eval.oracle import main as oracle_main

        oracle_args = []
        if getattr(args, "data_dir", None):
            oracle_args += ["--data-dir", args.data_dir]
        if getattr(args, "suites", None):
            oracle_args += ["--suites", args.suites]
        if getattr(args, "out", None):
            oracle_args += ["--out", args.out]
        return oracle_main(oracle_args)
    settings = None
    try:
        recipe = load_recipe_args(args)
        if args.print_recipe:
            import yaml

            print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
            return 0
        settings = recipe
        _check_inputs(settings)
        from rlvr.console import log_to_file

        log_to_file(settings.out)  # third-party warnings go there, not to the terminal
        summary = run_eval(settings, progress=args.progress)
    except (DataError, ResumeError, ValueError, FileNotFoundError, KeyError) as e:
        print(f"rlvr eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {settings.out}" if settings is not None else ""
        print(
            f"rlvr eval: interrupted; finished samples are kept{where}: run the same command "
            "to resume",
            file=sys.stderr,
        )
        return 130
    _print_summary(summary, settings)
    return 0


def _check_inputs(settings: EvalSettings) -> None:
    """Fail in a second, naming the flag, on a model directory or data directory that cannot
    work (before any suite, tokenizer or engine loads)."""
    from rlvr.preflight import check_model_path

    check_model_path(settings.model, "--model")
    if settings.data_dir is not None and settings.data_dir != "hub":
        d = Path(settings.data_dir).expanduser()
        if not d.is_dir():
            raise FileNotFoundError(f"--data-dir {settings.data_dir!r}: no such directory")
        if not any(d.iterdir()):
            raise FileNotFoundError(
                f"--data-dir {settings.data_dir!r} is empty; put the benchmark files there "
                "or leave --data-dir out to use the files shipped in eval/data "
                "(--data-dir hub downloads them from the Hugging Face hub)"
            )


def _print_summary(summary: dict[str, Any], settings: EvalSettings) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"rlvr eval: {summary['model']} ({summary_engine(summary)})")
    for col in ("suite", "problems", "n", "metric", "value", "pass@n", "mean tok", "trunc %"):
        table.add_column(col, overflow="fold")
    for name, s in summary["suites"].items():
        m = s["metrics"]
        value = s["headline_value"]
        pass_n = m.get(f"pass@{m['n']}")
        table.add_row(
            name,
            str(m["num_problems"]),
            str(m["n"]),
            s["headline"].replace("_level_", " "),
            f"{100 * value:.1f}" if value is not None else "–",
            f"{100 * pass_n:.1f}" if pass_n is not None else "–",
            f"{m['mean_tokens']:.0f}",
            f"{100 * m['truncation_rate']:.1f}",
        )
    console.print(table)
    for name, s in summary["suites"].items():
        st = s["settings"]
        console.print(
            f"  {name}: temperature {st['temperature']:g}, top_p {st['top_p']:g}, "
            f"top_k {st['top_k']}, max_tokens {st.get('max_tokens_effective', st['max_tokens'])}, "
            f"template {st['prompt_template']}"
        )
    soft = settings.soft_params()
    if soft is not None:
        console.print(
            f"  soft thinking: k {soft.top_k}, top_p {soft.top_p:g}, tau_g {soft.tau_g:g}, "
            f"noise {soft.noise_scale:g}, temperature {soft.temperature:g}"
        )
    for name, s in summary["suites"].items():
        if s.get("abstention"):
            _print_abstention(console, name, s["abstention"])
    tps = summary["timing"]["tokens_per_second"]
    console.print(
        f"generated {summary['timing']['generated_tokens']} tokens"
        + (f" at {tps:.1f} tokens/s" if tps else " (all samples resumed)")
        + f"; outputs in {settings.out}/ (summary.json, results.md, samples/)"
    )


def _print_abstention(console: Any, suite: str, ab: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{suite}: abstention at c = {ab['threshold']:.3f}, r = {ab['r_abstain']:.3f}"
    )
    for col in ("rule", "coverage", "sel. acc", "tokens saved", "utility", "abst. prec."):
        table.add_column(col, justify="right")

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    rows = [("gated run (measured)", ab["gated"])]
    rows += [(f"{k} (replayed)", v) for k, v in ab["rules"].items()]
    for label, m in rows:
        table.add_row(
            label,
            pct(m["coverage"]),
            pct(m["selective_accuracy"]),
            pct(m["tokens_saved"]),
            f"{m['utility']:.3f}",
            pct(m["abstention_precision"]),
        )
    console.print(table)
    console.print(
        f"  gated tokens equal to the full run's up to the gate: "
        f"{100 * ab['gated_matches_full']:.1f} % of samples"
    )
