"""Stacked runs (regnet/stacked/): a stack equals its members trained separately; the launcher groups a sweep,
writes every member's run directory and skips completed ones; divergence is isolated; a stack resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regnet.analysis.runs import load_run
from regnet.build import build
from regnet.lifecycle import TrainingFailed
from regnet.stacked.grouping import group, refusal, shared_settings, stack_key
from regnet.stacked.layers import StackedDropout, member_state, stack_models
from regnet.stacked.train import resolved, train_stack
from regnet.train import bind_run_dir, train
from tests.conftest import REPO, compose_cfg

QUICK = [
    "trainer.accelerator=cpu",
    "data.batch_size=16",
    "data.eval_batch_size=64",
    "trainer.limit_test_batches=1",
    "~callbacks.confusion",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
]
HOFFMAN = ["experiment=hoffman2019_mnist", "model.dropout=0.0"]


def member_cfg(data_root, run_dir, *overrides):
    cfg = compose_cfg([f"data.root={data_root}", *QUICK, *overrides], return_hydra_config=True)
    bind_run_dir(cfg, run_dir)
    return resolved(cfg)


def model_state(run_dir) -> dict[str, torch.Tensor]:
    state = torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def assert_states_close(a, b, tol=3e-3):
    """Float tolerance after tens of SGD steps: grouped convolutions and batched matmuls round differently from
    the separate run's kernels (≈1e-7 per step), and training amplifies that. At hoffman2019_mnist's lr 0.1 with
    momentum 0.9 on batches of 8 the L2 + SVB member is chaotic: one thread against two already ends 5e-4 apart, a
    stack against separate runs on one thread 6e-2 apart (measured). Hence lr 0.02 in the equivalence tests,
    where every member stays within 3e-4, on one thread or two (measured)."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=tol, atol=tol, msg=k)


def csv_rows(run_dir) -> list[dict]:
    import csv

    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- equivalence ------------------------------------------------------------------------------------------
MEMBERS = [  # no dropout; differ in seed, Jacobian λ only (members 0, 1), weight decay and SVB (every 5 steps)
    ["variant=jacobi", "seed=1"],
    ["variant=jacobi", "seed=1", "reg.jacobian.lam=0.05"],
    ["seed=2", "reg=[l2,svb]", "reg.svb.every=5"],
]


def test_stack_equals_separate_runs(data_root, tmp_path):
    """42 steps (2 epochs of 21): same init, data order, losses, penalties, SVB projections as regnet.train."""
    common = [*HOFFMAN, "optim.lr=0.02", "trainer.max_epochs=2", "trainer.limit_train_batches=21", "data.batch_size=8"]
    dirs = [tmp_path / "stack" / str(i) for i in range(len(MEMBERS))]
    cfgs = [member_cfg(data_root, d, *common, *m) for d, m in zip(dirs, MEMBERS, strict=True)]
    results = train_stack(cfgs, dirs)
    assert [r["status"] for r in results] == ["completed"] * len(MEMBERS)
    for i, m in enumerate(MEMBERS):
        sep = tmp_path / "separate" / str(i)
        cfg = compose_cfg([f"data.root={data_root}", *QUICK, *common, *m], return_hydra_config=True)
        expected = train(cfg, sep)
        assert results[i]["global_step"] == expected["global_step"] == 42
        assert_states_close(model_state(dirs[i]), model_state(sep))
        got_rows = [r for r in csv_rows(dirs[i]) if r.get("train/loss")]
        want_rows = [r for r in csv_rows(sep) if r.get("train/loss")]
        assert len(got_rows) == len(want_rows) == 2
        for g, w in zip(got_rows, want_rows, strict=True):
            for key in ("train/loss", "train/data_loss") + (("train/jacobian",) if "jacobi" in m[0] else ()):
                assert float(g[key]) == pytest.approx(float(w[key]), rel=1e-4, abs=1e-5), key
            # accuracy counts argmax hits: a rounding difference may flip a near-tie (one sample of 168)
            assert float(g["train/acc"]) == pytest.approx(float(w["train/acc"]), abs=2.5 / 168)
        assert results[i]["test_acc"] == pytest.approx(expected["test_acc"], abs=1e-6)
        assert results[i]["stacked"]["members"] == [str(d) for d in dirs] and results[i]["stacked"]["index"] == i
    # the members that differ only in λ really trained differently (≈3e-2, 100× the stack's error, measured), so
    # the check above would catch a no-op λ
    a, b = model_state(dirs[0]), model_state(dirs[1])
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 0.01


