"""Ranger optimiser: RAdam + Lookahead + gradient centralisation.

Both reference trainers (Feature-Style ``trainer.py``, pSp ``training/coach.py``) optimise their encoder
with lessw2020's Ranger (version 20.4.11). This is an implementation of the same update rule:

1. Gradient centralisation (Yong et al., 2020): for every parameter with more than one dimension
   (conv and linear weights), subtract the gradient's mean over all dimensions but the first.
2. RAdam (Liu et al., ICLR 2020): Adam moments ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``;
   with ``rho_inf = 2 / (1 - b2) - 1`` and ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``:
   if ``rho_t > 5`` (``N_sma_threshold``) the step is
   ``lr * sqrt((1 - b2^t) (rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)) / (1 - b1^t)
   * m / (sqrt(v) + eps)``, otherwise the un-adapted momentum step ``lr / (1 - b1^t) * m``.
   Weight decay, when non-zero, is ``p -= weight_decay * lr * p`` before the step.
3. Lookahead (Zhang et al., NeurIPS 2019): every ``k`` steps, ``slow += alpha (fast - slow)`` and the
   fast weights are reset to the slow ones.

Defaults as Ranger 20.4.11: ``alpha=0.5, k=6, N_sma_threshold=5, betas=(0.95, 0.999), eps=1e-5,
weight_decay=0``, centralisation on conv and linear weights. All state (moments, slow weights, step)
is in ``state_dict()``, so a run resumes exactly.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import Optimizer

__all__ = ["Ranger"]


class Ranger(Optimizer):
    """RAdam + Lookahead + gradient centralisation (see the module docstring).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (> 0).
        alpha: Lookahead interpolation factor in [0, 1].
        k: Lookahead period in steps (>= 1).
        n_sma_threshold: RAdam variance-rectification threshold (5).
        betas: Adam betas.
        eps: denominator epsilon.
        weight_decay: decoupled-from-moments L2 decay (``p -= wd * lr * p``).
        use_gc: gradient centralisation.
        gc_conv_only: centralise only parameters with more than 3 dimensions (conv weights).

    Raises:
        ValueError: an argument out of range.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 0.5, k: int = 6,
                 n_sma_threshold: float = 5.0, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, use_gc: bool = True, gc_conv_only: bool = False):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Ranger alpha must be in [0, 1], got {alpha}")
        if k < 1:
            raise ValueError(f"Ranger k must be >= 1, got {k}")
        if lr <= 0:
            raise ValueError(f"Ranger lr must be > 0, got {lr}")
        if eps <= 0:
            raise ValueError(f"Ranger eps must be > 0, got {eps}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Ranger betas must be in [0, 1), got {betas}")
        defaults = dict(lr=lr, alpha=alpha, k=int(k), n_sma_threshold=float(n_sma_threshold),
                        betas=tuple(betas), eps=eps, weight_decay=weight_decay, use_gc=bool(use_gc),
                        gc_min_dim=3 if gc_conv_only else 1)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient. Returns the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Ranger does not support sparse gradients")
                grad = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["slow_buffer"] = p.detach().clone()
                if group["use_gc"] and grad.dim() > group["gc_min_dim"]:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)

                beta2_t = beta2 ** t
                rho_inf = 2.0 / (1.0 - beta2) - 1.0
                rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
                rectified = rho_t > group["n_sma_threshold"]
                if rectified:
                    step_size = math.sqrt((1 - beta2_t) * (rho_t - 4) / (rho_inf - 4) * (rho_t - 2) / rho_t
                                          * rho_inf / (rho_inf - 2)) / (1 - beta1 ** t)
                else:
                    step_size = 1.0 / (1 - beta1 ** t)

                p32 = p.float()
                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
                if rectified:
                    denom = exp_avg_sq.sqrt().add_(group["eps"])
                    p32.addcdiv_(exp_avg, denom, value=-step_size * group["lr"])
                else:
                    p32.add_(exp_avg, alpha=-step_size * group["lr"])
                p.copy_(p32)

                if t % group["k"] == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p - slow, alpha=group["alpha"])
                    p.copy_(slow)
        return loss
