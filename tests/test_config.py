"""Recipe schema: loading, overrides and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.config import RecipeError, dump_recipe, load_recipe

BASE = """\
name: t
model:
  path: /some/model
train:
  steps: 3
  lr: 1.0e-4
rewards:
  - name: math
    weight: 1.0
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    return p


def test_loads_with_defaults(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, BASE))
    assert r.train.steps == 3 and r.train.lr == 1e-4
    assert r.rollout.group_size == 8 and r.algo.advantage == "grpo"
    assert r.rewards[0].name == "math"


def test_unknown_key_names_file_path_and_close_match(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("  lr: 1.0e-4", "  lrr: 1.0e-4"))
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert str(p) in msg and "train.lrr" in msg and "did you mean 'train.lr'" in msg


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("steps: 3", "steps: many"))
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "'train.steps'" in str(e.value) and "'many'" in str(e.value)


def test_missing_file_and_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="missing required key 'model'"):
        load_recipe(write(tmp_path, "name: x\n"))


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "model: [unclosed\n"))


def test_dotted_overrides_parse_yaml_values(tmp_path: Path) -> None:
    r = load_recipe(
        write(tmp_path, BASE),
        [
            "train.steps=7",
            "rollout.engine=vllm",
            "rewards.0.weight=2.5",
            "algo.kl_coef=0.01",
            "train.max_grad_norm=null",
            "data.arithmetic.operations=['+','*']",
        ],
    )
    assert r.train.steps == 7 and r.rollout.engine == "vllm"
    assert r.rewards[0].weight == 2.5 and r.algo.kl_coef == 0.01
    assert r.train.max_grad_norm is None
    assert r.data.arithmetic.operations == ["+", "*"]


def test_bad_override_is_checked_like_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"unknown key 'rollout.groupsize'.*rollout.group_size"):
        load_recipe(write(tmp_path, BASE), ["rollout.groupsize=4"])
    with pytest.raises(RecipeError, match="must look like key.sub=value"):
        load_recipe(write(tmp_path, BASE), ["train.steps"])
    with pytest.raises(RecipeError, match="'rollout.engine'"):
        load_recipe(write(tmp_path, BASE), ["rollout.engine=sglang"])


def test_data_source_needs_location(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="data.path is required"):
        load_recipe(write(tmp_path, BASE), ["data.source=file"])


def test_resolved_recipe_round_trips(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, BASE), ["train.steps=9"])
    out = tmp_path / "run" / "recipe.yaml"
    dump_recipe(r, out)
    assert load_recipe(out) == r


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_recipes_validate(recipe: Path) -> None:
    from rlvr.pipeline import PipelineRecipe, stage_kind
    from rlvr.stages.registry import STAGES

    def schema_of(kind: str) -> type:
        return stage_kind(kind)[0]

    kind = recipe.stem.split("_")[0]
    kind = {"abstention": "abstain-train"}.get(kind, kind)  # abstention_*.yaml
    if kind == "eval":  # `rlvr eval` recipes
        from eval.config import EvalRecipe

        load_recipe(recipe, schema=EvalRecipe)
    elif kind == "pipeline":
        pipe = load_recipe(recipe, schema=PipelineRecipe)  # `rlvr pipeline` recipes
        for stage in pipe.stages:
            path = Path(__file__).parents[1] / stage.recipe
            load_recipe(path, stage.overrides, schema=schema_of(stage.kind))
    else:  # `rlvr sft|redi|specs|int|abstain-train` recipes by their prefix, RL otherwise
        load_recipe(recipe, schema=schema_of(kind if kind in STAGES.names() else "train"))
