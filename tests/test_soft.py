"""SofT-GRPO: soft-token construction, the reparameterised step log-prob (hand-computed
values), its gradient against finite differences on a tiny model, and the soft-thinking
engine's records rebuilding the same inputs."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algos.soft import (
    filtered_probs,
    soft_mixture_weights,
    soft_step,
    soft_step_logprob,
)
from rlvr.rollout import SamplingParams


def _gumbel_density(e: float) -> float:
    return -e - math.exp(-e)


def test_mixture_weights_are_softmax_over_tau() -> None:
    g = torch.tensor([[1.0, 0.5, -2.0]])
    y = soft_mixture_weights(g, 0.5)
    e = [math.exp(2.0), math.exp(1.0), math.exp(-4.0)]
    expected = [v / sum(e) for v in e]
    assert y[0].tolist() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="tau_g"):
        soft_mixture_weights(g, 0.0)


def test_step_logprob_matches_hand_computation() -> None:
    # z = [2, 1, 0, -5], recorded ids [0, 1, 3], g' = [0.5, -3, 1]
    logits = torch.tensor([[2.0, 1.0, 0.0, -5.0]], requires_grad=True)
    ids = torch.tensor([[0, 1, 3]])
    pert = torch.tensor([[0.5, -3.0, 1.0]])
    z = [2.0, 1.0, -5.0]
    s = sum(math.exp(v) for v in z)
    ell = [math.log(math.exp(v) / s + 1e-6) for v in z]  # [-0.3139, -1.3139, -7.31]
    assert ell[2] < -3  # third id left out of the mean
    eps0 = 0.5 - ell[0]  # 0.8139, inside the clamp
    eps1 = max(-1.5, -3.0 - ell[1])  # -1.686 -> clamped to -1.5
    expected = (_gumbel_density(eps0) + _gumbel_density(eps1)) / 2
    logp = soft_step_logprob(logits, ids, pert)
    assert float(logp.detach()) == pytest.approx(expected, abs=1e-5)
    assert float(logp.detach()) == pytest.approx(-2.1194, abs=1e-3)
    # gradient w.r.t. l_0 is (1 - e^{-eps0}) / 2; the clamped id gives none
    logp.backward()
    d_ell0 = (1 - math.exp(-eps0)) / 2
    p = [math.exp(v) / s for v in z]
    # dl_0/dz_j = (p0/(p0+1e-6)) (delta_0j - p_j) over the k ids, 0 outside them
    scale = p[0] / (p[0] + 1e-6)
    expected_grad = [
        d_ell0 * scale * (1 - p[0]),
        -d_ell0 * scale * p[1],
        0.0,
        -d_ell0 * scale * p[2],
    ]
    assert logits.grad[0].tolist() == pytest.approx(expected_grad, abs=1e-5)


def test_step_logprob_temperature_and_at_rollout_noise() -> None:
    # at theta_old, g' = l + g gives eps = g: the log-prob is the mean Gumbel density of g
    logits = torch.tensor([[1.0, 0.2, -0.3, 0.7]])
    ids = torch.tensor([[0, 3, 1]])
    temp = 0.7
    z = logits[0, ids[0]] / temp
    ell = torch.log(torch.softmax(z, -1) + 1e-6)
    g = torch.tensor([0.3, -1.0, 2.5])
    logp = soft_step_logprob(logits, ids, (ell + g)[None], temperature=temp)
    expected = sum(_gumbel_density(float(v)) for v in g) / 3
    assert float(logp) == pytest.approx(expected, abs=1e-5)


def test_filtered_probs_top_k_then_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    p = filtered_probs(logits, 1.0, top_k=4, top_p=0.8)
    # top-4 renorm: [0.5, 0.3, 0.1, 0.06] / 0.96; the mass before 0.1 is 0.8/0.96 < 0.8? no:
    # 0.5/0.96 = 0.521, 0.8/0.96 = 0.833 >= 0.8 so the third token is dropped
    assert p[0].tolist() == pytest.approx([0.625, 0.375, 0.0, 0.0, 0.0], abs=1e-6)


def test_soft_step_construction_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    u = torch.tensor([[math.exp(-math.exp(-0.2)), math.exp(-math.exp(1.0))]])  # g = [0.2, -1.0]
    ids, pert, y = soft_step(logits, u, k=2, top_p=1.0, tau_g=0.5, noise_scale=1.0)
    # top-2 of [0.1, 0.6, 0.3] = ids [1, 2], p~ = [2/3, 1/3]
    g_prime = [math.log(2 / 3 + 1e-6) + 0.2, math.log(1 / 3 + 1e-6) - 1.0]
    assert ids.tolist() == [[1, 2]]  # sorted by g' descending
    assert pert[0].tolist() == pytest.approx(g_prime, abs=1e-5)
    e = [math.exp(v / 0.5) for v in g_prime]
    assert y[0].tolist() == pytest.approx([v / sum(e) for v in e], abs=1e-5)
    # a larger second perturbation reorders: the discrete token is argmax g'
    u2 = torch.tensor([[math.exp(-math.exp(1.0)), math.exp(-math.exp(-2.0))]])  # g = [-1, 2]
    ids2, pert2, _ = soft_step(logits, u2, k=2, top_p=1.0, tau_g=0.5, noise_scale=1.0)
    assert ids2.tolist() == [[2, 1]]
    assert float(pert2[0, 0]) == pytest.approx(math.log(1 / 3 + 1e-6) + 2.0, abs=1e-5)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def soft_engine(tiny_model_dir):
    from rlvr.rollout.soft import SoftThinkingEngine, SoftThinkingParams

    return SoftThinkingEngine.from_pretrained(
        str(tiny_model_dir), soft=SoftThinkingParams(tau_g=0.5)
    )


def _think_prompts(tok, n: int = 3) -> list[list[int]]:
    out = []
    for i in range(n):
        text = tok.apply_chat_template(
            [{"role": "user", "content": f"{i + 3}+{2 * i}="}],
            add_generation_prompt=True,
            tokenize=False,
        )
        out.append(tok(text + "<think>", add_special_tokens=False)["input_ids"])
    return out


def test_engine_records_soft_steps_and_is_seeded_per_sample(soft_engine) -> None:
    prompts = _think_prompts(soft_engine.tokenizer)
    sp = SamplingParams(n=2, temperature=1.0, top_k=5, top_p=0.95, max_tokens=12, seed=3)
    groups = soft_engine.generate(prompts, sp)
    assert [len(g) for g in groups] == [2, 2, 2]
    for c in (c for g in groups for c in g):
        t = c.soft
        assert t is not None and len(t.soft) == len(c.token_ids) == len(c.logprobs)
        for step, tok in enumerate(c.token_ids):
            assert t.topk_ids[step][0] == tok  # the discrete token is ids[argmax g']
            if t.soft[step]:
                assert t.perturbed[step] == sorted(t.perturbed[step], reverse=True)
                assert c.logprobs[step] <= -1.0 + 1e-6  # a mean of Gumbel log-densities
        if soft_engine.think_end_id in c.token_ids:  # everything from </think> on is discrete
            end = c.token_ids.index(soft_engine.think_end_id)
            assert not any(t.soft[end:])
    assert any(any(c.soft.soft) for g in groups for c in g)
    # per-sample seeds: a sample does not depend on its batch mates
    alone = soft_engine.generate(prompts[:1], sp)
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in groups[0]]
    again = soft_engine.generate(prompts, sp)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in groups]


def _batch_tensors(prompts, groups, pad_id):
    from rlvr.batch import RolloutBatch
    from rlvr.soft_policy import soft_from_extras

    batch = RolloutBatch([{}] * len(prompts), prompts, groups, torch.zeros(len(prompts), 2))
    train = batch.to_train_batch(pad_id)  # the soft tensors cross to the learner as extras
    return batch, soft_from_extras(train.extras)


def test_recorded_values_rebuild_the_rollout_inputs(soft_engine) -> None:
    """The learner's log-probs from the stored (ids, g') equal the engine's: same inputs."""
    from rlvr.soft_policy import soft_token_logprobs

    prompts = _think_prompts(soft_engine.tokenizer)
    sp = SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=11)
    groups = soft_engine.generate(prompts, sp)
    batch, soft = _batch_tensors(prompts, groups, soft_engine.pad_id)
    assert soft is not None and bool(soft.mask.any())
    with torch.no_grad():
        logp, _ = soft_token_logprobs(
            soft_engine.model,
            batch.input_ids,
            batch.attention_mask,
            batch.completion_mask,
            soft,
            temperature=1.0,
            soft_temperature=soft_engine.soft.temperature,
        )
    target = batch.completion_mask[:, 1:] > 0
    rollout = batch.rollout_logprobs[:, 1:]
    soft_targets = target & soft.mask[:, 1:]
    assert float((logp - rollout)[soft_targets].abs().max()) < 1e-4
    # discrete positions (after </think>) are ordinary log-probs of softmax(z / T); the engine
    # samples them with top-k / top-p so compare only positions without truncation effects
    # by recomputing without soft inputs being wrong: shuffling g' must change the soft ones
    wrong = soft.rows(torch.arange(soft.mask.shape[0]), soft.mask.shape[1])
    wrong.perturbed = wrong.perturbed.flip(-1)
    with torch.no_grad():
        logp_wrong, _ = soft_token_logprobs(
            soft_engine.model,
            batch.input_ids,
            batch.attention_mask,
            batch.completion_mask,
            wrong,
        )
    assert float((logp_wrong - rollout)[soft_targets].abs().max()) > 1e-2


