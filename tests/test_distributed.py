"""Multi-rank training (rlvr/distributed.py): token-balanced whole-group shards, the wire
format, the world-size guard, and on 2 gloo processes under torchrun: 2 ranks equal 1
process on the same global batch, and a run resumed at another world size continues the
same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rlvr.config import Recipe
from rlvr.distributed import (
    DistEnv,
    WorldSizeError,
    _decode,
    _encode,
    balance_groups,
    check_world_size,
    current,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deepspeed_site  # noqa: E402
from dist_cases import (  # noqa: E402
    CASES,
    DEEPSPEED_CASES,
    FSDP2_CASES,
    case_batch,
    case_learner,
)

REPO = Path(__file__).resolve().parents[1]
TIMING = ("time/", "tokens_per_s")


def torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": deepspeed_site.pythonpath(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("RLVR_WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(
        [*cmd, f"--nproc_per_node={nproc}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


# ---------------------------------------------------------------------- one process


def test_balance_groups_places_whole_groups_by_tokens() -> None:
    # 4 groups of 2 rows; group tokens 10, 3, 7, 6
    tokens = torch.tensor([6, 4, 1, 2, 3, 4, 5, 1])
    # W=2, largest first: g0 -> r0 (10), g2 -> r1 (7), g3 -> r1 (13), g1 -> r0 (13)
    assert balance_groups(tokens, 2, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # W=3: g0 -> r0 (10), g2 -> r1 (7), g3 -> r2 (6), g1 -> r2 (9)
    assert balance_groups(tokens, 2, 3) == [[0, 1], [4, 5], [2, 3, 6, 7]]
    # fewer groups than ranks: the last rank trains nothing
    assert balance_groups(tokens[:4], 2, 3) == [[0, 1], [2, 3], []]
    # rows that are not whole groups of G are balanced row by row
    assert balance_groups(torch.tensor([1, 5, 2]), 2, 2) == [[1], [0, 2]]


def test_wire_format_round_trips_containers_and_tensors() -> None:
    message = {
        "cmd": "state",
        "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "groups": [{"betas": (0.9, 0.99)}]},
        "mask": torch.tensor([True, False]),
        "none": None,
    }
    tensors: list[torch.Tensor] = []
    back = _decode(json.loads(json.dumps(_encode(message, tensors))), tensors)
    assert back["opt"]["state"][0]["step"].item() == 3.0  # int keys survive
    assert back["opt"]["groups"][0]["betas"] == (0.9, 0.99)  # tuples survive
    assert back["mask"].tolist() == [True, False] and back["none"] is None
    with pytest.raises(TypeError, match="cannot send"):
        _encode({"x": object()}, [])


def _recipe(tiny_model_dir: Path, **train) -> Recipe:
    return Recipe.model_validate({"model": {"path": str(tiny_model_dir)}, "train": train})


def test_world_size_guard_names_the_mismatch(tiny_model_dir: Path) -> None:
    with pytest.raises(WorldSizeError, match=r"train.world_size=2 .* world size 1"):
        check_world_size(_recipe(tiny_model_dir, world_size=2), 1, {})
    with pytest.raises(WorldSizeError, match=r"\$RLVR_WORLD_SIZE=4 .* world size 2"):
        check_world_size(_recipe(tiny_model_dir), 2, {"WORLD_SIZE": "2", "RLVR_WORLD_SIZE": "4"})
    # accelerate launch --cpu --num_processes 2: one process, a rendezvous address, no WORLD_SIZE
    accelerate_cpu = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}
    with pytest.raises(WorldSizeError, match="started one"):
        check_world_size(_recipe(tiny_model_dir), 1, accelerate_cpu)
    check_world_size(_recipe(tiny_model_dir, world_size=2), 2, {"WORLD_SIZE": "2"})  # fine
    check_world_size(_recipe(tiny_model_dir), 1, {})


def test_colocated_vllm_under_several_ranks_is_refused(tiny_model_dir: Path) -> None:
    recipe = Recipe.model_validate(
        {"model": {"path": str(tiny_model_dir)}, "rollout": {"engine": "vllm"}}
    )
    with pytest.raises(WorldSizeError, match="rollout.engine=vllm colocated with 2"):
        DistEnv.setup(recipe, {"WORLD_SIZE": "2", "RANK": "0"})
    assert not current().active  # nothing was started


def test_cli_stops_on_a_world_size_mismatch(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"path": str(tiny_model_dir)}}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("WORLD_SIZE", "RANK", "RLVR_WORLD_SIZE"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "rlvr", "train", str(recipe), "train.world_size=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "WorldSizeError: train.world_size=2 but this run was launched with world size 1" in (
        done.stderr
    )
    assert not (tmp_path / "runs").exists()  # stopped before the run started


# ---------------------------------------------------------------------- 2 gloo processes


@pytest.mark.multiprocess
def test_two_ranks_equal_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Every loss aggregation at micro-batch 1 and 4, a whole-batch token rule, and KL with
    two optimizer steps per batch: loss, metrics and gradient norm to float round-off,
    pre-step gradients to rtol 1e-5, weights after AdamW (lr 1e-3) to 1e-4 (mean 1e-7), and both ranks
    hold identical weights."""
    torchrun(
        2, "tests/dist_learner_worker.py", str(tiny_model_dir), str(tmp_path), json.dumps(CASES)
    )
    compare_with_one_process(tiny_model_dir, tmp_path, CASES)


