"""`rlvr abstain-train` end to end and `rlvr eval --abstain` on the bundled quickstart model
(2-digit addition, about a quarter of samples correct: both labels occur)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvr.cli import main

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "quickstart"
SMALL = [
    f"model.path={MODEL}",
    "sampling.num_problems=24",
    "sampling.max_new_tokens=16",
    "chunk_size=8",
    "head.epochs=2",
    "head.batch_size=16",
    "threads=1",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("abstain")
    rc = main(
        ["abstain-train", str(REPO / "recipes" / "abstention_arithmetic_cpu.yaml"),
         f"output_dir={out}", *SMALL]
    )  # fmt: skip
    assert rc == 0
    return out / "abstention_arithmetic"


def test_abstain_train_writes_head_sidecar_and_cache(trained: Path) -> None:
    from rlvr.abstention import load_head

    summary = json.loads((trained / "summary.json").read_text())
    c = summary["counts"]
    assert c["rollouts"] == 24 * 4 == c["train_rollouts"] + c["val_rollouts"] + c["calib_rollouts"]
    assert 0 < c["correct"] < c["rollouts"]
    assert len([line for line in (trained / "metrics.jsonl").read_text().splitlines()]) == 2
    head, meta = load_head(trained / "head.safetensors")
    assert head.hidden_size == 128 and meta["threshold"] == pytest.approx(0.2)
    xs, ys = meta["calibration"]["x"], meta["calibration"]["y"]
    assert xs == sorted(xs) and ys == sorted(ys) and all(0 <= y <= 1 for y in ys)
    rules = summary["calibration"]["rules"]
    assert rules["never"]["coverage"] == 1.0 and rules["never"]["tokens_saved"] == 0.0
    assert summary["model_dir"] == str(MODEL)
    chunks = sorted((trained / "rollouts").glob("chunk_*.jsonl"))
    assert len(chunks) == 3 and len(list((trained / "rollouts").glob("*.safetensors"))) == 3
    rows = [json.loads(line) for line in chunks[0].read_text().splitlines()]
    assert {"group", "correct", "length", "text", "tensor"} <= set(rows[0])


def test_abstain_train_resumes_from_cached_chunks(trained: Path, monkeypatch) -> None:
    from rlvr.rollout import HFEngine

    out = trained.parent
    calls: list[int] = []
    real = HFEngine.generate

    def counting(self, prompts, sp):
        calls.append(len(prompts))
        return real(self, prompts, sp)

    monkeypatch.setattr(HFEngine, "generate", counting)
    (trained / "rollouts" / "chunk_00001.jsonl").unlink()  # as if killed during chunk 2
    args = ["abstain-train", str(REPO / "recipes" / "abstention_arithmetic_cpu.yaml"),
            f"output_dir={out}", *SMALL]  # fmt: skip
    assert main(args) == 0
    assert calls == [8]  # only the missing chunk was sampled again
    calls.clear()
    assert main(args) == 0
    assert calls == []


def test_eval_abstain_reports_gated_run_and_baselines(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    rc = main(
        ["eval", "--model", str(MODEL), "--suites", "arithmetic", "--limit", "6", "--n", "2",
         "--temperature", "1.0", "--max-tokens", "16", "--abstain",
         str(trained / "head.safetensors"), "--threshold", "0.3", "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["engine"] == "hf"
    ab = s["suites"]["arithmetic"]["abstention"]
    assert ab["threshold"] == 0.3 and ab["r_abstain"] == 0.3
    assert ab["gated_matches_full"] == 1.0  # same seeds: identical up to the gate
    # the gated run's abstentions are what the dynamic rule gives on the full run's traces
    for key in ("coverage", "tokens_saved", "utility"):
        assert ab["gated"][key] == pytest.approx(ab["rules"]["dynamic"][key])
    assert ab["rules"]["never"]["coverage"] == 1.0
    assert [p["threshold"] for p in ab["curves"]["dynamic"]][:2] == [0.05, 0.1]
    rows = [json.loads(x) for x in (out / "samples" / "arithmetic.jsonl").read_text().splitlines()]
    for row in rows:
        assert len(row["value_trace"]) == row["num_tokens"]
        if row["abstained"]:
            assert row["abstain_tokens"] == row["abstain_step"] + 1 <= row["num_tokens"]
            assert min(row["value_trace"][: row["abstain_step"]] or [1.0]) >= 0.3
            assert row["value_trace"][row["abstain_step"]] < 0.3
        else:
            assert row["abstain_tokens"] == row["num_tokens"]
            assert min(row["value_trace"]) >= 0.3
    assert "Abstention on arithmetic" in (out / "results.md").read_text()


def test_eval_abstain_refuses_vllm(trained: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        ["eval", "--model", str(MODEL), "--suites", "arithmetic", "--engine", "vllm",
         "--abstain", str(trained / "head.safetensors"), "--out", str(tmp_path / "e")]
    )  # fmt: skip
    assert rc == 2
    assert "only the hf engine" in capsys.readouterr().err
    rc = main(
        ["eval", "--model", str(MODEL), "--suites", "arithmetic",
         "--abstain", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "e")]
    )  # fmt: skip
    assert rc == 2
    assert "missing.safetensors" in capsys.readouterr().err
