"""Robustness: FGSM, PGD, AutoAttack, Square (L∞) and Gaussian-noise accuracy in pixel space, and the
input–output Jacobian norm.

Attacks work on images in pixel units [0, 1]: the model is wrapped with the run's normalisation
(``PixelModel``), ε is an L∞ radius in pixel units, and every adversarial image is clamped to [0, 1].
- FGSM (Goodfellow et al. 2015, Eq. 3):  x' = clip(x + ε · sign ∇ₓ L(f(x), y))
- PGD (Madry et al. 2017, Eq. 2): from a uniform random start in the ε-ball (optional), ``steps`` times
  x ← Π_{ε-ball ∩ [0,1]}(x + α · sign ∇ₓ L)
- AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks"): the standard version as torchattacks 3.5.1 ran it, APGD-CE, APGD-T (targeted DLR
  loss; :mod:`regnet.analysis.apgd`), FAB-T (:mod:`regnet.analysis.fab`) and Square
  (:mod:`regnet.analysis.square`) in turn, each on the images the previous ones left correctly classified. Needs
  ≥ 4 classes (the DLR loss).
- Square (Andriushchenko et al. 2020): a score-based black-box random search, ``n_queries`` model calls per
  image. A black-box attack that beats the gradient attacks signals gradient masking
  (:mod:`regnet.analysis.checks`).
- Gaussian noise: x' = clip(x + σ · N(0, I)), σ in pixel units.

AutoAttack and Square are regnet's own ports of torchattacks 3.5.1 (MIT), which pins requests 2.25 without
importing it: the same operations and random numbers, so they give the same adversarial images
(tests/test_attacks.py compares them where torchattacks is installed; docs/results/autoattack/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regnet.analysis.apgd import apgd_ce, apgd_t
from regnet.analysis.device import full_fp32
from regnet.analysis.fab import fab_t
from regnet.analysis.square import square_linf
from regnet.data.base import normalize
from regnet.models.common import device_of
from regnet.regularizers.jacobian import jacobian_sq_norms

ATTACKS = ("fgsm", "pgd", "noise", "autoattack", "square")
SQUARE_QUERIES = 5000  # the budget of Square in standard AutoAttack (Croce & Hein 2020)


class PixelModel(nn.Module):
    """model((x − mean) / std) for x in pixel units [0, 1], x: (N, C, H, W)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(normalize(x, self.mean, self.std))


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method; x (N, C, H, W) in [0, 1], ε in pixel units."""
    if eps == 0:
        return x.clone()
    return (x + eps * _input_grad(model, x, y).sign()).clamp(0.0, 1.0).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    step_size: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent in the L∞ ball of radius ε (pixel units), clamped to [0, 1].
    ``step_size`` defaults to 2.5 ε / steps (Madry et al.)."""
    if eps == 0:
        return x.clone()
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1
        x_adv = (x + eps * noise).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv = x_adv + alpha * _input_grad(model, x_adv, y).sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0).detach()
    return x_adv


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    n_classes: int,
    seed: int = 0,
    square_queries: int = SQUARE_QUERIES,
) -> Tensor:
    """Standard L∞ AutoAttack (APGD-CE, APGD-T, FAB-T, Square; 10 steps each, one restart, as torchattacks 3.5.1)
    of radius ε (pixel units) on ``model`` (pixel space); x (N, C, H, W) in [0, 1]. Each member attacks the clean
    images of those the earlier members left correct. ``square_queries`` below 5000 makes a cheaper, no longer
    standard, evaluation (for tests)."""
    if eps == 0:
        return x.clone()
    if n_classes < 4:
        raise ValueError(f"autoattack needs ≥ 4 classes (its APGD-T uses the DLR loss); this model has {n_classes}")
    members = (
        lambda xs, ys: apgd_ce(model, xs, ys, eps, seed=seed),
        lambda xs, ys: apgd_t(model, xs, ys, eps, n_classes, seed=seed),
        lambda xs, ys: fab_t(model, xs, ys, eps, n_classes),
        lambda xs, ys: square_linf(model, xs, ys, eps, square_queries, seed),
    )
    x, y = x.clone().detach(), y.clone().detach()
    final, fails = x.clone(), torch.arange(len(x), device=x.device)  # fails: indices still correctly classified
    for attack in members:
        adv = attack(x[fails], y[fails])
        with torch.no_grad():
            wrong = model(adv).max(1)[1] != y[fails]
        final[fails[wrong]] = adv[wrong]
        fails = fails[~wrong]
        if len(fails) == 0:
            break
    return final.detach()