@pytest.mark.multiprocess
def test_two_fsdp2_ranks_equal_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same comparison with the learners sharded by FSDP2 (train.strategy=fsdp2): uneven
    micro-batch counts (padding passes), a whole-batch rule, KL with two updates."""
    cases = json.dumps(FSDP2_CASES)
    torchrun(2, "tests/dist_learner_worker.py", str(tiny_model_dir), str(tmp_path), cases, "fsdp2")
    compare_with_one_process(tiny_model_dir, tmp_path, FSDP2_CASES)


needs_deepspeed = pytest.mark.skipif(
    not deepspeed_site.available(), reason="deepspeed is not installed (scripts/setup.sh)"
)


@pytest.mark.multiprocess
@needs_deepspeed
def test_two_zero2_ranks_equal_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same comparison under DeepSpeed ZeRO-2 (train.strategy=deepspeed): uneven
    micro-batch counts (padding backward passes), a whole-batch rule, KL with two updates and
    LoRA; loss, metrics, grad norm and the updated weights (the gradients live in DeepSpeed's
    partitions, so the pre-step gradient is not compared)."""
    cases = json.dumps(DEEPSPEED_CASES)
    torchrun(
        2, "tests/dist_learner_worker.py", str(tiny_model_dir), str(tmp_path), cases, "deepspeed"
    )
    compare_with_one_process(tiny_model_dir, tmp_path, DEEPSPEED_CASES, grads=False)


def compare_with_one_process(
    tiny_model_dir: Path, tmp_path: Path, cases: dict, grads: bool = True
) -> None:
    for name, case in cases.items():
        learner = case_learner(str(tiny_model_dir), case)
        seen: list[torch.Tensor] = []
        step = learner.optimizer.step

        def record(*args, _seen=seen, _learner=learner, _step=step, **kwargs):
            params = [p for p in _learner.model.parameters() if p.requires_grad]
            _seen.append(torch.cat([p.grad.flatten() for p in params]))
            return _step(*args, **kwargs)

        learner.optimizer.step = record  # type: ignore[method-assign]
        single = learner.update(case_batch(case)).metrics
        weights = torch.cat([p.detach().flatten() for p in learner.model.parameters()])
        rank0 = load_file(tmp_path / f"rank0_{name}.safetensors")
        rank1 = load_file(tmp_path / f"rank1_{name}.safetensors")
        multi = json.loads((tmp_path / f"rank0_{name}.json").read_text())

        assert multi["world_size"] == 2 and single["world_size"] == 1
        if case.get("inf_penalty"):  # skipped on both sides: nothing moved, nothing stepped
            assert multi["train/nonfinite"] == single["train/nonfinite"] == 1.0, name
            initial = case_learner(str(tiny_model_dir), {**case, "inf_penalty": False})
            start = torch.cat([p.detach().flatten() for p in initial.model.parameters()])
            assert torch.equal(weights, start) and torch.equal(rank0["weights"], start), name
            assert torch.equal(rank1["weights"], start) and not seen, name
            continue
        for key, value in single.items():
            if key.startswith(TIMING) or key == "world_size":
                continue
            assert multi[key] == pytest.approx(value, rel=1e-6, abs=1e-7), (name, key)
        assert abs(single["grad_norm"]) > 0  # the case moves the weights
        if grads:
            scale = float(seen[0].abs().max())
            torch.testing.assert_close(rank0["grad"], seen[0], rtol=1e-5, atol=1e-6 * scale)
            assert torch.equal(rank0["grad"], rank1["grad"]), name
        # AdamW's first step is g / |g| per weight: fp32 summation-order noise in a near-zero
        # gradient moves a few weights by a fraction of lr (1e-3); the bulk agrees to round-off
        diff = (rank0["weights"] - weights).abs()
        assert float(diff.max()) <= 1e-4 and float(diff.mean()) <= 1e-7, name
        assert torch.equal(rank0["weights"], rank1["weights"]), name


COMPARED = ["reward/mean", "loss", "entropy", "grad_norm", "length/mean", "kl", "clip_fraction"]


