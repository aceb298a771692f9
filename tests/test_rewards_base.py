"""rewards.base: registry, loading of custom rewards, spec validation, composition."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rewards.base import (
    call_reward,
    group_reward,
    load_target,
    parse_specs,
    register_reward,
    registered_rewards,
    reward_info,
    weighted_total,
)


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_builtins_registered() -> None:
    names = registered_rewards()
    for n in ("math", "format", "overlong", "length_penalty", "compression", "lc_r1", "effort"):
        assert n in names
    specs = parse_specs([{"name": "math"}, {"name": "compression"}, {"name": "effort"}])
    assert [s.info.level for s in specs] == ["sample", "group", "group"]
    assert specs[2].info.stateful
    assert "components" in specs[1].runtime_kwargs and "num_tokens" in specs[1].runtime_kwargs


def test_file_and_module_targets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "my_rewards.py",
        """
        def short(completion, example, max_chars=10):
            return float(len(completion) <= max_chars)
        """,
    )
    spec = parse_specs([{"name": f"{path}:short", "params": {"max_chars": 3}, "weight": 2}])[0]
    assert spec.key == "short" and spec.weight == 2.0 and spec.target == f"{path}:short"
    fn = load_target(spec.target)
    assert call_reward(fn, spec, {"completion": "abc", "example": {}}) == (1.0, None)
    assert call_reward(fn, spec, {"completion": "abcd", "example": {}}) == (0.0, None)
    mod = parse_specs([{"name": "rewards.math:math_accuracy", "key": "acc"}])[0]
    assert mod.key == "acc" and mod.target == "rewards.math:math_accuracy"


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"name": "no_such_reward"}, ["rewards[0].name", "unknown reward"]),
        ({"name": "mathh"}, ["rewards[0].name", "did you mean 'math'"]),
        ({"name": "rewards.math:nope"}, ["rewards[0].name", "no attribute 'nope'"]),
        ({"name": "no_such_pkg_xyz.mod:fn"}, ["rewards[0].name", "No module named"]),
        ({"name": "/nonexistent/dir/r.py:fn"}, ["rewards[0].name", "does not exist"]),
        ({"name": "math", "params": {"bogus": 1}}, ["rewards[0].params", "bogus"]),
        ({"name": "math", "weight": "high"}, ["rewards[0].weight"]),
        ({"name": "math", "params": [1]}, ["rewards[0].params"]),
        ({"name": "math", "extra": 1}, ["rewards[0]", "unknown field"]),
        ({"name": ""}, ["rewards[0].name"]),
        ({"name": "overlong"}, ["rewards[0].params", "max_len"]),
        (
            {"name": "overlong", "params": {"max_len": 100, "cache_len": 200}},
            ["rewards[0].params", "cache_len"],
        ),
        ({"name": "compression", "params": {"mastery": 0}}, ["rewards[0].params", "mastery"]),
        ({"name": "overlong", "params": {"num_tokens": 3}}, ["rewards[0].params", "reserved"]),
    ],
)
def test_bad_specs_name_the_key(spec: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        parse_specs([spec])
    for frag in fragments:
        assert frag in str(err.value)


def test_wrong_signature_and_duplicates(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.py", "def one_arg(x):\n    return 1.0\n")
    with pytest.raises(ValueError, match=r"rewards\[1\]\.name.*Expected fn\(completion"):
        parse_specs([{"name": "math"}, {"name": f"{path}:one_arg"}])
    with pytest.raises(ValueError, match=r"rewards\[1\]\.key.*also used by rewards\[0\]"):
        parse_specs([{"name": "math"}, {"name": "math"}])
    assert len(parse_specs([{"name": "math"}, {"name": "math", "key": "math2"}])) == 2
    with pytest.raises(ValueError, match="rewards: expected a list"):
        parse_specs({"name": "math"})  # type: ignore[arg-type]


def test_register_reward_rules(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "plug.py",
        """
        from rewards.base import register_reward, group_reward

        @register_reward("test_plug_len")
        def plug_len(completion, example):
            return float(len(completion))

        @group_reward
        def rank(completions, example):
            return [float(i) for i in range(len(completions))]
        """,
    )
    fn = load_target(f"{path}:plug_len")
    assert registered_rewards()["test_plug_len"] == f"{path}:plug_len"
    register_reward("test_plug_len", fn)  # same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_plug_len", load_target("rewards.math:math_accuracy"))
    with pytest.raises(ValueError, match="module-level"):
        register_reward("test_lambda", lambda c, e: 0.0)
    spec = parse_specs([{"name": "test_plug_len"}, {"name": f"{path}:rank"}])
    assert spec[1].is_group
    out = call_reward(
        load_target(spec[1].target), spec[1], {"completions": ["a", "b"], "example": {}}
    )
    assert out == [(0.0, None), (1.0, None)]


def test_group_reward_marker_and_result_checks() -> None:
    @group_reward
    def g(completions: list[str], example: dict) -> list[float]:
        return [1.0]

    assert reward_info(g).level == "group" and not reward_info(g).stateful


def test_dict_results_and_weighted_total() -> None:
    from rewards.base import normalize_group_result, normalize_sample_result

    assert normalize_sample_result({"a": 1, "b": 0.5}) == (1.5, {"a": 1.0, "b": 0.5})
    assert normalize_sample_result(True) == (1.0, None)
    for bad in (float("nan"), "1", None, {}):
        with pytest.raises((TypeError, ValueError)):
            normalize_sample_result(bad)
    with pytest.raises(ValueError, match="2 values for 3"):
        normalize_group_result([1.0, 2.0], 3)
    total = weighted_total({"a": [[1.0, 0.0]], "b": [[0.5, 2.0]]}, {"a": 1.0, "b": -2.0})
    assert total == [[0.0, -4.0]]


def test_rewards_defined_in_main_are_rejected() -> None:
    def in_main(completion: str, example: dict) -> float:
        return 1.0

    in_main.__module__ = "__main__"
    in_main.__qualname__ = "in_main"
    with pytest.raises(ValueError, match="__main__"):
        register_reward("test_in_main", in_main)
