"""Server mode without a server: the receipt comparison and its errors, the pre-flight config
check, response parsing, the ``rlvr serve`` command line, the recipe keys, and a dead URL
failing fast with a named error."""

from __future__ import annotations

import math
import socket
import time
from types import SimpleNamespace

import pytest
import torch

from rlvr.config import Recipe, RecipeError, load_recipe
from rlvr.rollout.receipt import (
    ServerConfigError,
    ServerExpectations,
    WeightSyncError,
    build_probe,
    check_receipt,
    check_server_config,
    max_abs_delta,
    server_prompt_logprobs,
    trainer_logprobs,
)
from rlvr.rollout.server import ServerError, parse_choices


def test_max_abs_delta_is_the_largest_absolute_gap() -> None:
    assert max_abs_delta([-1.0, -2.0, -0.5], [-1.0, -2.25, -0.4]) == pytest.approx(0.25)
    assert max_abs_delta([-3.0], [-3.0]) == 0.0
    assert max_abs_delta([-1.0, float("nan")], [-1.0, -1.0]) == math.inf
    with pytest.raises(ValueError, match="2 server log-probs vs 1"):
        max_abs_delta([-1.0, -2.0], [-1.0])


def test_check_receipt_passes_within_tol_and_names_server_and_delta_otherwise() -> None:
    ok = check_receipt("http://a:1", 5e-5, 1e-4, expected_version="v3", reported_version="v3")
    assert ok.delta == 5e-5 and ok.version == "v3"
    with pytest.raises(WeightSyncError) as info:
        check_receipt("http://a:1", 1.33, 1e-4)
    assert info.value.server == "http://a:1" and info.value.delta == 1.33
    assert "http://a:1" in str(info.value) and "1.33" in str(info.value)
    assert "receipt_tol=0.0001" in str(info.value)
    with pytest.raises(WeightSyncError):
        check_receipt("http://a:1", math.inf, 1e-4)
    with pytest.raises(WeightSyncError, match="version 'v2', expected 'v3'"):
        check_receipt("http://a:1", 0.0, 1e-4, expected_version="v3", reported_version="v2")


def test_build_probe_concatenates_and_cycles() -> None:
    assert build_probe([[1, 2], [3]], length=7) == [1, 2, 3, 1, 2, 3, 1]
    assert build_probe([list(range(100))], length=5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="at least 2 tokens"):
        build_probe([[5]])


class _FixedLogits(torch.nn.Module):
    """Logits [0, ln 3] at every position: p = (1/4, 3/4)."""

    device = torch.device("cpu")

    def forward(self, input_ids, attention_mask):
        n, length = input_ids.shape
        logits = torch.tensor([0.0, math.log(3.0)]).expand(n, length, 2)
        return SimpleNamespace(logits=logits)


def test_trainer_logprobs_scores_each_token_given_its_prefix() -> None:
    model = _FixedLogits()
    model.train()
    got = trainer_logprobs(model, [1, 0, 1, 1])
    assert got == pytest.approx([math.log(0.25), math.log(0.75), math.log(0.75)])
    assert model.training  # mode restored


def test_server_prompt_logprobs_reads_json_keys_and_checks_ids() -> None:
    response = {"prompt_logprobs": [None, {"7": {"logprob": -0.5}}, {"9": {"logprob": -1.5}}]}
    assert server_prompt_logprobs(response, [3, 7, 9]) == [-0.5, -1.5]
    with pytest.raises(ValueError, match="position 2 lacks token 8"):
        server_prompt_logprobs(response, [3, 7, 8])
    with pytest.raises(ValueError, match="expected 4 prompt log-prob entries, got 3"):
        server_prompt_logprobs(response, [3, 7, 9, 1])


def _config(**model) -> dict:
    base = {"logprobs_mode": "processed_logprobs", "dtype": "torch.float32", "max_model_len": 256}
    return {"model_config": base | model, "weight_transfer_config": {"backend": "gloo"}}


