"""Attacks on a linear model, where FGSM's effect is computable by hand; ‖J‖_F against the regularizer."""

import pytest
import torch
from torch import nn

from regnet.analysis import PixelModel, attack_accuracy, fgsm, gaussian_noise, jacobian_norms, pgd
from regnet.analysis.attacks import accuracy
from regnet.regularizers.jacobian import jacobian_penalty


def linear(d=12, classes=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, classes))


def margin(model, x, y):
    z = model(x)
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, (1 - y)[:, None]).squeeze(1)


def test_fgsm_lowers_a_linear_margin_by_eps_times_l1_norm():
    model = linear()
    w = model[1].weight.detach()  # (2, 12)
    x = torch.full((3, 1, 3, 4), 0.5)
    y = torch.tensor([0, 1, 0])
    eps = 0.1
    x_adv = fgsm(model, x, y, eps)
    dw = (w[0] - w[1]).abs().sum()  # ‖w_y − w_other‖₁ is the same for both classes
    with torch.no_grad():
        assert torch.allclose(margin(model, x, y) - margin(model, x_adv, y), eps * dw.expand(3), atol=1e-5)
    assert (x_adv - x).abs().max() == pytest.approx(eps)


def test_attacks_clamp_to_pixel_range_and_stay_in_ball():
    model = linear()
    x = torch.rand(8, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    x[0] = 1.0
    x[1] = 0.0
    y = torch.randint(0, 2, (8,))
    for adv in (fgsm(model, x, y, 0.3), pgd(model, x, y, 0.3, steps=5), gaussian_noise(x, 0.5)):
        assert adv.min() >= 0 and adv.max() <= 1
    adv = pgd(model, x, y, 0.05, steps=5)
    assert (adv - x).abs().max() <= 0.05 + 1e-6
    assert torch.equal(fgsm(model, x, y, 0.0), x)


def test_pgd_reaches_the_linear_optimum():
    model = linear()
    x = torch.full((4, 1, 3, 4), 0.5)
    y = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        m_fgsm = margin(model, fgsm(model, x, y, 0.1), y)
        m_pgd = margin(model, pgd(model, x, y, 0.1, steps=20, random_start=True), y)
    assert torch.allclose(m_pgd, m_fgsm, atol=1e-5)  # the L∞ optimum of a linear margin is FGSM's corner


def test_pixel_model_normalises_and_attack_accuracy_drops():
    model = linear()
    pix = PixelModel(nn.Identity(), [0.5], [0.25])
    assert torch.allclose(pix(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 2.0))
    x = torch.rand(64, 1, 3, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1).detach()  # the model is right on every clean input
    rows = attack_accuracy(model, x, y, "fgsm", [0.0, 1.0], batch_size=16)
    assert rows[0]["acc"] == 1.0 and rows[1]["acc"] < 0.5
    with pytest.raises(ValueError, match="attack='cw'"):
        attack_accuracy(model, x, y, "cw", [0.1])


def test_jacobian_norm_is_exact():
    model = linear(classes=3)
    x = torch.rand(5, 1, 3, 4)
    assert torch.allclose(jacobian_norms(model, x), model[1].weight.norm().expand(5), atol=1e-5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4))
    xr = torch.randn(6, 1, 3, 4, requires_grad=True)
    half_mean_sq = jacobian_penalty(xr, net(xr), n_proj=-1)
    norms = jacobian_norms(net, xr.detach())
    assert float(half_mean_sq.detach()) == pytest.approx(0.5 * float((norms**2).mean()), rel=1e-4)


def linear_optimum(model, x, y, eps, weight):
    """Accuracy (fraction) left by the best L∞ attack on a linear model (no clamping active): an image stays
    correct iff every margin z_y − z_k exceeds ε ‖w_y − w_k‖₁."""
    with torch.no_grad():
        z = model(x)
    ok = torch.ones(len(x), dtype=torch.bool)
    for k in range(z.shape[1]):
        margin = z.gather(1, y[:, None]).squeeze(1) - z[:, k] - eps * (weight[y] - weight[k]).abs().sum(1)
        ok &= (margin > 0) | (y == k)
    return float(ok.float().mean())


