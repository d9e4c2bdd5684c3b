"""FAB-T, the targeted Fast Adaptive Boundary attack in L∞ (Croce & Hein 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack", Algorithm 1): at each step the decision boundary towards the target
class is linearised (Eq. 4–5), the current point and the original image are projected onto that hyperplane inside
[0, 1]^d (:func:`projection_linf`), and the step is a convex combination of the two projections, extrapolated by
η and biased towards the original image by α ≤ α_max (Eq. 8–9); a point that crosses is pulled back by β.

AutoAttack's third member as torchattacks 3.5.1 ran it (``FAB(multi_targeted=True, n_restarts=1)``: 10 steps,
no random start, the n_classes − 1 highest-ranked other classes as targets in turn), with the same operations in
the same order. Inputs: the model in pixel space, x (N, C, H, W) in [0, 1], y (N,), ε in pixel units; the output
(N, C, H, W) holds an adversarial image within ε where one was found, else the clean one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def projection_linf(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Minimal L∞ step d (n, d) from each row of t (n, d) onto the hyperplane ⟨w, x⟩ = b with t + d in [0, 1]^d
    (Croce & Hein 2020, Sect. 3.2): a sort and a bisection over the coordinates."""
    device = t.device
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).float()
    d = (a - t) * (w != 0).float()
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(c2.sum(), device=device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - counter2)
        b2 = (sb_.gather(1, counter2) - s_.gather(1, counter2) * p_.gather(1, indcurr)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long()
    if c_l.any():
        lmbd_opt = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd_opt
    lmbd_opt = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd_opt, d[c2]) * a[c2] + torch.max(-lmbd_opt, d[c2]) * (1 - a[c2])
    return d * (w != 0).float()


def _nonempty(i: Tensor) -> Tensor:
    return i if len(i.shape) > 0 else i.unsqueeze(0)


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).max(dim=1)[1]


def _boundary(model: nn.Module, x: Tensor, y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """f = z_t − z_y (n, 1) and its input gradient (n, 1, C, H, W)."""
    u = torch.arange(x.shape[0])
    im = x.clone().requires_grad_()
    with torch.enable_grad():
        z = model(im)
        diff = -(z[u, y] - z[u, target])
        (grad,) = torch.autograd.grad(diff.sum(), im)
    return diff.detach().unsqueeze(1), grad.unsqueeze(1)


def _run_targeted(model, x, y, target_class: int, steps: int, alpha_max: float, eta: float, beta: float) -> Tensor:
    """One FAB run towards the ``target_class``-th highest-ranked class: (N, C, H, W), the smallest adversarial
    image it found for each image (the clean image where none)."""
    ndims = len(x.shape[1:])
    x, y = x.detach().clone().float(), y.detach().clone().long()
    pred = _predict(model, x) == y
    if pred.sum() == 0:
        return x
    pred = _nonempty(pred.nonzero().squeeze())
    la_target = model(x).sort(dim=-1)[1][:, -target_class]
    im2, la2, la_target2 = x[pred].detach().clone(), y[pred].detach().clone(), la_target[pred].detach().clone()
    if len(im2.shape) == ndims:
        im2 = im2.unsqueeze(0)
    bs, dev = im2.shape[0], x.device
    u1 = torch.arange(bs)
    adv, adv_c = im2.clone(), x.clone()
    res2 = 1e10 * torch.ones([bs]).to(dev)
    x1, x0 = im2.clone(), im2.clone().reshape([bs, -1])
    shape = [-1, *[1] * ndims]
    for _ in range(steps):
        with torch.no_grad():
            df, dg = _boundary(model, x1, la2, la_target2)
            dist1 = df.abs() / (1e-12 + dg.abs().view(dg.shape[0], dg.shape[1], -1).sum(dim=-1))
            ind = dist1.min(dim=1)[1]
            dg2 = dg[u1, ind]
            b = -df[u1, ind] + (dg2 * x1).view(x1.shape[0], -1).sum(dim=-1)
            w = dg2.reshape([bs, -1])
            d3 = projection_linf(torch.cat((x1.reshape([bs, -1]), x0), 0), torch.cat((w, w), 0), torch.cat((b, b), 0))
            d1, d2 = torch.reshape(d3[:bs], x1.shape), torch.reshape(d3[-bs:], x1.shape)
            a0 = d3.abs().max(dim=1, keepdim=True)[0].view(*shape)
            a0 = torch.max(a0, 1e-8 * torch.ones(a0.shape).to(dev))
            a1, a2 = a0[:bs], a0[-bs:]
            alpha = torch.min(
                torch.max(a1 / (a1 + a2), torch.zeros(a1.shape).to(dev)), alpha_max * torch.ones(a1.shape).to(dev)
            )
            x1 = ((x1 + eta * d1) * (1 - alpha) + (im2 + d2 * eta) * alpha).clamp(0.0, 1.0)
            is_adv = _predict(model, x1) != la2
            if is_adv.sum() > 0:
                ind_adv = _nonempty(is_adv.nonzero().squeeze())
                t = (x1[ind_adv] - im2[ind_adv]).reshape([ind_adv.shape[0], -1]).abs().max(dim=1)[0]
                closer = (t < res2[ind_adv]).float()
                adv[ind_adv] = x1[ind_adv] * closer.reshape(shape) + adv[ind_adv] * (
                    t >= res2[ind_adv]
                ).float().reshape(shape)
                res2[ind_adv] = t * closer + res2[ind_adv] * (t >= res2[ind_adv]).float()
                x1[ind_adv] = im2[ind_adv] + (x1[ind_adv] - im2[ind_adv]) * beta
    ind_succ = _nonempty((res2 < 1e10).nonzero().squeeze())
    adv_c[pred[ind_succ]] = adv[ind_succ].clone()
    return adv_c


@torch.no_grad()
def fab_t(model: nn.Module, x: Tensor, y: Tensor, eps: float, n_classes: int, steps: int = 10,
          alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9) -> Tensor:  # fmt: skip
    """FAB-T: a run towards each of the n_classes − 1 highest-ranked other classes, on the images still correct;
    an image counts as fooled only if its adversarial image is within ε."""
    adv = x.clone()
    acc = model(x).max(1)[1] == y
    for target_class in range(2, n_classes + 1):
        ind_to_fool = _nonempty(acc.nonzero().squeeze())
        if ind_to_fool.numel() == 0:
            continue
        x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
        adv_curr = _run_targeted(model, x_to_fool, y_to_fool, target_class, steps, alpha_max, eta, beta)
        acc_curr = model(adv_curr).max(1)[1] == y_to_fool
        res = (x_to_fool - adv_curr).abs().view(x_to_fool.shape[0], -1).max(1)[0]
        acc_curr = torch.max(acc_curr, res > eps)
        ind_curr = (acc_curr == 0).nonzero().squeeze()
        acc[ind_to_fool[ind_curr]] = 0
        adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()
    return adv
