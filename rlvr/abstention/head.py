"""The value head and its files.

Architecture (HenDav/value-steering ``value_probe.py::ValueHead``, taken there from the VFD
repo's DenseValueModel), fp32:

    z_t = Linear(H,1)(ReLU(Linear(H,H)(Tanh(Linear(H,H)(h_t)))))      V̂_t = σ(z_t)

h_t is the final decoder layer's post-final-norm hidden state at the position whose logits
produce token t (``FEATURE_SPEC``), cast to fp32; the backbone is frozen. Labels are
y = 1[correct] (the head scores P(continuing ends correct)).

Files (safetensors only, no pickle): ``<stem>.safetensors`` holds the head's state dict and
``<stem>.json`` the sidecar: feature spec, hidden size, threshold, the isotonic calibration
knots (when calibrated) and free-form ``info`` (recipe, counts). Threshold precedence
(:func:`resolve_threshold`, as the library's ``resolve_threshold``): explicit > sidecar > 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

FEATURE_SPEC = {"layer": "final", "norm": "post", "pooling": "none", "dtype": "fp32"}
DEFAULT_THRESHOLD = 0.5


class ValueHead(nn.Module):
    """Linear(H,H) -> Tanh -> Linear(H,H) -> ReLU -> Linear(H,1); returns the logit z."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.net = nn.Sequential(
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """[..., H] features -> [...] logits (fp32)."""
        return self.net(h.float()).squeeze(-1)


def head_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a head path given with or without its suffix."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_head(head: ValueHead, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar (through temporary files);
    returns the weights path."""
    from safetensors.torch import save_file

    weights, sidecar = head_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp))
    tmp.replace(weights)
    full = {"feature_spec": FEATURE_SPEC, "hidden_size": head.hidden_size, **meta}
    tmp = sidecar.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(full, indent=1, default=str))
    tmp.replace(sidecar)
    return weights


def load_head(path: str | Path) -> tuple[ValueHead, dict[str, Any]]:
    """(head in eval mode, sidecar dict); clear errors naming the file at fault."""
    from safetensors.torch import load_file

    weights, sidecar = head_paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: value head weights not found (--abstain / head)")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar}: value head sidecar not found (next to {weights})")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{sidecar}: not valid JSON ({e})") from e
    if meta.get("feature_spec") != FEATURE_SPEC:
        raise ValueError(
            f"{sidecar}: feature_spec {meta.get('feature_spec')!r} is not the one rlvr "
            f"captures ({FEATURE_SPEC})"
        )
    if not isinstance(meta.get("hidden_size"), int):
        raise ValueError(f"{sidecar}: missing integer 'hidden_size'")
    head = ValueHead(meta["hidden_size"])
    try:
        head.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise ValueError(f"{weights}: does not match hidden_size {meta['hidden_size']}: {e}") from e
    head.eval()
    return head, meta


def resolve_threshold(explicit: float | None, meta: dict[str, Any] | None) -> float:
    """explicit > sidecar ``threshold`` > 0.5."""
    if explicit is not None:
        return float(explicit)
    if meta and meta.get("threshold") is not None:
        return float(meta["threshold"])
    return DEFAULT_THRESHOLD