def test_check_server_config_names_each_mismatch() -> None:
    want = ServerExpectations(dtype="float32", backend="gloo", min_model_len=17, max_model_len=256)
    check_server_config("http://s:1", _config(), want)
    for config, words in [
        (_config(logprobs_mode="raw_logprobs"), "logprobs_mode is 'raw_logprobs'"),
        (_config(dtype="torch.bfloat16"), "dtype is 'bfloat16'"),
        (_config(max_model_len=512), "max_model_len is 512, rollout.max_model_len is 256"),
        ({**_config(), "weight_transfer_config": {"backend": "nccl"}}, "backend is 'nccl'"),
        ({"model_config": _config()["model_config"]}, "backend is None"),
    ]:
        with pytest.raises(ServerConfigError, match="http://s:1") as info:
            check_server_config("http://s:1", config, want)
        assert words in str(info.value)
    short = ServerExpectations(dtype="float32", backend="gloo", min_model_len=300)
    with pytest.raises(ServerConfigError, match="max_model_len is 256, the recipe needs 300"):
        check_server_config("http://s:1", _config(), short)


def test_parse_choices_orders_by_index_and_checks_logprob_ids() -> None:
    def choice(index, ids, reason):
        content = [{"token_id": t, "logprob": -0.1 * t} for t in ids]
        return {
            "index": index,
            "token_ids": ids,
            "logprobs": {"content": content},
            "finish_reason": reason,
        }

    response = {"choices": [choice(1, [4], "length"), choice(0, [2, 3], "stop")]}
    out = parse_choices(response, lambda ids: "".join(map(str, ids)))
    assert [c.token_ids for c in out] == [[2, 3], [4]]
    assert out[0].logprobs == pytest.approx([-0.2, -0.3]) and out[0].text == "23"
    assert [c.finish_reason for c in out] == ["stop", "length"]
    bad = {"choices": [{"index": 0, "token_ids": [2], "logprobs": {"content": []}}]}
    with pytest.raises(ServerError, match="1 tokens but 0 log-probs"):
        parse_choices(bad, str)


def test_serve_command_has_what_rl_needs_and_binds_localhost() -> None:
    from rlvr.serve import main, server_command

    cmd, env = server_command("m", port=9123, weight_transfer="gloo", extra=["--max-num-seqs", "8"])
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(cmd)
    for flag in (
        "--host 127.0.0.1",
        "--port 9123",
        "--logprobs-mode processed_logprobs",
        "--enable-scale-out",
        '--weight-transfer-config {"backend": "gloo"}',
        "--worker-extension-cls rlvr.rollout.vllm_gloo.GlooWorkerExtension",
        "--dtype float32",
        "--seed 0",
        "--max-num-seqs 8",
    ):
        assert flag in joined
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    nccl, _ = server_command("m", weight_transfer="nccl")
    assert "--worker-extension-cls" not in nccl
    with pytest.raises(SystemExit):
        main(["m", "--weight-transfer", "bogus"])


def test_rollout_mode_keys(tmp_path) -> None:
    base = {"model": {"path": "m"}}
    r = Recipe.model_validate(base)
    assert r.rollout.mode == "colocate" and r.rollout.server.receipt_tol == 1e-4
    with pytest.raises(ValueError, match="rollout.server.urls"):
        Recipe.model_validate({**base, "rollout": {"mode": "server"}})
    ok = Recipe.model_validate(
        {**base, "rollout": {"mode": "server", "server": {"urls": ["http://h:1"], "timeout_s": 5}}}
    )
    assert ok.rollout.server.timeout_s == 5
    path = tmp_path / "r.yaml"
    path.write_text("model: {path: m}\n")
    with pytest.raises(RecipeError, match="receipt_tol"):
        load_recipe(path, ["rollout.server.receipt_tol=-1"])


def test_a_dead_url_fails_fast_with_the_server_named() -> None:
    pytest.importorskip("requests")
    from rlvr.rollout.server import VLLMServerEngine

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(WeightSyncError, match=f"rollout server {url}: pre-flight failed"):
        VLLMServerEngine([url], tokenizer=None, timeout_s=5)
    assert time.monotonic() - start < 5
