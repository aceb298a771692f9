"""Where the ZeRO tests find DeepSpeed: in the venv itself (``pip install ".[deepspeed]"``) or
in the copy scripts/setup.sh installs beside it (``<venv>/deepspeed``), which only the tests'
worker processes put on their PYTHONPATH. (Installed in the venv, every process importing
transformers' generation code would import deepspeed too: +124 MiB resident memory.)"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

SITE = Path(sys.prefix) / "deepspeed"


def available() -> bool:
    return importlib.util.find_spec("deepspeed") is not None or (SITE / "deepspeed").is_dir()


def pythonpath(*paths: str | Path) -> str:
    """``paths``, the side copy when there is one, then the caller's PYTHONPATH."""
    parts = [str(p) for p in paths]
    if (SITE / "deepspeed").is_dir():
        parts.append(str(SITE))
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)