def test_batchnorm_stack_equals_separate_runs(data_root, tmp_path):
    """lenet_bn: each member's batch statistics and running statistics are its own."""
    common = ["model=lenet_bn", "trainer.max_epochs=1", "trainer.limit_train_batches=10"]
    members = [["seed=0"], ["seed=1"], ["seed=2", "reg=l2"]]
    dirs = [tmp_path / "stack" / str(i) for i in range(3)]
    train_stack([member_cfg(data_root, d, *common, *m) for d, m in zip(dirs, members, strict=True)], dirs)
    for i, m in enumerate(members):
        sep = tmp_path / "separate" / str(i)
        train(compose_cfg([f"data.root={data_root}", *QUICK, *common, *m], return_hydra_config=True), sep)
        got, want = model_state(dirs[i]), model_state(sep)
        assert any("running_mean" in k for k in got)
        assert_states_close(got, want)


# --- the wide model ----------------------------------------------------------------------------------------
CONF_MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", CONF_MODELS)
def test_every_model_stacks_or_is_refused(model, data_root):
    """Every model in conf/model/ either stacks (the wide forward equals each member's, in training mode, with
    BatchNorm) or is refused with one line."""
    data = {"resnet18": ["data=cifar100", "data.verify_checksums=false"]}.get(model, [])
    extra = ["data.pad=2", "data.image_size=32"] if model == "lenet5" else []
    cfg = compose_cfg([f"data.root={data_root}", f"model={model}", *data, *extra])
    reason = refusal(cfg)
    if reason is not None:
        assert "\n" not in reason and reason
        return
    torch.manual_seed(0)
    models = [build(cfg)[0].model.train() for _ in range(2)]
    for m in (mod for model_ in models for mod in model_.modules()):
        if isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d):
            m.p = 0.0  # kept in the model (the stacked dropout is built), drawing nothing, so outputs compare
    wide = stack_models(models)
    c, side = cfg.data.in_channels, cfg.data.image_size
    xs = [torch.randn(4, c, side, side) for _ in models]
    out = wide(torch.stack(xs, 1).flatten(1, 2)).view(4, 2, -1)
    for s, (m, x) in enumerate(zip(models, xs, strict=True)):
        torch.testing.assert_close(out[:, s], m(x), rtol=1e-4, atol=1e-5)
        for k, v in member_state(wide, s).items():  # running statistics updated per member, in place
            torch.testing.assert_close(v.float(), m.state_dict()[k].float(), rtol=1e-4, atol=1e-5)


def test_refusals_name_their_reason(data_root):
    log_softmax = compose_cfg(["model=convnet", "model.log_softmax=true", "loss=nll"])
    assert "log_softmax" in refusal(log_softmax)
    assert "accumulate_grad_batches" in refusal(compose_cfg(["+trainer.accumulate_grad_batches=2"]))
    assert refusal(compose_cfg([])) is None