def test_autoattack_reaches_the_linear_optimum_in_pixel_units():
    """The standard AutoAttack through the run's normalisation: on a linear model it finds every image
    the optimal attack of L∞ radius ε *in pixels* can flip, no more (were ε in normalised units, it would flip
    fewer); Square stays in the ε-ball and is not stronger."""
    from regnet.analysis import autoattack, square

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    pix = PixelModel(net, [0.5], [0.25]).eval()  # pixel weights are net's / 0.25
    x = 0.3 + 0.4 * torch.rand(16, 1, 3, 4, generator=torch.Generator().manual_seed(1))  # far from 0 and 1
    with torch.no_grad():
        y = pix(x).argmax(1)
    eps = 0.03
    expected = linear_optimum(pix, x, y, eps, net[1].weight.detach() / 0.25)
    assert 0 < expected < 1
    rows = attack_accuracy(pix, x, y, "autoattack", [0.0, eps], square_queries=20)
    assert [r["acc"] for r in rows] == [1.0, pytest.approx(expected)]
    assert rows[1]["queries"] == 20 and rows[1]["acc_bound"] == 1.0  # no bound below ε = 0.5
    adv = square(pix, x, y, eps, n_queries=20)
    assert (adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        assert float((pix(adv).argmax(1) == y).float().mean()) >= expected  # a black-box attack cannot beat the optimum
    with pytest.raises(ValueError, match="autoattack needs ≥ 4 classes"):
        autoattack(linear(classes=3), x, y % 3, eps, n_classes=3)


def test_accuracy_bound_at_half_a_pixel_range_is_the_grey_images_class_share():
    from regnet.analysis import accuracy_bound

    model = linear(classes=2)
    x = torch.rand(10, 1, 3, 4)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    grey = int(model(torch.full((1, 1, 3, 4), 0.5)).argmax(1))
    assert accuracy_bound(model, x, y, 0.49) == 1.0
    assert accuracy_bound(model, x, y, 0.5) == pytest.approx(0.3 if grey == 0 else 0.7)


def records(rows):
    import pandas as pd

    base = {"model": "lenet", "data": "mnist", "variant": "l2", "seed": 0, "run_dir": "r0", "n_test": 100}
    return pd.DataFrame([base | dict(zip(("attack", "eps", "acc", "acc_bound"), r)) for r in rows])


def test_sanity_checks_flag_the_signs_of_gradient_masking():
    """Accuracy that rises with ε, stays above the bound at ε ≥ 0.5, or a black-box attack that beats the
    gradient attacks: each is flagged on its row; a healthy evaluation has no flag."""
    from regnet.analysis import robustness_table, sanity_checks, sanity_flags

    healthy = records(
        [
            ("pgd", 0.0, 98.0, 100.0),
            ("pgd", 0.1, 40.0, 100.0),
            ("pgd", 0.5, 0.0, 11.0),
            ("fgsm", 0.5, 12.0, 11.0),  # one step need not reach the bound: FGSM is not held to it
            ("square", 0.1, 40.5, 100.0),
            ("square", 0.5, 5.0, 11.0),
            ("noise", 0.5, 90.0, None),
        ]
    )
    assert (sanity_flags(healthy) == "").all()
    assert set(sanity_checks(healthy)["status"]) == {"passed"}
    masked = records(
        [
            ("pgd", 0.0, 98.0, 100.0),
            ("pgd", 0.1, 40.0, 100.0),
            ("pgd", 0.3, 60.0, 100.0),
            ("pgd", 0.5, 50.0, 11.0),
            ("square", 0.1, 10.0, 100.0),
        ]
    )
    flags = sanity_flags(masked)
    assert list(flags) == ["", "", "rises_with_eps", "above_bound;rises_with_eps", "black_box_stronger"]
    checks = sanity_checks(masked).set_index("check")
    assert (checks["status"] == "failed").all()
    assert checks.loc["black_box_stronger", "detail"] == "square ε=0.1 seed 0: 10.0 %"
    table = robustness_table(masked.assign(flag=flags)).set_index(["attack", "eps"])
    assert table.loc[("pgd", 0.5), "flag"] == "above_bound (seed 0); rises_with_eps (seed 0)"
    assert table.loc[("pgd", 0.1), "flag"] == ""
    only_pgd = sanity_checks(records([("pgd", 0.0, 98.0, 100.0), ("pgd", 0.1, 40.0, 100.0)])).set_index("check")
    assert only_pgd.loc["black_box_stronger", "status"] == "not run"  # the table says which checks it could not make
    assert only_pgd.loc["above_bound", "detail"] == "needs pgd, autoattack or square at an ε ≥ 0.5 in --eps"


def test_robustness_table_tests_each_variant_against_the_baseline_at_each_attack_and_eps():
    """p_vs_no_reg is Welch's t-test over seeds between the variant and no_reg at the same attack and ε (and on
    ‖J‖_F); the baseline's own rows have none, and a baseline no run has is an error."""
    import pandas as pd
    from scipy import stats

    from regnet.analysis import robustness_table

    acc = {"no_reg": [(10.0, 12.0, 11.0), (1.0, 2.0, 4.0)], "jacobi": [(50.0, 53.0, 51.0), (9.0, 14.0, 10.0)]}
    jac = {"no_reg": (7.0, 6.5, 7.2), "jacobi": (1.1, 1.2, 1.0)}
    rows = []
    for variant, per_eps in acc.items():
        for seed in range(3):
            base = {
                "model": "lenet",
                "data": "mnist",
                "variant": variant,
                "seed": seed,
                "run_dir": f"{variant}{seed}",
                "n_test": 100,
            }
            for eps, values in zip((0.05, 0.1), per_eps):
                rows.append(base | {"attack": "autoattack", "eps": eps, "acc": values[seed], "acc_bound": 100.0})
            rows.append(base | {"attack": "jacobian_fro", "eps": None, "acc": None, "jacobian_fro": jac[variant][seed]})
    table = robustness_table(pd.DataFrame(rows)).set_index(["variant", "attack", "eps"])
    for eps, i in ((0.05, 0), (0.1, 1)):
        expected = stats.ttest_ind(acc["jacobi"][i], acc["no_reg"][i], equal_var=False).pvalue
        assert table.loc[("jacobi", "autoattack", eps), "p_vs_no_reg"] == pytest.approx(expected)
        assert pd.isna(table.loc[("no_reg", "autoattack", eps), "p_vs_no_reg"])
    jac_rows = table.xs("jacobian_fro", level="attack")
    expected = stats.ttest_ind(jac["jacobi"], jac["no_reg"], equal_var=False).pvalue
    assert jac_rows.loc["jacobi", "p_vs_no_reg"].item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="baseline 'l2' is not a variant"):
        robustness_table(pd.DataFrame(rows), baseline="l2")


