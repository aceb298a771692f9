"""The per-step abstention gate on the transformers engine (rlvr/rollout/hf.py).

At every decode step, for every row still generating, the value is computed from the same
forward that produced the step's logits: a forward pre-hook on the output embedding
(``lm_head``) keeps its input at the last position, h_t (the post-final-norm hidden state,
exactly the tensor ``lm_head`` consumes), so no extra forward runs. A logits processor placed
after the sampling warpers then computes V̂_t = cal(σ(head(h_t))) (cal = the sidecar's isotonic
map, identity when uncalibrated) and, where V̂_t < c and at least ``min_tokens`` tokens were
generated, sets the row's scores to −∞ except EOS = 0, so the sampler (or argmax) emits EOS
(HenDav/value-steering ``steering_ops.py::force_eos_rows``). The step index t (tokens
generated before the forced EOS) is recorded; the engine marks the completion
``finish_reason="abstain"``.

Step t's check happens before token t is drawn, so t = 0 is the value at the last prompt
token (the pre-generation value) and the value trace of a completion of T tokens has T
entries. The gate can also only observe (``enforce=False``: value traces of a full run, the
baselines' input) and capture the features themselves (``capture=True``, fp16, for training
the head; features captured at decode time, as the library requires, not by a prefill).

vLLM exposes no per-step hidden states to a logits processor, so the gate exists on the hf
engine only.
"""

from __future__ import annotations

from typing import Any

import torch

from rlvr.abstention.calibrate import IsotonicCalibrator
from rlvr.abstention.head import ValueHead


class AbstentionGate:
    """Gate settings for an engine: head, threshold c, calibration and what to record."""

    def __init__(
        self,
        head: ValueHead | None,
        threshold: float = 0.5,
        *,
        calibrator: IsotonicCalibrator | None = None,
        enforce: bool = True,
        trace: bool = True,
        capture: bool = False,
        min_tokens: int = 0,
    ) -> None:
        if head is None and (enforce or trace):
            raise ValueError("AbstentionGate: enforce / trace need a value head")
        self.head = head
        self.threshold = float(threshold)
        self.calibrator = calibrator
        self.enforce = enforce
        self.trace = trace
        self.capture = capture
        self.min_tokens = int(min_tokens)

    @classmethod
    def from_file(cls, path: str, threshold: float | None = None, **kw: Any) -> AbstentionGate:
        from rlvr.abstention.head import load_head, resolve_threshold

        head, meta = load_head(path)
        cal = meta.get("calibration")
        return cls(
            head,
            resolve_threshold(threshold, meta),
            calibrator=IsotonicCalibrator.from_dict(cal) if cal else None,
            **kw,
        )

    @torch.no_grad()
    def value(self, h: torch.Tensor) -> torch.Tensor:
        """[B, H] features -> [B] calibrated values."""
        assert self.head is not None
        v = torch.sigmoid(self.head(h.float()))
        return self.calibrator.torch(v) if self.calibrator is not None else v

    def start(self, model: Any, width: int, batch: int, eos_ids: list[int]) -> GateStep:
        """The logits processor for one generate call (call :meth:`GateStep.close` after)."""
        if self.head is not None:
            device = next(model.parameters()).device
            self.head.to(device)
        return GateStep(self, model, width, batch, eos_ids)


class GateStep:
    """Logits processor + lm_head hook for one ``generate`` call; holds what it recorded."""

    def __init__(
        self, gate: AbstentionGate, model: Any, width: int, batch: int, eos_ids: list[int]
    ) -> None:
        self.gate = gate
        self.width = width
        self.eos = torch.tensor(eos_ids)
        self.done = torch.zeros(batch, dtype=torch.bool)
        self.abstain_step: list[int | None] = [None] * batch
        self.traces: list[list[float]] = [[] for _ in range(batch)]
        self.features: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        self._h: torch.Tensor | None = None
        out = model.get_output_embeddings()
        if out is None:
            raise ValueError("abstention gate: the model has no output embedding (lm_head)")
        self._handle = out.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: tuple) -> None:
        self._h = args[0][:, -1].detach()

    def close(self) -> None:
        self._handle.remove()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._h is None:
            raise RuntimeError("abstention gate: lm_head was not called before the logits")
        step = input_ids.shape[1] - self.width
        if step > 0:
            self.done |= torch.isin(input_ids[:, -1].cpu(), self.eos)
        active = (~self.done).tolist()
        g = self.gate
        if g.capture:
            h16 = self._h.to("cpu", torch.float16)
            for row, a in enumerate(active):
                if a:
                    self.features[row].append(h16[row])
        if not (g.trace or g.enforce):
            return scores
        v = g.value(self._h)
        if g.trace:
            vals = v.tolist()
            for row, a in enumerate(active):
                if a:
                    self.traces[row].append(vals[row])
        if g.enforce and step >= g.min_tokens:
            stop = (v.cpu() < g.threshold) & ~self.done
            rows = stop.nonzero().flatten().tolist()
            if rows:
                scores = scores.clone()
                scores[rows] = float("-inf")
                scores[rows, int(self.eos[0])] = 0.0
                for row in rows:
                    self.abstain_step[row] = step
                    self.done[row] = True  # EOS comes next; checked no more
        return scores

    def row_features(self, row: int, length: int) -> torch.Tensor:
        """[length, H] fp16 features of a row's completion (positions 0..length-1)."""
        return torch.stack(self.features[row][:length]) if length else torch.zeros(0)


def attach_gate(engine: Any, gate: AbstentionGate | None) -> None:
    """Set (or clear, with None) the gate of an engine; only the plain hf engine has one."""
    from rlvr.rollout.hf import HFEngine

    if type(engine) is not HFEngine:
        raise ValueError(
            f"dynamic abstention needs per-step hidden states, which only the hf "
            f"(transformers) engine exposes; got {type(engine).__name__} (vLLM's sampler "
            "gives a logits processor no hidden states; soft thinking is not supported): "
            "use the hf engine"
        )
    engine.abstention = gate