def _run_recipe(tiny_model_dir: Path, out: Path, fixtures: Path, steps: int) -> dict:
    return {
        "name": "ws",
        "output_dir": str(out),
        "seed": 3,
        "model": {"path": str(tiny_model_dir)},
        "data": {
            "source": "arithmetic",
            "arithmetic": {"digits": 1, "num_train": 64, "num_eval": 8},
        },
        "rollout": {"engine": "hf", "group_size": 4, "max_new_tokens": 8},
        "rewards": [
            {"name": "math"},
            {"name": f"{fixtures / 'rewards_fixture.py'}:digit_fraction", "key": "digits"},
        ],
        "reward_runner": {"num_workers": 1},
        "algo": {"kl_coef": 0.05},
        "train": {"steps": steps, "prompts_per_step": 3, "micro_batch_size": 2, "lr": 3e-3},
        "checkpoint": {"every": 100},
        "logging": {"plots": False, "tensorboard": False, "progress": False},
    }


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def three_steps(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The metrics of 3 steps of the run recipe in one plain process (the reference)."""
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    out = tmp_path_factory.mktemp("reference")
    reference = Recipe.model_validate(_run_recipe(tiny_model_dir, out, FIXTURES, 3))
    train_recipe(reference)
    rows = read_metrics(reference.run_dir / "metrics.jsonl")
    assert any(r["grad_norm"] > 0 for r in rows)
    return rows


def assert_same_run(rows: list[dict], expected: list[dict], world_sizes: list[int]) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in expected]
    assert [r["world_size"] for r in rows] == world_sizes
    for want, got in zip(expected, rows, strict=True):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (got["step"], key)


def _resumed(tree: dict, steps: int, **train: object) -> Recipe:
    return Recipe.model_validate(
        {**tree, "resume": True, "train": {**tree["train"], "steps": steps, **train}}
    )


@pytest.mark.multiprocess
def test_resume_at_another_world_size_continues_the_run(
    tiny_model_dir: Path, tmp_path: Path, three_steps: list[dict]
) -> None:
    """2 steps at W=2 (torchrun), then 1 at W=1 (resume) equals 3 steps at W=1."""
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    tree = _run_recipe(tiny_model_dir, tmp_path / "b", FIXTURES, 2)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(tree))
    torchrun(2, "-m", "rlvr", "train", str(path), "train.world_size=2")
    resumed = _resumed(tree, 3)
    train_recipe(resumed)
    assert_same_run(read_metrics(resumed.run_dir / "metrics.jsonl"), three_steps, [2, 2, 1])


@pytest.mark.multiprocess
def test_fsdp2_run_checkpoints_and_resumes_at_any_world_size(
    tiny_model_dir: Path, tmp_path: Path, three_steps: list[dict]
) -> None:
    """`torchrun -m rlvr train` with train.strategy=fsdp2: 2 steps at W=2 equal the plain
    run's; the checkpoint (dcp/ shards + HF files, no optimizer.pt) continues the run for
    step 3 under fsdp2 at W=1, in a plain single process and (with deepspeed installed) under
    ZeRO-2 at W=2."""
    import shutil

    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    tree = _run_recipe(tiny_model_dir, tmp_path / "f", FIXTURES, 2)
    tree["train"]["strategy"] = "fsdp2"
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(tree))
    done = torchrun(2, "-m", "rlvr", "train", str(path), "train.world_size=2")
    assert "strategy: fsdp2" in done.stdout + done.stderr
    run_dir = tmp_path / "f" / "ws"
    ckpt = run_dir / "checkpoints" / "step_000002"
    assert (ckpt / "dcp" / ".metadata").is_file() and (ckpt / "model.safetensors").is_file()
    assert not (ckpt / "optimizer.pt").exists()
    shutil.copytree(tmp_path / "f", tmp_path / "plain")
    shutil.copytree(tmp_path / "f", tmp_path / "zero")

    torchrun(1, "-m", "rlvr", "train", str(path), "resume=true", "train.steps=3")
    assert_same_run(read_metrics(run_dir / "metrics.jsonl"), three_steps, [2, 2, 1])

    plain = _resumed({**tree, "output_dir": str(tmp_path / "plain")}, 3, strategy=None)
    train_recipe(plain)
    assert_same_run(read_metrics(plain.run_dir / "metrics.jsonl"), three_steps, [2, 2, 1])

    if deepspeed_site.available():  # the DCP optimizer state into ZeRO
        zero_path = tmp_path / "zero.yaml"
        zero_path.write_text(yaml.safe_dump({**tree, "output_dir": str(tmp_path / "zero")}))
        args = ("resume=true", "train.steps=3", "train.strategy=deepspeed")
        torchrun(2, "-m", "rlvr", "train", str(zero_path), *args)
        rows = read_metrics(tmp_path / "zero" / "ws" / "metrics.jsonl")
        assert_same_run(rows, three_steps, [2, 2, 2])


LORA = {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"], "save_merged": True}


@pytest.mark.multiprocess
def test_fsdp2_lora_run_equals_the_plain_run_and_resumes_in_one_process(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """LoRA (sync merged, KL against the adapter-disabled base) under fsdp2 at W=2: 2 steps
    equal a plain LoRA run's (step 2's rollouts come from rank 0's HF copy synced with the
    weights merged from the gathered shards); the checkpoint holds the adapter files, dcp/ and
    merged/ (the plain run's merged model to 1e-6); a plain process resumes it for step 3."""
    from safetensors.torch import load_file as load

    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    tree = {**_run_recipe(tiny_model_dir, tmp_path / "p", FIXTURES, 3), "lora": LORA}
    tree["checkpoint"] = {"every": 2}  # the plain run's step-2 merged model, to compare
    reference = Recipe.model_validate(tree)
    train_recipe(reference)
    expected = read_metrics(reference.run_dir / "metrics.jsonl")

    sharded = {**tree, "output_dir": str(tmp_path / "s")}
    sharded["train"] = {**tree["train"], "steps": 2, "strategy": "fsdp2"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sharded))
    torchrun(2, "-m", "rlvr", "train", str(path), "train.world_size=2")
    ckpt = tmp_path / "s" / "ws" / "checkpoints" / "step_000002"
    assert (ckpt / "adapter_config.json").is_file() and (ckpt / "dcp" / ".metadata").is_file()
    ours = load(ckpt / "merged" / "model.safetensors")
    theirs = load(
        reference.run_dir / "checkpoints" / "step_000002" / "merged" / "model.safetensors"
    )
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-6)

    resumed = _resumed(sharded, 3, strategy=None)
    train_recipe(resumed)
    assert_same_run(read_metrics(resumed.run_dir / "metrics.jsonl"), expected, [2, 2, 1])


