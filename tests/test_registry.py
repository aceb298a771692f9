"""Registries: names and parameters bound at recipe load, one-file plug-ins (package discovery,
``file.py:Class`` / ``pkg.mod:Class``), and a throwaway estimator used from a recipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rlvr.config import RecipeError, load_recipe
from rlvr.registry import Registry

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

ESTIMATOR = textwrap.dedent(
    '''
    """Throwaway estimator: A = 2 (r - mean r)."""
    import torch

    from rlvr.algos.advantages import AdvantageEstimator


    class Doubled(AdvantageEstimator):
        def __init__(self, factor: float = 2.0) -> None:
            if factor <= 0:
                raise ValueError("factor must be > 0")
            self.factor = factor

        def __call__(self, rewards, context=None):
            return self.factor * (rewards - rewards.mean(dim=1, keepdim=True))
    '''
)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algo.advantage=grpoo", "'algo.advantage': unknown advantage estimator 'grpoo' (did"),
        ("algo.advantage_params.kk=1", "'algo.advantage_params.kk': advantage estimator 'grpo'"),
        ("algo.filters=[{name: dynamic_samplin}]", "(did you mean 'dynamic_sampling'?)"),
        (
            "algo.token_weights=[{name: steer, params: {weight_mn: 0.8}}]",
            "'algo.token_weights.0.params.weight_mn': token-weight rule 'steer' has no "
            "parameter 'weight_mn' (did you mean 'weight_min'?)",
        ),
        ("algo.token_weights=[{name: clip_cov, params: {ratio: -1}}]", "token_weights.0.params"),
        ("rewards=[{name: mathh}]", "(did you mean 'math'?)"),
    ],
)
def test_bad_names_and_params_fail_at_load(override: str, expected: str) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(RECIPES / "quickstart.yaml", [override])
    assert expected in str(err.value)


def test_cli_exits_2_without_traceback_before_loading_a_model() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rlvr", "train", str(RECIPES / "quickstart.yaml")]
        + ["algo.advantage=grpoo", "model.path=/nonexistent/model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "did you mean 'grpo'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_new_file_in_the_package_is_found_without_an_import_line(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "myalgos"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "doubled.py").write_text(
        "from tests_registry_target import REG\n"
        "@REG.register('doubled')\nclass Doubled:\n    def __init__(self, f=2):\n        self.f = f\n"
    )
    reg = Registry("advantage estimator", "myalgos")
    shim = tmp_path / "tests_registry_target.py"
    shim.write_text("REG = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import tests_registry_target

    tests_registry_target.REG = reg
    assert reg.bind("doubled", {"f": 3}, name_field="n", params_field="p").f == 3
    assert reg.names() == ["doubled"]


def test_throwaway_estimator_file_used_from_a_recipe(tmp_path, tiny_model_dir, monkeypatch) -> None:
    path = tmp_path / "my_estimator.py"
    path.write_text(ESTIMATOR)
    target = f"{path}:Doubled"
    with pytest.raises(RecipeError, match="factor must be > 0"):
        load_recipe(
            RECIPES / "quickstart.yaml",
            [f"algo.advantage={target}", "algo.advantage_params.factor=-1"],
        )
    monkeypatch.syspath_prepend(str(tmp_path))  # also reachable as a module target
    from rlvr.algos import build_advantage

    est = build_advantage("my_estimator:Doubled", factor=3.0)
    assert torch.allclose(est(torch.tensor([[1.0, 0.0]])), torch.tensor([[1.5, -1.5]]))

    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe
    from tests.tiny_overrides import TINY_RUN_OVERRIDES

    recipe = load_recipe(
        RECIPES / "grpo_arithmetic_cpu.yaml",
        [
            f"model.path={tiny_model_dir}",
            f"output_dir={tmp_path / 'runs'}",
            f"algo.advantage={target}",
            *TINY_RUN_OVERRIDES,
            "train.steps=1",
        ],
    )
    _, trainer = train_recipe(recipe)
    trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert rows and "loss" in rows[-1]


def test_registry_register_replace_registered_unregister() -> None:
    """The public API stage registration uses (rlvr/stages/registry.py): ``registered`` looks a
    name up without discovery, ``replace=True`` lets a name be registered again with a different
    object, ``unregister`` forgets it."""
    reg = Registry("thing", "rlvr.nonexistent_package")  # discovery would fail: never run
    a, b = object(), object()
    assert reg.registered("x") is None
    assert reg.register("x")(a) is a and reg.register("x")(a) is a  # the same object: fine
    with pytest.raises(ValueError, match="thing 'x' is already registered"):
        reg.register("x")(b)
    assert reg.registered("x") is a
    reg.register("x", replace=True)(b)
    assert reg.registered("x") is b and reg.get("x") is b
    reg.unregister("x")
    reg.unregister("x")  # already gone: no error
    assert reg.registered("x") is None