def test_soft_logprob_gradient_matches_finite_differences(tiny_model_dir, soft_engine) -> None:
    from transformers import AutoModelForCausalLM

    from rlvr.soft_policy import soft_token_logprobs

    prompts = _think_prompts(soft_engine.tokenizer, 2)
    groups = soft_engine.generate(prompts, SamplingParams(n=1, max_tokens=6, seed=5))
    batch, soft = _batch_tensors(prompts, groups, soft_engine.pad_id)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).double()
    # move off theta_old: there, clamped Gumbel noise sits exactly on the clamp's edge (eps = g)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    target = (batch.completion_mask[:, 1:] > 0).double()
    weights = torch.linspace(0.5, 1.5, target.numel(), dtype=torch.float64).view_as(target)

    def objective() -> torch.Tensor:
        logp, _ = soft_token_logprobs(
            model,
            batch.input_ids,
            batch.attention_mask,
            batch.completion_mask,
            soft,
            impl="naive",
        )
        return (logp.double() * target * weights).sum()

    param = model.model.layers[0].mlp.down_proj.weight
    model.zero_grad()
    objective().backward()
    torch.manual_seed(0)
    direction = torch.randn_like(param)
    analytic = float((param.grad * direction).sum())
    h = 1e-4  # Qwen2's RMSNorm and RoPE run in float32 even in a float64 model: FD noise ~1e-7
    with torch.no_grad():
        param.add_(h * direction)
        up = float(objective())
        param.sub_(2 * h * direction)
        down = float(objective())
        param.add_(h * direction)
    numeric = (up - down) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=2e-3)
    assert abs(analytic) > 1e-6


