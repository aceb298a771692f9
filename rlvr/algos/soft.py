"""SofT-GRPO: Gumbel soft-thinking tokens and the reparameterised log-prob of a soft step.

Zheng & Lee, "SofT-GRPO: Surpassing Discrete-Token LLM Reinforcement Learning via
Gumbel-Reparameterized Soft-Thinking Policy Optimization" (arXiv 2511.06411); formulas as in
the authors' code (their SGLang sampler ``srt/layers/sampler.py`` and verl
``utils/torch_functional.py::logprobs_from_logits_topk_gumbel``).

Rollout, one thinking step from logits z (temperature T, top-k k, top-p p, noise scale lam):

    p       = softmax(z / T), top-k renormalised, top-p renormalised
    ids     = the k most probable tokens, p~_i = p[ids_i] / sum_j p[ids_j]
    l_i     = log(p~_i + 1e-6)
    g_i     = clamp(-log(Exp(1)), -1.5, 3)                 (standard Gumbel, clamped)
    g'_i    = l_i + lam * g_i                               (the perturbed logits, stored)
    y       = softmax(g' / tau_g)                           (:func:`soft_mixture_weights`)
    e       = sum_i y_i E[ids_i]                            (next input embedding)
    token   = ids[argmax g']                                (the discrete token recorded)

Training log-prob of a soft step under the policy theta (:func:`soft_step_logprob`):

    p~^th_i = softmax(z_th / T)[ids_i] / sum_j softmax(z_th / T)[ids_j]
    l^th_i  = log(p~^th_i + 1e-6)
    eps_i   = clamp(g'_i - l^th_i, -1.5, 3)
    log pi_th(step) = mean_{i : l^th_i > -3} ( -eps_i - exp(-eps_i) )

i.e. the mean Gumbel(0, 1) log-density of the noise that turns the policy's top-k log-probs
into the recorded g'. Its gradient w.r.t. l^th_i is (1 - exp(-eps_i)) / |M| (0 where the
clamp is active). The full-vocabulary normaliser of softmax(z / T) cancels in p~^th, so only
the k logits z[ids] are needed (:func:`soft_step_logprob_topk`).

The rollout log-prob the engine records is this same formula at the rollout's logits, so the
ratio is exactly 1 at theta_old. The authors' sampler records ``mean_{l_i > -3}(-g_i -
exp(-g_i))`` with l_i from the top-p-renormalised p~; the two agree whenever lam = 1 and top-p
keeps all k ids (a top-p-dropped id has l_i = log 1e-6 at rollout but a finite l^th_i in
training). verl recomputes old log-probs with the actor, so the authors' ratio does not use
the sampler's value either.
"""

from __future__ import annotations

import torch

GUMBEL_MIN = -1.5  # clamp of the Gumbel noise (sampler) and of eps (training)
GUMBEL_MAX = 3.0
LOG_EPS = 1e-6  # l = log(p~ + 1e-6)
MASK_LOGP = -3.0  # only ids with l > -3 enter the mean


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision inputs, float64 kept (tests), float32 otherwise."""
    return x.double() if x.dtype == torch.float64 else x.float()


def gumbel_log_density(eps: torch.Tensor) -> torch.Tensor:
    """log density of the standard Gumbel distribution: -eps - exp(-eps)."""
    return -eps - torch.exp(-eps)


def soft_mixture_weights(perturbed: torch.Tensor, tau_g: float) -> torch.Tensor:
    """Mixture weights y = softmax(g' / tau_g) over the last dim ([N, k] -> [N, k])."""
    if tau_g <= 0:
        raise ValueError(f"tau_g must be > 0, got {tau_g}")
    return torch.softmax(_wide(perturbed) / tau_g, dim=-1)


def topk_log_probs(topk_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """l_i = log(p~_i + 1e-6) with p~ = softmax(z[ids] / T) renormalised over the k ids."""
    return torch.log(torch.softmax(_wide(topk_logits) / temperature, dim=-1) + LOG_EPS)


def soft_step_logprob_topk(
    topk_logits: torch.Tensor, perturbed: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Reparameterised log-prob of soft steps from the policy's logits at the k recorded ids.

    ``topk_logits`` [N, k] = z[ids], ``perturbed`` [N, k] = g'; returns [N] float32
    (float64 for float64 logits).
    """
    ell = topk_log_probs(topk_logits, temperature)
    eps = (perturbed.to(ell.dtype) - ell).clamp(GUMBEL_MIN, GUMBEL_MAX)
    mask = (ell > MASK_LOGP).float()
    # the top id always passes (p~ >= 1/k > e^-3 for k <= 20); clamp guards larger k
    return (gumbel_log_density(eps) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def soft_step_logprob(
    logits: torch.Tensor,
    topk_ids: torch.Tensor,
    perturbed: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """log pi_theta of soft steps: logits [N, V], topk_ids [N, k], perturbed g' [N, k] -> [N].

    Differentiable w.r.t. ``logits``; formula in the module docstring.
    """
    return soft_step_logprob_topk(logits.gather(-1, topk_ids), perturbed, temperature)


def filtered_probs(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """softmax(z / T), then top-k renormalised, then top-p renormalised ([N, V] -> [N, V]).

    Top-p keeps the smallest prefix of the sorted distribution whose mass reaches ``top_p``
    (the token that crosses the threshold is kept), as SGLang's ``top_p_renorm_prob``.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if 0 < top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
        keep_sorted = before < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def soft_step(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    k: int,
    top_p: float,
    tau_g: float,
    noise_scale: float,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One soft-thinking step for a batch: logits [N, V], uniforms [N, k] in (0, 1).

    Returns (ids [N, k], perturbed g' [N, k], y [N, k]), sorted by g' descending, so ids[:, 0]
    is the discrete token. The k ids are the k most probable after top-k / top-p filtering;
    ids the filter dropped keep p~ = 0, so l = log 1e-6 and they carry almost no weight.
    """
    probs = filtered_probs(logits, temperature, k, top_p)
    top_p_k, ids = probs.topk(k, dim=-1)
    top_p_k = top_p_k / top_p_k.sum(-1, keepdim=True)
    ell = torch.log(top_p_k + LOG_EPS)
    gumbel = (-torch.log(-torch.log(uniforms.float()))).clamp(GUMBEL_MIN, GUMBEL_MAX)
    perturbed = ell + noise_scale * gumbel
    perturbed, order = perturbed.sort(dim=-1, descending=True)
    ids = ids.gather(-1, order)
    return ids, perturbed, soft_mixture_weights(perturbed, tau_g)
