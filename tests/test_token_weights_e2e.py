"""Token-weight recipes end to end on the tiny model (hf engine): every CPU recipe runs and
logs its gate fractions and the entropy observability metrics, the TensorBoard token-entropy
histogram is written every step, whole-batch selections make the gradient independent of the
micro-batch size, and the real-model recipes validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_overrides import TINY_RUN_OVERRIDES, run_cpu_recipe

from rlvr.config import load_recipe
from rlvr.metrics import entropy_metrics
from rlvr.trainer import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# the tiny model rarely answers right: a dense reward (fraction of digits) gives advantages
DENSE = (
    f"rewards=[{{name: math}}, {{name: '{FIXTURES / 'rewards_fixture.py'}:digit_fraction',"
    " key: digits}]"
)
TINY = [*TINY_RUN_OVERRIDES, DENSE]
# recipe stem -> (rule name, a fraction metric it must log)
METHODS = {
    "high_entropy_only": ("high_entropy_only", "kept_fraction"),
    "clip_cov": ("clip_cov", "detached_fraction"),
    "kl_cov": ("kl_cov", "penalized_fraction"),
    "egspo": ("egspo_gate", "gated_fraction"),
    "steer": ("steer", "attenuated_fraction"),
}


def run(name: str, model_dir: Path, out: Path, *extra: str) -> tuple[list[dict], Trainer]:
    return run_cpu_recipe(name, model_dir, out, *extra, tiny=TINY)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_cpu_recipe_runs_and_logs_gate_fractions(
    name: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    rule, frac = METHODS[name]
    extra = {"steer": ["logging.tensorboard=true"], "egspo": ["warmup=null"]}.get(name, [])
    rows, trainer = run(name, tiny_model_dir, tmp_path, *extra)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= r[f"token_weights/{rule}/{frac}"] <= 1.0
        assert "entropy/p50" in r and ("entropy/wrong" in r or "entropy/correct" in r)
        assert r["entropy/p10"] <= r["entropy/p50"] <= r["entropy/p90"] <= r["entropy/max"]
        assert r["grad_norm"] >= 0.0
    if name == "high_entropy_only":  # q = 0.2 over the whole batch: ceil(0.2 n) / n
        assert all(0.2 <= r["token_weights/high_entropy_only/kept_fraction"] < 0.3 for r in rows)
    if name == "steer":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(
            str(trainer.run_dir / "tensorboard"), size_guidance={"histograms": 0}
        )
        acc.Reload()
        assert "entropy/tokens" in acc.Tags()["histograms"]
        assert [e.step for e in acc.Histograms("entropy/tokens")] == [1, 2]


def test_whole_batch_rules_make_gradient_micro_batch_invariant(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rules = (
        "algo.token_weights=[{name: high_entropy_only, params: {q: 0.5}},"
        " {name: clip_cov, params: {ratio: 0.1, lb: 0.0}},"
        " {name: egspo_gate, params: {q: 0.3}}, {name: steer}]"
    )
    grads = {}
    for micro in (8, 3):
        recipe = load_recipe(
            RECIPES / "grpo_arithmetic_cpu.yaml",
            [
                f"model.path={tiny_model_dir}",
                f"output_dir={tmp_path / str(micro)}",
                *TINY,
                rules,
                f"train.micro_batch_size={micro}",
            ],
        )
        trainer = Trainer(recipe)
        seen: list[torch.Tensor] = []
        step = trainer.optimizer.step

        def record_then_step(*args, _step=step, _seen=seen, _trainer=trainer, **kwargs):
            _seen.append(torch.cat([p.grad.flatten() for p in _trainer.model.parameters()]))
            return _step(*args, **kwargs)

        trainer.optimizer.step = record_then_step  # type: ignore[method-assign]
        try:
            metrics = trainer.train_step(1)
        finally:
            trainer.close()
        assert metrics["token_weights/high_entropy_only/kept_fraction"] >= 0.5
        assert metrics["token_weights/clip_cov/detached_fraction"] > 0
        grads[micro] = seen[0]
    assert grads[8].abs().max() > 0
    assert torch.allclose(grads[8], grads[3], rtol=1e-4, atol=1e-7)


def test_entropy_metrics_split_correct_and_wrong_by_hand() -> None:
    ent = torch.tensor([[1.0, 3.0, 9.0], [2.0, 0.0, 0.0], [4.0, 4.0, 4.0], [0.5, 1.5, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    correct = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # rows 0 and 2 correct
    m = entropy_metrics(ent, mask, correct)
    assert m["entropy/correct"] == pytest.approx((1 + 3 + 4 * 3) / 5)
    assert m["entropy/wrong"] == pytest.approx((2 + 0.5 + 1.5) / 3)
    assert m["entropy/max"] == 4.0  # the masked 9.0 is not a token
    assert m["entropy/p50"] == pytest.approx(2.5)  # 0.5 1 1.5 2 | 3 4 4 4
    assert "entropy/correct" not in entropy_metrics(ent, mask, torch.zeros(4))
    assert entropy_metrics(ent, torch.zeros_like(mask)) == {}


def test_real_model_recipes_validate() -> None:
    for name, (rule, _) in METHODS.items():
        recipe = load_recipe(RECIPES / f"{name}_math.yaml")
        assert recipe.model.path and recipe.data.path
        assert [t.name for t in recipe.algo.token_weights] == [rule]
    assert load_recipe(RECIPES / "kl_cov_math.yaml").algo.updates_per_batch == 2


def test_cure_recipe_branches_in_stage_1_then_samples_plainly(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows, trainer = run(
        "cure",
        tiny_model_dir,
        tmp_path,
        "rollout.cure.stage1_steps=1",
        "rollout.cure.branches=2",
        "algo.filters=[]",
    )
    assert [r["step"] for r in rows] == [1, 2]
    first, second = rows
    assert first["cure/stage"] == 1.0 and second["cure/stage"] == 2.0
    assert first["cure/branched"] == 2 * 4 * 2  # prompts * G * branches
    assert 0.0 <= first["cure/fallback_fraction"] <= 1.0
    assert "entropy/p50" in first and first["grad_norm"] >= 0.0


def test_cure_math_recipe_validates() -> None:
    recipe = load_recipe(RECIPES / "cure_math.yaml")
    assert recipe.rollout.cure is not None and recipe.rollout.cure.stage1_steps
    assert [f.name for f in recipe.algo.filters] == ["dynamic_sampling"]


def test_egspo_three_stages_in_one_recipe(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Stage 1 (SFT warm-up on the worked solutions), then RL from the warmed model with the
    entropy gate; a second run of the same recipe reuses the finished warm-up."""
    import json

    from safetensors.torch import load_file

    from rlvr.stages.warmup import warmup_model

    warm = "warmup={steps: 3, batch_size: 8, lr: 1.0e-3, max_examples: 32}"
    rows, trainer = run("egspo", tiny_model_dir, tmp_path, warm, "train.steps=1")
    out = trainer.run_dir / "warmup_model"
    assert json.loads((out / "warmup_report.json").read_text())["steps"] == 3
    assert trainer.recipe.model.path == str(out)
    assert 0.0 < rows[0]["token_weights/egspo_gate/gated_fraction"] < 1.0
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # SFT moved the weights
    stamp = (out / "warmup_report.json").stat().st_mtime
    assert warmup_model(trainer.recipe) == out  # a resumed run reuses it ...
    assert (out / "warmup_report.json").stat().st_mtime == stamp  # ... without redoing it
