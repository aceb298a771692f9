"""scripts/bench_generate.py on the tiny model: the engine and plain generate draw the same
samples (the script's own check), and --json holds the ratio and the load average."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_generate", ROOT / "scripts" / "bench_generate.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_generate"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_bench_generate_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    b = _load()
    out = tmp_path / "gen.json"
    b.main([
        "--model", str(tiny_model_dir), "--prompts", "2", "--n", "2", "--max-tokens", "4",
        "--reps", "2", "--temperature", "0.7", "--top-k", "20", "--with-scores",
        "--json", str(out),
    ])  # fmt: skip
    res = json.loads(out.read_text())
    assert res["batch"] == 4 and res["max_tokens"] == 4 and res["reps"] == 2
    assert 0 < res["generated_tokens"] <= 16
    r = res["rlvr_over_plain"]
    assert r["min"] <= res["ratio"] == r["median"] <= r["max"] and len(r["all"]) == 2
    assert set(res["times_s"]) == {"plain", "rlvr", "scores"}
    assert all(len(v) == 2 and min(v) > 0 for v in res["times_s"].values())
    assert len(res["load_before"]) == 3 and len(res["load_after"]) == 3
