"""``train.device``: where the policy trains. The batch and the per-token loss math stay on the
CPU; the model's rows go to the device and come back as a differentiable copy, so an update
on a GPU equals the CPU's (to float tolerance). GPU-only checks skip without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from test_learner_work import ADV, grad_and_update, make_batch, make_learner

from rlvr.config import Recipe
from rlvr.learner import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_is_the_cpu_without_a_gpu() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_cuda_without_a_gpu_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="train.device=cuda: no CUDA GPU"):
        resolve_device("cuda")


def test_device_key_is_validated() -> None:
    with pytest.raises(ValidationError, match="train.device|device"):
        Recipe.model_validate({"model": {"path": "m"}, "train": {"device": "tpu"}})


def test_cpu_learner_keeps_model_and_results_on_the_cpu(tiny_model_dir: Path) -> None:
    learner = make_learner(tiny_model_dir, device="cpu")
    assert learner.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in learner.model.parameters())
    result = learner.update(make_batch(ADV))
    assert result.token_entropies.device.type == "cpu"


@pytest.mark.gpu
@needs_cuda
def test_update_on_the_gpu_equals_the_cpu(tiny_model_dir: Path) -> None:
    batch = make_batch(ADV)
    torch.manual_seed(0)
    cpu_grad, cpu_metrics, cpu_params = grad_and_update(
        make_learner(tiny_model_dir, device="cpu"), batch
    )
    torch.manual_seed(0)
    gpu = make_learner(tiny_model_dir, device="cuda")
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    gpu_grad, gpu_metrics, gpu_params = grad_and_update(gpu, batch)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad, rtol=1e-3, atol=1e-5)
    assert gpu_metrics["loss"] == pytest.approx(cpu_metrics["loss"], rel=1e-4, abs=1e-6)
    for g, c in zip(gpu_params, cpu_params, strict=True):
        torch.testing.assert_close(g.cpu(), c, rtol=1e-3, atol=1e-5)
