"""FSDP2 (rlvr/fsdp.py) and the strategy guard (rlvr/distributed.py): the strategy asked for
must be the launcher's; on 2 gloo processes under torchrun a ``fully_shard`` step sums the
ranks' partial gradients (the one-process step), its DCP checkpoint saved at 2 ranks loads
at 1 exactly, and the HF export loads in transformers with the same weights."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlvr.config import Recipe
from rlvr.distributed import (
    DeepSpeedNotInstalledError,
    DistEnv,
    StrategyError,
    current,
    resolve_strategy,
    resolve_zero_stage,
)
from rlvr.fsdp import decoder_layers, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fsdp_worker import fixed_batch, partial_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FSDP2_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}


def _recipe(model_dir: Path, **train) -> Recipe:
    return Recipe.model_validate({"model": {"path": str(model_dir)}, "train": train})


def test_strategy_must_match_the_launcher(tiny_model_dir: Path) -> None:
    assert resolve_strategy(_recipe(tiny_model_dir), {}) == "ddp"  # plain torchrun
    assert resolve_strategy(_recipe(tiny_model_dir, strategy="ddp"), {}) == "ddp"
    accelerate_ddp = {"ACCELERATE_MIXED_PRECISION": "no"}
    assert resolve_strategy(_recipe(tiny_model_dir), accelerate_ddp) == "ddp"
    with pytest.raises(StrategyError, match=r"train.strategy=fsdp2 but the launcher set up ddp"):
        resolve_strategy(_recipe(tiny_model_dir, strategy="fsdp2"), accelerate_ddp)
    with pytest.raises(StrategyError, match=r"train.strategy=ddp but the launcher set up fsdp2"):
        resolve_strategy(_recipe(tiny_model_dir, strategy="ddp"), FSDP2_ENV)
    fsdp1 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}
    with pytest.raises(StrategyError, match="fsdp1 .* FSDP2 only"):
        resolve_strategy(_recipe(tiny_model_dir), fsdp1)
    # fsdp2 from the recipe or from the launcher
    assert resolve_strategy(_recipe(tiny_model_dir, strategy="fsdp2"), {}) == "fsdp2"
    assert resolve_strategy(_recipe(tiny_model_dir), FSDP2_ENV) == "fsdp2"


def test_fsdp2_refusals_are_named_before_any_process_group(tiny_model_dir: Path) -> None:
    """What rank 0 would run alone on the sharded module, and fsdp2 without a launcher, stop
    at start with StrategyError naming the key."""
    two = {"WORLD_SIZE": "2", "RANK": "0", **FSDP2_ENV}
    base = {"model": {"path": str(tiny_model_dir)}, "train": {"strategy": "fsdp2"}}
    refused = {
        "rollout.engine=vllm colocated": {"rollout": {"engine": "vllm"}},
        "rollout.cure": {"rollout": {"engine": "hf", "cure": {}}},
        "rollout.soft_thinking": {"rollout": {"engine": "hf", "soft_thinking": {}}},
    }
    assert_refused(base, refused, two, "fsdp2")


def assert_refused(base: dict, refused: dict, env: dict, strategy: str) -> None:
    """Each recipe ``base`` + ``refused[what]`` stops at DistEnv.setup with StrategyError
    naming ``what``; ``base`` at W=1 without torchrun asks for a process group."""
    for what, extra in refused.items():
        recipe = Recipe.model_validate({**base, **extra})
        with pytest.raises(StrategyError, match=f"does not run with {what}"):
            DistEnv.setup(recipe, env)
    hf = Recipe.model_validate({**base, "rollout": {"engine": "hf"}})
    with pytest.raises(StrategyError, match=f"{strategy} needs a process group"):
        DistEnv.setup(hf, {"WORLD_SIZE": "1", "RANK": "0"})
    assert not current().active


def test_deepspeed_without_the_package_says_to_install_it(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name)
    )
    two = {"WORLD_SIZE": "2", "RANK": "0"}
    hf = {"model": {"path": str(tiny_model_dir)}, "rollout": {"engine": "hf"}}
    asked = Recipe.model_validate({**hf, "train": {"strategy": "deepspeed"}})
    launched = Recipe.model_validate(hf)
    for recipe, env in ((asked, two), (launched, {**two, "ACCELERATE_USE_DEEPSPEED": "true"})):
        with pytest.raises(DeepSpeedNotInstalledError, match="pip install deepspeed"):
            DistEnv.setup(recipe, env)
    assert not current().active


def test_zero_stage_and_accelerate_deepspeed_options(tiny_model_dir: Path) -> None:
    """train.zero_stage and the accelerate config's DeepSpeed options: agreement, defaults,
    and a named StrategyError for what rlvr does not run (before anything loads)."""
    plain = _recipe(tiny_model_dir, strategy="deepspeed")
    one = _recipe(tiny_model_dir, strategy="deepspeed", zero_stage=1)
    accelerate = {
        "ACCELERATE_USE_DEEPSPEED": "true",
        "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2",
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "1",
        "ACCELERATE_GRADIENT_CLIPPING": "1.0",
        "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none",
        "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none",
    }
    assert resolve_zero_stage(plain, {}) == 2  # the default
    assert resolve_zero_stage(one, {}) == 1
    assert resolve_zero_stage(plain, accelerate) == 2
    assert resolve_zero_stage(plain, {**accelerate, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "1"}) == 1
    assert resolve_zero_stage(plain, {"ACCELERATE_DEEPSPEED_ZERO_STAGE": " 1 "}) == 1
    assert resolve_zero_stage(plain, {"ACCELERATE_MIXED_PRECISION": "no"}) == 2
    refused = {
        "train.zero_stage=1 but the accelerate config sets zero_stage: 2": (one, {}),
        "ZeRO stage 3 .* train.strategy=fsdp2": (plain, {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}),
        "zero_stage 0 is plain data parallel": (plain, {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "0"}),
        "OFFLOAD_OPTIMIZER_DEVICE=cpu: optimizer offload": (
            plain,
            {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"},
        ),
        "CONFIG_FILE=ds.json: a DeepSpeed config file": (
            plain,
            {"ACCELERATE_DEEPSPEED_CONFIG_FILE": "ds.json"},
        ),
        "rlvr accumulates the micro-batches": (
            plain,
            {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"},
        ),
        "ACCELERATE_MIXED_PRECISION=bf16: rlvr trains in model.dtype": (
            plain,
            {"ACCELERATE_MIXED_PRECISION": "bf16"},
        ),
        "gradient_clipping is 0.5 but train.max_grad_norm=1.0": (
            plain,
            {"ACCELERATE_GRADIENT_CLIPPING": "0.5"},
        ),
    }
    for message, (recipe, extra) in refused.items():
        env = {**accelerate, **extra}
        if recipe is one:
            env = {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
        with pytest.raises(StrategyError, match=message):
            resolve_zero_stage(recipe, env)
    two = {"WORLD_SIZE": "2", "RANK": "0", "ACCELERATE_USE_DEEPSPEED": "true"}
    base = {"model": {"path": str(tiny_model_dir)}, "train": {"strategy": "deepspeed"}}
    refused = {
        "rollout.engine=vllm colocated": {"rollout": {"engine": "vllm"}},
        "model.dtype=float16": {
            "model": {"path": str(tiny_model_dir), "dtype": "float16"},
            "rollout": {"engine": "hf"},
        },
    }
    assert_refused(base, refused, two, "deepspeed")


def test_configs_carry_their_command_in_line_one() -> None:
    for name in ("ddp", "fsdp2", "deepspeed"):
        path = REPO / "configs" / f"accelerate_{name}.yaml"
        first = path.read_text().splitlines()[0]
        assert first.startswith(
            f"# accelerate launch --config_file configs/{path.name} -m rlvr train"
        )


def test_decoder_layers_are_the_no_split_modules(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    layers = decoder_layers(model)
    assert layers == list(model.model.layers)


@pytest.fixture(scope="module")
def fsdp_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fsdp_worker.py under torchrun on 2 gloo processes (once per module)."""
    out = tmp_path_factory.mktemp("fsdp2")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*cmd, str(REPO / "tests" / "fsdp_worker.py"), str(tiny_model_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.multiprocess
def test_fsdp2_step_and_dcp_checkpoint_reshard_two_to_one(
    tiny_model_dir: Path, fsdp_run: Path
) -> None:
    tmp_path = fsdp_run
    assert json.loads((tmp_path / "world.json").read_text())["world_size"] == 2
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "dcp" / ".metadata").is_file()

    # the same step in one process: the whole batch's loss, one SGD step
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids, mask = fixed_batch(ref.config.vocab_size)
    loss = partial_loss(ref, ids, mask, torch.arange(ids.shape[0]))
    loss.backward()
    torch.optim.SGD(ref.parameters(), lr=0.1).step()
    assert json.loads((tmp_path / "world.json").read_text())["loss"] == pytest.approx(
        float(loss.detach()), rel=1e-6
    )

    # DCP at W=2 -> a plain model in this process (no process group): exactly the shards
    resharded = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = {k: v.clone() for k, v in resharded.state_dict().items()}
    load_checkpoint(resharded, ckpt)
    exported = AutoModelForCausalLM.from_pretrained(ckpt / "hf", dtype=torch.float32)
    got, hf, want = resharded.state_dict(), exported.state_dict(), ref.state_dict()
    assert got.keys() == want.keys() == hf.keys()
    for k in want:
        assert torch.equal(got[k], hf[k]), k  # the two W=2 outputs agree bit for bit
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)  # SUM reduce
    assert any(not torch.equal(got[k], before[k]) for k in want)  # the step did change it
    # the optimizer too, in one plain process (resuming an FSDP2 run without a launcher)
    load_checkpoint(resharded, ckpt, torch.optim.SGD(resharded.parameters(), lr=0.1))
    assert all(torch.equal(v, hf[k]) for k, v in resharded.state_dict().items())