def test_grouping_splits_what_differs_and_bounds_stack_size():
    cfgs = [
        compose_cfg(o)
        for o in (
            ["seed=0"],
            ["seed=1", "reg=l2"],
            ["seed=2", "model.dropout=0.1"],
            ["optim=adam"],
            ["data.batch_size=50"],
            ["model.activation=relu"],
            ["reg=jacobian"],
            ["reg=jacobian", "reg.jacobian.n_proj=2"],
            ["seed=3"],
        )
    ]
    jobs = [(stack_key(c), shared_settings(c)) for c in cfgs]
    groups = group(jobs, max_members=30)
    assert groups[0] == [0, 1, 2, 6, 8]  # seeds, weight decay, dropout p, penalties stack
    assert [3] in groups and [4] in groups and [5] in groups and [7] in groups  # optimizer, batch, architecture, n_proj
    assert group(jobs, max_members=2)[:3] == [[0, 1], [2, 6], [3]]


def test_dropout_masks_are_independent_per_member():
    drops = [torch.nn.Dropout(p) for p in (0.5, 0.5, 0.0, 1.0)]
    layer = StackedDropout(drops, channelwise=False).train()
    torch.manual_seed(0)
    out = layer(torch.ones(64, 4 * 100)).view(64, 4, 100)
    kept = out != 0
    assert not torch.equal(kept[:, 0], kept[:, 1])  # two members with the same p: different draws
    assert 0.4 < kept[:, 0].float().mean() < 0.6 and 0.4 < kept[:, 1].float().mean() < 0.6
    assert torch.equal(out[:, 2], torch.ones(64, 100))  # p = 0: identity
    assert not kept[:, 3].any()  # p = 1: zero
    assert torch.allclose(out[:, 0][kept[:, 0]], torch.full_like(out[:, 0][kept[:, 0]], 2.0))  # 1/(1-p)


# --- isolation and resume -------------------------------------------------------------------------------------
def test_diverging_member_is_frozen_and_the_others_train_on(data_root, tmp_path):
    common = [*HOFFMAN, "trainer.max_epochs=1", "trainer.limit_train_batches=12"]
    members = [["seed=0"], ["seed=1", "reg=l2", "reg.l2.weight_decay=1e12"], ["seed=2", "variant=jacobi"]]
    dirs = [tmp_path / "with" / str(i) for i in range(3)]
    results = train_stack([member_cfg(data_root, d, *common, *m) for d, m in zip(dirs, members, strict=True)], dirs)
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    assert 1 <= results[1]["diverged_step"] <= 12 and "diverged" in results[1]["error"]
    alone = [tmp_path / "without" / str(i) for i in (0, 2)]
    train_stack([member_cfg(data_root, d, *common, *members[i]) for d, i in zip(alone, (0, 2), strict=True)], alone)
    assert_states_close(model_state(dirs[0]), model_state(alone[0]))
    assert_states_close(model_state(dirs[2]), model_state(alone[1]))


class KillAt:
    """SIGKILLs its own process after optimizer step ``step`` (after the stack's step checkpoint at a multiple of 5),
    as a pre-emption or the OOM killer would: no exception, no ``finally``, no Lightning teardown."""

    def __init__(self, step):
        import lightning as L

        class _Cb(L.Callback):
            def on_train_batch_end(cb, trainer, *args):
                if trainer.global_step == step:
                    os.kill(os.getpid(), signal.SIGKILL)

        self.callback = _Cb()


