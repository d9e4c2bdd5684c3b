"""APGD-CE and APGD-T (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", Algorithm 1): L∞ projected gradient ascent with momentum (α = 0.75) and a step size
halved at checkpoints where the loss stopped rising (condition 1: fewer than ρ·k of the last k steps raised it;
condition 2: the step size was not just reduced and the best loss did not improve).

The first two members of AutoAttack's standard version as torchattacks 3.5.1 ran them (its ``APGD(loss="ce")`` and
``APGDT``: 10 steps, one restart, ``seed`` re-seeding the random start): the same operations in the same order
and the same random numbers (CPU generator), so a model gets the same adversarial images
(tests/test_attacks.py checks this against torchattacks where it is installed). Inputs: the model in pixel
space, x (N, C, H, W) in [0, 1], y (N,), ε in pixel units; outputs: adversarial images (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dlr_loss_targeted(logits: Tensor, y: Tensor, y_target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020, Eq. 4): −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2), (N,)."""
    z_sorted, _ = logits.sort(dim=1)
    u = np.arange(logits.shape[0])
    return -(logits[u, y] - logits[u, y_target]) / (
        z_sorted[:, -1] - 0.5 * z_sorted[:, -3] - 0.5 * z_sorted[:, -4] + 1e-12
    )


def _oscillation(losses: np.ndarray, j: int, k: int, rho: float) -> np.ndarray:
    """Condition 1: at most ρ·k of the last k steps raised the loss, per image."""
    t = np.zeros(losses.shape[1])
    for c in range(k):
        t += losses[j - c] > losses[j - c - 1]
    return t <= k * rho * np.ones(t.shape)


def _loss_and_grad(model: nn.Module, x_adv: Tensor, loss_fn) -> tuple[Tensor, Tensor, Tensor]:
    with torch.enable_grad():
        logits = model(x_adv)
        loss_indiv = loss_fn(logits)
        loss = loss_indiv.sum()
    grad = torch.zeros_like(x_adv) + torch.autograd.grad(loss, [x_adv])[0].detach()
    return logits, loss_indiv, grad / 1.0


def _run(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, loss_fn, rng, rho: float = 0.75):
    """One APGD run on (x, y): (images with the best loss, still correct (N,) bool, best loss, adversarial images)."""
    dev = x.device
    steps_2, steps_min, size_decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    t = 2 * torch.rand(x.shape, generator=rng).to(dev).detach() - 1
    radius = t.reshape([t.shape[0], -1]).abs().max(dim=1, keepdim=True)[0].reshape([-1, 1, 1, 1])
    x_adv = (x.detach() + eps * torch.ones([x.shape[0], 1, 1, 1]).to(dev).detach() * t / radius).clamp(0.0, 1.0)
    x_best, x_best_adv = x_adv.clone(), x_adv.clone()
    loss_steps = torch.zeros([steps, x.shape[0]])
    x_adv.requires_grad_()
    logits, loss_indiv, grad = _loss_and_grad(model, x_adv, loss_fn)
    grad_best = grad.clone()
    acc = logits.detach().max(1)[1] == y
    loss_best = loss_indiv.detach().clone()
    step_size = eps * torch.ones([x.shape[0], 1, 1, 1]).to(dev).detach() * torch.Tensor([2.0]).to(dev).reshape([1] * 4)
    x_adv_old = x_adv.clone()
    k, u, counter3 = steps_2 + 0, np.arange(x.shape[0]), 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = np.zeros(loss_best.shape) == np.zeros(loss_best.shape)
    for i in range(steps):
        with torch.no_grad():  # the step: sign of the gradient, then momentum, each projected (Algorithm 1, l. 7–8)
            x_adv = x_adv.detach()
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            x_adv_1 = x_adv + step_size * torch.sign(grad)
            x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
            x_adv_1 = torch.clamp(
                torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps), 0.0, 1.0
            )
            x_adv = x_adv_1 + 0.0
        x_adv.requires_grad_()
        logits, loss_indiv, grad = _loss_and_grad(model, x_adv, loss_fn)
        pred = logits.detach().max(1)[1] == y
        acc = torch.min(acc, pred)
        fooled = (pred == 0).nonzero().squeeze()
        x_best_adv[fooled] = x_adv[fooled] + 0.0
        with torch.no_grad():  # keep the best point; at checkpoints halve the step where the loss stalled
            y1 = loss_indiv.detach().clone()
            loss_steps[i] = y1.cpu() + 0
            ind = (y1 > loss_best).nonzero().squeeze()
            x_best[ind] = x_adv[ind].clone()
            grad_best[ind] = grad[ind].clone()
            loss_best[ind] = y1[ind] + 0
            counter3 += 1
            if counter3 == k:
                fl_osc = _oscillation(loss_steps.detach().cpu().numpy(), i, k, rho)
                fl_no_impr = (~reduced_last_check) * (loss_best_last_check.cpu().numpy() >= loss_best.cpu().numpy())
                fl_osc = ~(~fl_osc * ~fl_no_impr)
                reduced_last_check = np.copy(fl_osc)
                loss_best_last_check = loss_best.clone()
                if np.sum(fl_osc) > 0:
                    step_size[u[fl_osc]] /= 2.0
                    fl_osc = np.where(fl_osc)
                    x_adv[fl_osc] = x_best[fl_osc].clone()
                    grad[fl_osc] = grad_best[fl_osc].clone()
                counter3 = 0
                k = np.maximum(k - size_decr, steps_min)
    return x_best, acc, loss_best, x_best_adv


def _fool(model: nn.Module, x: Tensor, y: Tensor, acc: Tensor, adv: Tensor, run) -> None:
    """Attack the images ``acc`` still marks correct with ``run``; record those it fools in ``acc`` and ``adv``."""
    ind_to_fool = acc.nonzero().squeeze()
    if len(ind_to_fool.shape) == 0:
        ind_to_fool = ind_to_fool.unsqueeze(0)
    if ind_to_fool.numel() != 0:
        _, acc_curr, _, adv_curr = run(x[ind_to_fool].clone(), y[ind_to_fool].clone())
        ind_curr = (acc_curr == 0).nonzero().squeeze()
        acc[ind_to_fool[ind_curr]] = 0
        adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()


def apgd_ce(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10, seed: int = 0) -> Tensor:
    """APGD on the cross-entropy loss, one restart."""
    rng = torch.Generator().manual_seed(seed)
    x, y = x.clone().detach(), y.clone().detach()
    adv = x.clone()
    acc = model(x).max(1)[1] == y

    def run(xs, ys):
        return _run(model, xs, ys, eps, steps, lambda logits: F.cross_entropy(logits, ys, reduction="none"), rng)

    _fool(model, x, y, acc, adv, run)
    return adv


def apgd_t(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, n_classes: int, steps: int = 10, seed: int = 0
) -> Tensor:
    """APGD-T: APGD on the targeted DLR loss towards each of the n_classes − 1 highest-ranked other classes in
    turn (one restart each), each run on the images the earlier ones left correct."""
    rng = torch.Generator().manual_seed(seed)
    x, y = x.clone().detach(), y.clone().detach()
    adv = x.clone()
    acc = model(x).max(1)[1] == y
    for target_class in range(2, n_classes + 1):

        def run(xs, ys, target_class=target_class):
            y_target = model(xs).sort(dim=1)[1][:, -target_class]
            return _run(model, xs, ys, eps, steps, lambda logits: dlr_loss_targeted(logits, ys, y_target), rng)

        _fool(model, x, y, acc, adv, run)
    return adv
