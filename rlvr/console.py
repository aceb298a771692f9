"""The terminal: rlvr's own lines and real problems on screen, everything else in a log file.

A run prints what a person needs (its own ``rlvr`` log lines, progress, the final table, and
any third-party ERROR) and sends the rest — library warnings, vLLM's start-up notes, Python
``warnings`` — to ``<run dir>/log.txt``. ``rlvr -v`` shows everything on screen as well.

* One :class:`rich.console.Console` on stderr (:func:`console`) carries the log lines and every
  progress bar, so a log line is printed above a live bar, never through it.
* :func:`quiet_third_party` runs before the heavy imports: vLLM is told not to install its own
  stdout handler (``VLLM_CONFIGURE_LOGGING=0``, so its records reach the root logger and the
  file), the hub / transformers / tqdm download and load bars are switched off, torch's C++
  warnings are limited to errors (``TORCH_CPP_LOG_LEVEL``), and Python ``warnings`` become log
  records (``logging.captureWarnings``).
* :func:`log_to_file` adds the run directory's log file once it is known, and routes
  transformers' own stderr handler into logging (:func:`route_transformers_logging`).
* :func:`fmt` rounds numbers for printed tables: shares as percentages with one decimal, other
  values to 3-4 significant digits.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_CONSOLE: Any = None
_FILE_HANDLER: logging.Handler | None = None
_VERBOSE = False

LOG_FILE = "log.txt"


def console() -> Any:
    """The shared rich console (stderr) for log lines, progress bars and status spinners."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True)
    return _CONSOLE


def quiet_third_party(verbose: bool = False) -> None:
    """Keep third-party chatter off the terminal (see the module docstring). Call it before
    importing torch, transformers or vLLM; it only sets defaults a user has not set."""
    global _VERBOSE
    _VERBOSE = verbose
    defaults = {
        "VLLM_CONFIGURE_LOGGING": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "TQDM_DISABLE": "1",
        "TORCH_CPP_LOG_LEVEL": "ERROR",
    }
    if not verbose:
        for key, value in defaults.items():
            os.environ.setdefault(key, value)
    logging.captureWarnings(True)


class _TerminalFilter(logging.Filter):
    """On screen: rlvr's records at INFO and up, others at ERROR and up (all with -v)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _VERBOSE:
            return True
        own = record.name == "rlvr" or record.name.startswith(("rlvr.", "eval", "rewards"))
        return record.levelno >= (logging.INFO if own else logging.ERROR)


def setup_logging(verbose: bool = False) -> None:
    """Root logging: a rich handler on :func:`console` filtered by :class:`_TerminalFilter`."""
    from rich.logging import RichHandler

    quiet_third_party(verbose)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_rlvr", False):
            root.removeHandler(h)
    handler = RichHandler(
        console=console(),
        show_time=False,
        show_path=False,
        markup=False,
        rich_tracebacks=False,
        log_time_format="%H:%M:%S",
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_TerminalFilter())
    handler._rlvr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("rlvr").setLevel(logging.INFO)
    for name in ("eval", "rewards"):
        logging.getLogger(name).setLevel(logging.INFO)
    if not verbose:
        for name in ("transformers", "vllm", "torch", "datasets", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.WARNING)


def route_transformers_logging() -> None:
    """transformers prints its warnings through a stderr handler of its own (propagation off),
    past the terminal filter; hand its records to the root logger instead (file, and the
    terminal with ``-v``)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()


def log_to_file(directory: str | Path) -> Path:
    """Append every log record (third-party warnings included) to ``directory/log.txt``."""
    global _FILE_HANDLER
    route_transformers_logging()
    path = Path(directory) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if _FILE_HANDLER is not None:
        root.removeHandler(_FILE_HANDLER)
        _FILE_HANDLER.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._rlvr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _FILE_HANDLER = handler
    return path


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """A spinner with ``message`` and the seconds elapsed while a long step without its own
    progress runs (loading a model, building an engine, a held-out eval); it leaves no line
    behind. Log records printed meanwhile go above it (same console)."""
    if not enabled:
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    ) as bar:
        bar.add_task(message, total=None)
        yield


def fmt(key: str, value: Any) -> str:
    """A number for a printed table: accuracy-like shares as a percentage (one decimal),
    seconds with two decimals, counts as integers, other values to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    name = key.rsplit("/", 1)[-1].split(":")[-1].strip()
    share = any(
        t in key
        for t in ("accuracy", "greedy", "pass@", "fraction", "rate", "avg@", "maj@", "coverage")
    )
    if share and 0.0 <= v <= 1.0:
        return f"{100 * v:.1f} %"
    if "time" in key or name.endswith("_s") or name == "step":
        return f"{v:.2f} s" if "time" in key else f"{v:.0f}"
    if v == int(v) and abs(v) < 1e9:
        return f"{int(v)}"
    return f"{v:.4g}"


class StepProgress:
    """A rich progress bar over steps (or nothing), as a context manager yielding ``advance``."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled, self.total, self.start = enabled, total, start
        self._bar: Any = None

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda metrics: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console(),  # the log's console: log lines print above the bar
        )
        self._bar.start()
        task = self._bar.add_task("train", total=self.total, completed=self.start, info="")

        def advance(metrics: dict[str, float]) -> None:
            info = f"reward {metrics.get('reward/mean', 0):.3f}"
            if "accuracy" in metrics:
                info += f"  acc {metrics['accuracy']:.2f}"
            info += f"  len {metrics.get('length/mean', 0):.0f}  {metrics.get('time/step', 0):.1f}s/step"
            self._bar.update(task, advance=1, info=info)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