def _train_stack_killed(cfgs, dirs, step: int) -> None:
    """``train_stack`` in a forked child (no second interpreter start) that SIGKILLs itself after ``step``."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            train_stack(cfgs, dirs, extra_callbacks=(KillAt(step).callback,))
        finally:
            os._exit(3)  # the kill did not fire
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the stack was not killed"


def test_a_stack_that_fails_records_every_member_failed(data_root, tmp_path):
    import lightning as L

    class Fail(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                raise RuntimeError("a failure inside the stack")

    dirs = [tmp_path / str(i) for i in range(2)]
    cfgs = [member_cfg(data_root, d, *HOFFMAN, f"seed={i}") for i, d in enumerate(dirs)]
    with pytest.raises(TrainingFailed):
        train_stack(cfgs, dirs, extra_callbacks=(Fail(),))
    for d in dirs:
        recorded = json.loads((d / "results.json").read_text())
        assert recorded["status"] == "failed" and "a failure inside the stack" in recorded["error"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed stack is a forked child")
def test_a_stack_killed_with_sigkill_resumes_to_the_uninterrupted_result(data_root, tmp_path):
    """With dropout (the stack's RNG), Jacobian projections (members' generators) and SVB: a stacked process
    SIGKILLed at step 23 leaves no member recorded as finished; the same call again resumes the whole stack from
    its step-20 checkpoint and ends equal to a stack that never stopped, with no temporary file left behind."""
    common = [
        "experiment=hoffman2019_mnist",
        "trainer.max_epochs=2",
        "callbacks.checkpoint_steps.every_n_train_steps=5",
    ]
    members = [["seed=0", "variant=jacobi"], ["seed=1", "variant=svb", "reg.svb.every=7"], ["seed=2"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # after fork only one OpenMP thread is safe; all three stacks compute alike
    try:
        straight = [tmp_path / "straight" / str(i) for i in range(3)]
        train_stack([member_cfg(data_root, d, *common, *m) for d, m in zip(straight, members, strict=True)], straight)
        dirs = [tmp_path / "resumed" / str(i) for i in range(3)]
        cfgs = [member_cfg(data_root, d, *common, *m) for d, m in zip(dirs, members, strict=True)]
        _train_stack_killed(cfgs, dirs, step=23)
        assert not any((d / "results.json").exists() for d in dirs)  # killed: nothing recorded as finished
        results = train_stack(cfgs, dirs)
    finally:
        torch.set_num_threads(threads)
    assert [r["resumed_from_step"] for r in results] == [20] * 3
    assert [r["status"] for r in results] == ["completed"] * 3
    for a, b in zip(dirs, straight, strict=True):
        assert_states_close(model_state(a), model_state(b), tol=1e-6)
        assert [r["train/loss"] for r in csv_rows(a) if r.get("train/loss")] == [
            r["train/loss"] for r in csv_rows(b) if r.get("train/loss")
        ]
    assert not list((tmp_path / "resumed").rglob("*.tmp"))


# --- the launcher: one more word on the command line --------------------------------------------------------
@pytest.mark.slow
def test_stacked_launcher_sweep(data_root, tmp_path):
    """``-m hydra/launcher=stacked``: stackable jobs in stacks of ≤ max_members, the others ordinary, each with its
    reason on one line; every member's run dir as a separate run's (loadable by load_run); a re-run skips all."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "regnet.train",
        "-m",
        "hydra/launcher=stacked",
        "hydra.launcher.max_members=2",
        "experiment=hoffman2019_mnist",
        "variant=no_reg,l2,jacobi",
        "+trainer.accumulate_grad_batches=1,2",
        f"data.root={data_root}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        *QUICK,
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    refused = [line for line in proc.stdout.splitlines() if "not stacked, runs as an ordinary job" in line]
    assert len(refused) == 4, proc.stdout[-3000:]  # 3 × accumulate_grad_batches=2, 1 left alone by max_members
    assert sum("accumulate_grad_batches=2 is not supported" in line for line in refused) == 3
    on_cpu = sum("stacked on a CPU: no faster than separate runs" in line for line in proc.stdout.splitlines())
    assert on_cpu == (0 if torch.cuda.is_available() else 1)
    runs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(runs) == 6
    stacked = []
    for run in runs:
        assert {p.name for p in (run / ".hydra").iterdir()} == {"config.yaml", "overrides.yaml", "hydra.yaml"}
        results = json.loads((run / "results.json").read_text())
        assert results["status"] == "completed" and results["test_acc"] is not None
        assert any(r.get("train/loss") for r in csv_rows(run))
        module, _, _ = load_run(run, device="cpu")
        torch.testing.assert_close(
            module.model.state_dict()["features.0.weight"], model_state(run)["model.features.0.weight"]
        )
        if "stacked" in results:
            assert results["stacked"]["members"][results["stacked"]["index"]] == str(run)
            stacked.append(tuple(results["stacked"]["members"]))
    assert len(stacked) == 2 and len(set(stacked)) == 1 and len(stacked[0]) == 2
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("already completed") == 6