@pytest.mark.multiprocess
@pytest.mark.vllm
def test_fsdp2_hf_export_loads_in_vllm(fsdp_run: Path) -> None:
    """vLLM serves the export as is: its sampling log-probs equal transformers' on it."""
    from rlvr.policy import token_logprobs
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.vllm_engine import VLLMEngine

    export = fsdp_run / "ckpt" / "hf"
    engine = VLLMEngine(str(export), seed=0, max_model_len=128)
    try:
        prompt = [[1, 5, 9, 13], [2, 4, 6]]
        groups = engine.generate(prompt, SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=0))
    finally:
        engine.close()
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    worst = 0.0
    for p, group in zip(prompt, groups, strict=True):
        for c in group:
            ids = torch.tensor([p + list(c.token_ids)])
            target = torch.zeros_like(ids)
            target[0, len(p) :] = 1
            with torch.no_grad():
                logp, _ = token_logprobs(model, ids, torch.ones_like(ids), target)
            hf = logp[0, len(p) - 1 :]
            worst = max(worst, float((hf - torch.tensor(c.logprobs)).abs().max()))
    assert worst <= 1e-5, worst


@pytest.mark.multiprocess
def test_plain_load_under_a_group_of_one(tiny_model_dir: Path, fsdp_run: Path) -> None:
    """A 1-process group already in the process (in-process vLLM starts one) still reads the
    DCP checkpoint into a plain model, with its optimizer, without using the group."""
    script = f"""
import os, torch, torch.distributed as td
from transformers import AutoModelForCausalLM
from rlvr.fsdp import load_checkpoint
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
td.init_process_group("gloo", rank=0, world_size=1, init_method="tcp://127.0.0.1:0")
m = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r}, dtype=torch.float32)
load_checkpoint(m, {str(fsdp_run / "ckpt")!r})
hf = AutoModelForCausalLM.from_pretrained({str(fsdp_run / "ckpt" / "hf")!r}, dtype=torch.float32)
got, want = m.state_dict(), hf.state_dict()
assert got.keys() == want.keys() and all(torch.equal(v, want[k]) for k, v in got.items())
load_checkpoint(m, {str(fsdp_run / "ckpt")!r}, torch.optim.SGD(m.parameters(), lr=0.1))
assert all(torch.equal(v, want[k]) for k, v in m.state_dict().items())
td.destroy_process_group()
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