def test_exact_jacobian_norms_per_sample_are_the_regularizers_and_differentiable():
    from regnet.regularizers.jacobian import jacobian_sq_norms

    torch.manual_seed(0)
    model = linear(classes=3)
    x = torch.rand(5, 1, 3, 4, requires_grad=True)
    sq = jacobian_sq_norms(x, model(x))
    assert torch.allclose(sq, model[1].weight.norm().pow(2).expand(5), atol=1e-5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4))
    sq = jacobian_sq_norms(x, net(x), create_graph=True)
    exact = float(jacobian_penalty(x, net(x), n_proj=-1).detach())
    assert float(sq.detach().mean() / 2) == pytest.approx(exact, rel=1e-5)
    sq.sum().backward()  # differentiable w.r.t. the weights (double backprop)
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0


def small_cnn(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small trained CNN (pixel space) and 32 images (1, 12, 12) it partly classifies right."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(6 * 36, 24), nn.Tanh(), nn.Linear(24, 10))  # fmt: skip
    model = PixelModel(net, [0.5], [0.25])
    x = torch.rand(32, 1, 12, 12)
    y = (x[:, :, :6].mean((1, 2, 3)) * 10 + x[:, :, 6:].mean((1, 2, 3)) * 7).long() % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval().requires_grad_(False), x, y


def test_autoattack_and_square_give_torchattacks_adversarial_images():
    """regnet's AutoAttack (APGD-CE, APGD-T, FAB-T, Square) and Square are ports of torchattacks 3.5.1: on the same
    model and images they return the same adversarial images, bit for bit (the reference where it is installed)."""
    torchattacks = pytest.importorskip("torchattacks")
    from regnet.analysis import autoattack, square

    model, x, y = small_cnn(0)
    for eps in (0.05,):  # APGD-CE leaves 62 % correct: every member has images to attack
        ref = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        for member in ref._autoattack.attacks:
            if isinstance(member, torchattacks.Square):
                member.n_queries = 100
        assert torch.equal(autoattack(model, x, y, eps, 10, seed=0, square_queries=100), ref(x, y))
        ref_square = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=100, n_restarts=1, seed=0)
        assert torch.equal(square(model, x, y, eps, seed=0, n_queries=100), ref_square(x, y))


def test_each_autoattack_member_stays_in_the_ball_and_fools_images():
    from regnet.analysis.apgd import apgd_ce, apgd_t
    from regnet.analysis.fab import fab_t
    from regnet.analysis.square import square_linf

    model, x, y = small_cnn(0)
    clean = accuracy(model, x, y)
    eps = 0.1
    for attack in (
        lambda: apgd_ce(model, x, y, eps),
        lambda: apgd_t(model, x, y, eps, 10),
        lambda: fab_t(model, x, y, eps, 10),
        lambda: square_linf(model, x, y, eps, n_queries=50),
    ):
        adv = attack()
        assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert accuracy(model, adv, y) < clean  # each one alone fools some images
    assert accuracy(model, apgd_ce(model, x, y, eps), y) == accuracy(model, apgd_ce(model, x, y, eps), y)  # seeded


class Quantized(nn.Module):
    """A linear classifier of the input rounded to tenths: its input gradient is zero everywhere, the textbook
    gradient masking (Athalye et al. 2018, "shattered gradients")."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 4)

    def forward(self, x):
        return self.linear(torch.round(x * 10).flatten(1) / 10)


def test_gradient_masking_checks_fire_on_a_model_with_shattered_gradients():
    """PGD gets nothing from a zero gradient, the black-box Square does: the real attacks' rows trip
    ``black_box_stronger``; on an ordinary model they do not."""
    import pandas as pd

    from regnet.analysis import sanity_flags

    def flags(model, x, y):
        rows = []
        for attack in ("pgd", "square"):
            for r in attack_accuracy(model, x, y, attack, [0.0, 0.15], square_queries=300):
                rows.append({"model": "m", "data": "d", "variant": "v", "seed": 0, "run_dir": "r"} | r)
        records = pd.DataFrame(rows).assign(acc=lambda d: d.acc * 100, acc_bound=lambda d: d.acc_bound * 100)
        return set(sanity_flags(records)) - {""}

    masked = Quantized().eval()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = masked(x).argmax(1)
    assert flags(masked, x, y) == {"black_box_stronger"}
    model, x, y = small_cnn(0)
    assert flags(model, x, y) == set()