def test_rlvr_eval_soft_thinking_decoding(tiny_model_dir, tmp_path, capsys) -> None:
    import json

    from eval.cli import main

    out = tmp_path / "ev"
    args = [
        "--model",
        str(tiny_model_dir),
        "--suites",
        "arithmetic",
        "--limit",
        "3",
        "--n",
        "2",
        "--max-tokens",
        "6",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main([*args, "--soft-thinking", "--soft-tau-g", "0.3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "hf"
    assert summary["settings"]["soft_thinking"] is True
    assert summary["settings"]["soft_tau_g"] == 0.3
    assert "soft thinking: k 5" in capsys.readouterr().out
    # resuming with other soft settings is refused (they change the samples)
    assert main([*args, "--soft-thinking", "--soft-tau-g", "0.5"]) == 2
    assert main([*args, "--soft-thinking", "--engine", "vllm", "--overwrite"]) == 2
    assert "hf engine" in capsys.readouterr().err


# ----------------------------------------------------------------------------- learner


def _soft_recipe(model_dir, out, **extra):
    from rlvr.config import Recipe

    tree = {
        "name": "soft",
        "output_dir": str(out),
        "seed": 2,
        "model": {"path": str(model_dir)},
        "data": {
            "source": "arithmetic",
            "arithmetic": {"digits": 1, "num_train": 64, "num_eval": 8},
            "use_chat_template": False,
            "prompt_template": "{prompt}<think>",  # thinking from the first generated token
        },
        "rollout": {
            "engine": "hf",
            "group_size": 4,
            "max_new_tokens": 8,
            "soft_thinking": {"tau_g": 0.5},
        },
        "rewards": [{"name": "math"}],
        "reward_runner": {"num_workers": 1},
        "train": {"steps": 1, "prompts_per_step": 3, "micro_batch_size": 5, "lr": 1e-3},
        "checkpoint": {"save_final": False},
        "logging": {"tensorboard": False, "plots": False, "progress": False},
    }
    for key, value in extra.items():
        node = tree
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return Recipe.model_validate(tree)


def test_ratio_is_one_at_theta_old_through_the_learner(tiny_model_dir, tmp_path) -> None:
    """With the engine's log-probs as behaviour log-probs, the first update sees ratio 1 at
    every soft and discrete token: the learner rebuilds exactly what the rollout computed."""
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    recipe = _soft_recipe(
        tiny_model_dir,
        tmp_path,
        algo__old_logprobs="rollout",
        algo__kl_coef=0.01,  # the reference starts equal to the policy: KL 0 too
        rollout__top_k=-1,  # answer phase from the full softmax, as the learner scores it
        rollout__top_p=1.0,
    )
    train_recipe(recipe)
    (row,) = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert row["rollout/soft_fraction"] > 0.2
    assert row["logprob_mismatch"] < 1e-4
    assert row["ratio/mean"] == pytest.approx(1.0, abs=1e-4)
    assert row["clip_fraction"] == 0.0
    assert row["kl"] < 1e-6


def test_update_moves_soft_step_logprobs_in_the_advantage_direction(
    tiny_model_dir, tmp_path
) -> None:
    """One SofT-GRPO update raises the reparameterised log-likelihood of the soft steps of
    positive-advantage completions relative to negative ones."""
    from rlvr.trainer import Trainer

    recipe = _soft_recipe(
        tiny_model_dir,
        tmp_path,
        train__prompts_per_step=4,
    )
    trainer = Trainer(recipe)
    try:
        batch, _ = trainer.sampler.rollout(1)
        # a random model is never right: a reward by soft-step count gives mixed groups
        counts = torch.tensor([[float(sum(c.soft.soft)) for c in g] for g in batch.completions])
        batch.rewards = counts + 0.1 * torch.arange(counts.shape[1]).float()
        trainer.sampler.compute_advantages(batch, 1)
        train = batch.to_train_batch(trainer.pad_id)
        soft = train.extras["soft_mask"][:, 1:].float() * train.target_mask
        learner = trainer.learner
        before = (learner.frozen_logprobs(learner.model, train) * soft).sum(dim=1)
        learner.update(train)
        after = (learner.frozen_logprobs(learner.model, train) * soft).sum(dim=1)
    finally:
        trainer.close()
    adv = batch.advantages.reshape(-1)
    assert adv.abs().sum() > 0 and soft.sum() > 0
    assert float((adv * (after - before)).sum()) > 0


@pytest.mark.slow
def test_soft_grpo_run_learns_on_the_quickstart_model(tmp_path) -> None:
    """A few SofT-GRPO steps from the bundled reasoning model raise held-out accuracy
    (evaluated with soft-thinking decoding, 200 problems x 4 samples)."""
    from pathlib import Path

    from rlvr.config import load_recipe
    from rlvr.trainer import train_recipe

    repo = Path(__file__).resolve().parents[1]
    recipe = load_recipe(
        repo / "recipes" / "soft_grpo_arithmetic_cpu.yaml",
        [
            f"model.path={repo / 'models' / 'quickstart'}",
            f"output_dir={tmp_path}",
            "train.steps=20",
            "train.threads=1",
            "logging.progress=false",
            "logging.plots=false",
            "checkpoint.save_final=false",
        ],
    )
    summary, _ = train_recipe(recipe)
    before, after = summary["eval_before"]["eval/pass@1"], summary["eval_after"]["eval/pass@1"]
    assert after > before + 0.05, (before, after)


def test_recipe_keys_validate_and_reject_vllm(tmp_path) -> None:
    from pathlib import Path

    from rlvr.config import RecipeError, load_recipe

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "soft_grpo_arithmetic_cpu.yaml"
    r = load_recipe(recipe, ["rollout.soft_thinking.tau_g=0.3"])
    params = r.rollout.soft_thinking.params()
    assert (params.top_k, params.top_p, params.tau_g, params.noise_scale) == (5, 0.95, 0.3, 1.0)
    assert load_recipe(recipe, ["rollout.soft_thinking=null"]).rollout.soft_thinking is None
    with pytest.raises(RecipeError, match="engine: hf"):
        load_recipe(recipe, ["rollout.engine=vllm"])
    with pytest.raises(RecipeError, match="tau_g"):
        load_recipe(recipe, ["rollout.soft_thinking.tau_g=0"])
    with pytest.raises(RecipeError, match="did you mean"):
        load_recipe(recipe, ["rollout.soft_thinking.tau=0.2"])
