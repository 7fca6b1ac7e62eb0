"""Ranger (RAdam + Lookahead + gradient centralisation), the optimiser StyleCLIP's and HairCLIP's
mappers were trained with (their ``criteria``/``training/ranger.py``: betas (0.95, 0.999),
Lookahead k 6 and alpha 0.5, centralisation of gradients of matrices and kernels).

Built on ``torch.optim.RAdam``; Lookahead keeps slow weights and every ``k`` steps moves them
``alpha`` of the way to the fast weights, then resets the fast weights to them.
"""
from __future__ import annotations

import torch

__all__ = ["Ranger"]


class Ranger(torch.optim.RAdam):
    def __init__(self, params, lr: float = 1e-3, betas=(0.95, 0.999), eps: float = 1e-5, weight_decay: float = 0.0,
                 k: int = 6, alpha: float = 0.5, use_gc: bool = True):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.k, self.alpha, self.use_gc = k, alpha, use_gc

    @torch.no_grad()
    def step(self, closure=None):
        if self.use_gc:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.ndim > 1:
                        p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.ndim)), keepdim=True))
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if "slow" not in st:
                    st["slow"] = p.detach().clone()
                    st["la_step"] = 0
                st["la_step"] += 1
                if st["la_step"] % self.k == 0:
                    st["slow"].add_(p - st["slow"], alpha=self.alpha)
                    p.copy_(st["slow"])
        return loss