def _stacked_module(models, member_regs, loss="cross_entropy", clip_val=None):
    from regnet.stacked.module import StackedModule
    from regnet.stacked.regularizers import stack_regularizers

    S = len(models)
    return StackedModule(stack_models(models), stack_regularizers(member_regs), num_classes=10,
                         optimizer=torch.optim.SGD, scheduler=None, scheduler_interval="step", loss=loss,
                         generator_seeds=list(range(S)), generator_states=[None] * S, weight_decay=torch.zeros(S),
                         clip_val=clip_val)  # fmt: skip


def test_gradient_clipping_is_per_member():
    """trainer.gradient_clip_val clips each member's global gradient norm as clip_grad_norm_ clips its separate
    run's, so one member's large gradients never shrink another's."""
    from regnet.models.lenet import LeNet

    torch.manual_seed(0)
    models = [LeNet(dropout=0.0) for _ in range(2)]
    for m, scale in zip(models, (100.0, 1e-3), strict=True):
        for p in m.parameters():
            p.grad = torch.randn_like(p) * scale
    module = _stacked_module(models, [[], []], clip_val=1.0)
    wide = module.model
    for name, p in wide.named_parameters():
        p.grad = torch.stack([dict(m.named_parameters())[name].grad for m in models])
    module.on_before_optimizer_step(None)
    for s, m in enumerate(models):
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        for name, p in wide.named_parameters():
            torch.testing.assert_close(p.grad[s], dict(m.named_parameters())[name].grad)


# --- one definition: every regularizer and loss stacked (S = 3) ≡ three separate runs ----------------------------
CONF_REGS = sorted(p.stem for p in (REPO / "conf" / "reg").glob("*.yaml"))
CONF_LOSSES = sorted(p.stem for p in (REPO / "conf" / "loss").glob("*.yaml"))


def _member_regs(name: str, loss: str = "cross_entropy") -> list[list]:
    """Member 0: ``conf/reg/<name>.yaml`` as it is; member 1: each per-member hyper-parameter doubled (SVB's
    ``every`` kept, ε doubled); member 2: without it."""
    from hydra.utils import get_class, instantiate

    node = compose_cfg([f"reg={name}", f"loss={loss}"]).reg[name]
    cls = get_class(node._target_)
    doubled = {k: 2 * node[k] for k in cls.per_member if k != "every"}
    return [[instantiate(node)], [instantiate(node, **doubled)], []]


