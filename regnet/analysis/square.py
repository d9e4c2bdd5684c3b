"""Square attack in L∞ (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial attack
via random search", Algorithm 1 with the L∞ update of Sect. 3.1): a random search that only reads logits. It starts
from vertical stripes of ±ε and, at each query, sets a random square window of side s (shrinking with the
schedule of p, the fraction of pixels changed) to ±2ε per channel, keeping the change when the margin loss
z_y − max_{i≠y} z_i falls or the image becomes misclassified.

AutoAttack's last member and regnet's ``square`` attack as torchattacks 3.5.1 ran them (``Square(norm="Linf",
n_restarts=1, p_init=0.8, loss="margin")``): the same operations and the same random numbers (a CPU generator
seeded with ``seed``). Inputs: the model in pixel space, x (N, C, H, W) in [0, 1], y (N,), ε in pixel units;
output: adversarial images (N, C, H, W), the clean image where none was found.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

P_INIT = 0.8


def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """z_y − max_{i≠y} z_i, (N,): ≤ 0 once the image is misclassified."""
    logits = model(x)
    u = torch.arange(x.shape[0])
    y_corr = logits[u, y].clone()
    logits[u, y] = -float("inf")
    return y_corr - logits.max(dim=-1)[0]


def p_selection(it: int, n_queries: int) -> float:
    """The fraction of pixels a query changes after ``it`` queries, the schedule rescaled to 10,000 queries."""
    it = int(it / n_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                       (8000, 256)):  # fmt: skip
        if it <= bound:
            return P_INIT / div
    return P_INIT / 512


def _sign(shape, rng: torch.Generator, device) -> Tensor:
    return torch.sign(2 * torch.rand(shape, generator=rng).to(device) - 1)


def _int(high: int, rng: torch.Generator, device) -> Tensor:
    return (0 + high * torch.rand([1], generator=rng).to(device)).long()


@torch.no_grad()
def _run(model: nn.Module, x: Tensor, y: Tensor, eps: float, n_queries: int, rng: torch.Generator) -> Tensor:
    dev = x.device
    c, h, w = x.shape[1:]
    n_features = c * h * w
    x_best = torch.clamp(x + eps * _sign([x.shape[0], c, 1, w], rng, dev), 0.0, 1.0)
    margin_min = _margin(model, x_best, y)
    loss_min = margin_min.clone()
    for i_iter in range(n_queries):
        idx_to_fool = (margin_min > 0.0).nonzero().flatten()
        if len(idx_to_fool) == 0:
            break
        x_curr, x_best_curr, y_curr = x[idx_to_fool], x_best[idx_to_fool], y[idx_to_fool]
        margin_min_curr, loss_min_curr = margin_min[idx_to_fool], loss_min[idx_to_fool]
        s = max(int(round(math.sqrt(p_selection(i_iter, n_queries) * n_features / c))), 1)
        vh, vw = _int(h - s, rng, dev), _int(w - s, rng, dev)
        new_deltas = torch.zeros([c, h, w]).to(dev)
        new_deltas[:, vh : vh + s, vw : vw + s] = 2.0 * eps * _sign([c, 1, 1], rng, dev)
        x_new = torch.min(torch.max(x_best_curr + new_deltas, x_curr - eps), x_curr + eps)
        x_new = torch.clamp(x_new, 0.0, 1.0)
        margin = _margin(model, x_new, y_curr)
        loss = margin
        idx_improved = (loss < loss_min_curr).float()
        loss_min[idx_to_fool] = idx_improved * loss + (1.0 - idx_improved) * loss_min_curr
        idx_improved = torch.max(idx_improved, (margin <= 0.0).float())  # better, or misclassified
        margin_min[idx_to_fool] = idx_improved * margin + (1.0 - idx_improved) * margin_min_curr
        idx_improved = idx_improved.reshape([-1, *[1] * len(x.shape[:-1])])
        x_best[idx_to_fool] = idx_improved * x_new + (1.0 - idx_improved) * x_best_curr
        if (margin_min <= 0.0).sum() == x.shape[0]:
            break
    return x_best


@torch.no_grad()
def square_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, n_queries: int = 5000, seed: int = 0) -> Tensor:
    """Square attack (one restart) on the images the model classifies correctly."""
    rng = torch.Generator().manual_seed(seed)
    adv = x.clone()
    y = y.detach().clone().long()
    acc = model(x).max(1)[1] == y
    ind_to_fool = acc.nonzero().squeeze()
    if len(ind_to_fool.shape) == 0:
        ind_to_fool = ind_to_fool.unsqueeze(0)
    if ind_to_fool.numel() != 0:
        x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
        adv_curr = _run(model, x_to_fool, y_to_fool, eps, n_queries, rng)
        acc_curr = model(adv_curr).max(1)[1] == y_to_fool
        ind_curr = (acc_curr == 0).nonzero().squeeze()
        adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()
    return adv