@pytest.mark.multiprocess
def test_replicated_checkpoint_resumes_under_fsdp2(
    tiny_model_dir: Path, tmp_path: Path, three_steps: list[dict]
) -> None:
    """A plain run's checkpoint (optimizer.pt, whole) continues under fsdp2 at W=2: the
    optimizer state is broadcast from rank 0 and sharded."""
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    tree = _run_recipe(tiny_model_dir, tmp_path / "r", FIXTURES, 2)
    train_recipe(Recipe.model_validate(tree))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree))
    args = ("resume=true", "train.steps=3", "train.strategy=fsdp2")
    torchrun(2, "-m", "rlvr", "train", str(path), *args)
    rows = read_metrics(tmp_path / "r" / "ws" / "metrics.jsonl")
    assert_same_run(rows, three_steps, [1, 1, 2])


@pytest.mark.multiprocess
@needs_deepspeed
def test_deepspeed_run_checkpoints_and_resumes_at_any_world_size(
    tiny_model_dir: Path, tmp_path: Path, three_steps: list[dict]
) -> None:
    """`torchrun -m rlvr train` with train.strategy=deepspeed (ZeRO-1): 2 steps at W=2 equal
    the plain run's; the checkpoint is the replicated format (optimizer.pt, whole, assembled
    from the partitions) and continues the run for step 3 under ZeRO-2 at W=1 and in a plain
    single process."""
    import shutil

    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    tree = _run_recipe(tiny_model_dir, tmp_path / "d", FIXTURES, 2)
    tree["train"].update(strategy="deepspeed", zero_stage=1)
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(tree))
    done = torchrun(2, "-m", "rlvr", "train", str(path), "train.world_size=2")
    log = done.stdout + done.stderr
    assert "strategy: deepspeed ZeRO-1 (optimizer state partitioned)" in log
    assert "Setting accelerator to CPU" not in log  # named before DeepSpeed's import
    run_dir = tmp_path / "d" / "ws"
    ckpt = run_dir / "checkpoints" / "step_000002"
    assert (ckpt / "optimizer.pt").is_file() and not (ckpt / "dcp").exists()
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert len(state["state"]) == len(load_file(ckpt / "model.safetensors"))
    shutil.copytree(tmp_path / "d", tmp_path / "plain")

    torchrun(
        1, "-m", "rlvr", "train", str(path), "resume=true", "train.steps=3", "train.zero_stage=2"
    )
    assert_same_run(read_metrics(run_dir / "metrics.jsonl"), three_steps, [2, 2, 1])

    plain = _resumed(
        {**tree, "output_dir": str(tmp_path / "plain")}, 3, strategy=None, zero_stage=None
    )
    train_recipe(plain)
    assert_same_run(read_metrics(plain.run_dir / "metrics.jsonl"), three_steps, [2, 2, 1])