def _stacked_vs_separate(member_regs, loss: str, model_cls) -> None:
    """``StackedModule.training_step`` on one batch of 3 members against ``RegNetModule.training_step`` of each
    member alone (its global generator seeded as the member's own): the perturbed inputs, every member's loss and
    penalties (values) and the gradients of every parameter agree; then each regularizer's ``after_step`` (SVB's
    projection) leaves each member's weights as it leaves its separate model's."""
    from regnet.module import RegNetModule

    torch.manual_seed(0)
    models = [model_cls().train() for _ in range(3)]
    for m in models:
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout | torch.nn.Dropout2d):
                mod.p = 0.0  # dropout draws from the stack's own stream, not the members': not compared here
        for r in member_regs[models.index(m)]:
            r.setup(m)
    module = _stacked_module(models, member_regs, loss=loss)
    side = 32 if model_cls.__name__ == "LeNet5" else 28
    x = torch.randn(6, 3, 1, side, side)  # (N, S, C, H, W)
    y = torch.randint(0, 10, (6, 3))
    total = module.training_step((x, y), 0)
    total.backward()
    n = 6
    for s, (model, regs) in enumerate(zip(models, member_regs, strict=True)):
        plain = RegNetModule(model, num_classes=10, regularizers=regs, loss=loss)
        torch.manual_seed(s)  # the separate run's global generator, where member s's own starts
        want = plain.training_step((x[:, s], y[:, s]), 0)
        grads = torch.autograd.grad(want, list(model.parameters()))
        stacked_means = module.means["train_means"]
        got_loss = stacked_means["loss"].compute()[s]
        torch.testing.assert_close(got_loss.float(), want.detach(), rtol=1e-4, atol=1e-6)
        for r in regs:
            mean = plain.means["train_means"][r.name]
            if bool(mean.count.any()):
                got = stacked_means[r.name].compute()[s].float()
                torch.testing.assert_close(got, mean.compute(), rtol=1e-4, atol=1e-6)
                assert float(mean.compute()) != 0.0  # a penalty that does something
        # member s's top-k counts are its separate run's (regnet/metrics.py over the member axis)
        counts = plain.metrics["train_metrics"]
        assert torch.equal(module.metrics["train_metrics"].correct[s], counts.correct[0])
        assert int(module.metrics["train_metrics"].count[s]) == int(counts.count[0]) == n
        wide_params = dict(module.model.named_parameters())
        for (name, _), g in zip(model.named_parameters(), grads, strict=True):
            torch.testing.assert_close(wide_params[name].grad[s], g, rtol=1e-3, atol=1e-5, msg=name)
    for r in module.regs:  # after the optimizer step (here: step 600, a multiple of every SVB ``every``)
        r.after_step(module.model, 600, module.alive)
    for s, (model, regs) in enumerate(zip(models, member_regs, strict=True)):
        for r in regs:
            r.after_step(model, 600)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(module.model.state_dict()[k][s], v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("name", CONF_REGS)
def test_every_regularizer_stacked_equals_three_separate_runs(name):
    """Each ``conf/reg/*.yaml``: one definition over the member axis gives a stack of three members (the YAML's
    values, them doubled, none) what each separate run computes, values and gradients. A regularizer that does
    not stack says why in one line (``not_stacked``)."""
    from hydra.utils import get_class

    from regnet.models.lenet import LeNet
    from regnet.models.lenet5 import LeNet5

    cls = get_class(compose_cfg([f"reg={name}"]).reg[name]._target_)
    if cls.why_not_stacked():
        assert "\n" not in cls.why_not_stacked()
        with pytest.raises(ValueError, match="does not stack"):
            cls.stack([None])
        return
    _stacked_vs_separate(_member_regs(name), "cross_entropy", LeNet)
    if name != "svb":  # LeNet-5's sparse C3: the weight-matrix penalties see weight · mask (SVB refuses it)
        _stacked_vs_separate(_member_regs(name), "cross_entropy", LeNet5)


@pytest.mark.parametrize("loss", CONF_LOSSES)
def test_every_loss_stacked_equals_three_separate_runs(loss):
    """Each ``conf/loss/*.yaml``, alone and under label smoothing (ε, 2ε, none): the same values and gradients
    stacked as separately (for nll the logits stand in for log-probabilities: the formula is what is compared)."""
    from regnet.models.lenet import LeNet

    _stacked_vs_separate([[], [], []], loss, LeNet)
    _stacked_vs_separate(_member_regs("label_smoothing", loss), loss, LeNet)


def test_members_with_different_shared_settings_are_refused_in_one_line():
    from regnet.regularizers.jacobian import Jacobian
    from regnet.stacked.regularizers import stack_regularizers

    with pytest.raises(ValueError, match=r"different reg.jacobian.n_proj") as err:
        stack_regularizers([[Jacobian(0.1, 1)], [Jacobian(0.1, 2)]])
    assert "\n" not in str(err.value)
