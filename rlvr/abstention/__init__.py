"""Dynamic abstention ("Knowing When to Quit", arXiv 2604.18419): a value probe on the final
hidden states that stops hopeless reasoning early.

At every prefix s_t the policy may abstain and take a fixed reward r_⊥; the rule abstains iff
V(s_t) < r_⊥, with V(s_t) = P(correct | s_t) estimated by a small head on the frozen policy's
post-final-norm hidden state (the tensor ``lm_head`` consumes). Spec:
``specs/rewards_stages_abstention.md`` §8 (built from the paper's abstract and the first
author's library HenDav/value-steering @ efe7d65, whose head and loss this follows).

- :mod:`.head`: :class:`ValueHead`, the sidecar (feature spec, threshold, calibration), I/O;
- :mod:`.loss`: the probe loss (focal + TD coherence);
- :mod:`.calibrate`: isotonic regression (pool-adjacent-violators) and the coverage quantile;
- :mod:`.gate`: the per-step gate on the transformers engine (forces EOS below the threshold);
- :mod:`.train`: fitting the head on cached decode-time features;
- :mod:`.replay`: the dynamic rule and the baselines replayed on recorded value traces;
- :mod:`.rl`: abstained RL rollouts scored r_⊥ (``rollout.abstention``, off by default).

The stage is ``rlvr abstain-train`` (:mod:`rlvr.stages.abstention_recipe`); the eval is
``rlvr eval --abstain HEAD``; docs/abstention.md has the measured result.
"""

from rlvr.abstention.calibrate import IsotonicCalibrator, coverage_threshold
from rlvr.abstention.gate import AbstentionGate, attach_gate
from rlvr.abstention.head import ValueHead, load_head, resolve_threshold, save_head
from rlvr.abstention.loss import focal_loss, probe_loss, td_coherence

__all__ = [
    "AbstentionGate",
    "IsotonicCalibrator",
    "ValueHead",
    "attach_gate",
    "coverage_threshold",
    "focal_loss",
    "load_head",
    "probe_loss",
    "resolve_threshold",
    "save_head",
    "td_coherence",
]