def square(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int = 0, n_queries: int = SQUARE_QUERIES
) -> Tensor:
    """The Square attack (L∞, margin loss, one restart): a black-box attack that only reads logits."""
    if eps == 0:
        return x.clone()
    return square_linf(model, x, y, eps, n_queries, seed).detach()


def gaussian_noise(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(-1) == y).float().mean())


@full_fp32()
def attack_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str,
    eps_list: Sequence[float],
    batch_size: int = 500,
    seed: int = 0,
    pgd_steps: int = 10,
    pgd_step_size: float | None = None,
    pgd_random_start: bool = True,
    square_queries: int = SQUARE_QUERIES,
) -> list[dict]:
    """Accuracy (fraction) of ``model`` (pixel space) on (x, y) under ``attack`` for each ε.

    Each row also holds ``acc_bound``, the accuracy no attack can be kept above at that ε (see
    :func:`accuracy_bound`), for the sanity checks of :mod:`regnet.analysis.checks`."""
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r} is unknown: use one of {list(ATTACKS)}")
    model.eval()
    device = device_of(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        n_classes = model(x[:1].to(device)).shape[-1]
    rows = []
    for eps in eps_list:
        if eps < 0:
            raise ValueError(f"eps={eps!r} is invalid: ε is an L∞ radius in pixel units, use values in [0, 1]")
        correct = 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            if attack == "fgsm":
                xb = fgsm(model, xb, yb, eps)
            elif attack == "pgd":
                xb = pgd(model, xb, yb, eps, pgd_step_size, pgd_steps, pgd_random_start, generator=g)
            elif attack == "autoattack":
                xb = autoattack(model, xb, yb, eps, n_classes, seed, square_queries)
            elif attack == "square":
                xb = square(model, xb, yb, eps, seed, square_queries)
            else:
                xb = gaussian_noise(xb, eps, g)
            with torch.no_grad():
                correct += int((model(xb).argmax(-1) == yb).sum())
        rows.append({"attack": attack, "eps": float(eps), "acc": correct / len(x),
                     "steps": pgd_steps if attack == "pgd" else None,
                     "step_size": (pgd_step_size or 2.5 * eps / pgd_steps) if attack == "pgd" else None,
                     "random_start": pgd_random_start if attack == "pgd" else None,
                     "queries": square_queries if attack in ("autoattack", "square") else None,
                     "acc_bound": accuracy_bound(model, x, y, eps) if attack != "noise" else None,
                     "n_test": len(x)})  # fmt: skip
    return rows


@torch.no_grad()
def accuracy_bound(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> float:
    """The highest accuracy (fraction) an L∞ attack of radius ε may leave on (x, y) if it works.

    For ε ≥ 0.5 every ε-ball around an image in [0, 1] holds the all-grey image (every pixel 0.5): sending
    every image there leaves correct only the images of the class the model gives that grey image. Below 0.5
    there is no such bound (1)."""
    if eps < 0.5:
        return 1.0
    device = device_of(model)
    grey_class = int(model(torch.full_like(x[:1], 0.5).to(device)).argmax(-1))
    return float((y == grey_class).float().mean())


@full_fp32()
def jacobian_norms(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Exact per-sample Frobenius norms ‖J(x)‖_F of the logits w.r.t. the model's input, (N,), by the
    regularizer's own :func:`regnet.regularizers.jacobian.jacobian_sq_norms`; their mean is the number Hoffman
    2019 reports. ``regnet.regularizers.jacobian_penalty(x, z, n_proj=-1)`` equals ½·mean ‖J‖²_F."""
    model.eval()
    device = device_of(model)
    out = []
    for start in range(0, len(x), batch_size):
        with torch.enable_grad():
            xb = x[start : start + batch_size].to(device).detach().requires_grad_(True)
            out.append(jacobian_sq_norms(xb, model(xb)).sqrt().detach().cpu())
    return torch.cat(out)
