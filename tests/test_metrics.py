"""regnet/metrics.py: top-k accuracy and epoch means over a member axis, one definition for an ordinary run (S = 1)
and a stack; they equal torchmetrics' per member, keep members and k apart, survive checkpoints, and checkpoints in
the layouts before them (torchmetrics states, the stack's buffers) still load."""

from __future__ import annotations

import pytest
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from regnet.metrics import EpochMean, TopKAccuracy, accuracy_names, epoch_metrics, epoch_values
from regnet.module import RegNetModule


def batches(S: int, seed: int = 0, n_batches: int = 4, N: int = 33, K: int = 10):
    """Random logits (N, S, K) with many exact ties (small integers) in half the batches, labels (N, S)."""
    g = torch.Generator().manual_seed(seed)
    for i in range(n_batches):
        logits = torch.randn(N, S, K, generator=g)
        if i % 2:
            logits = torch.randint(0, 3, (N, S, K), generator=g).float()
        yield logits, torch.randint(0, K, (N, S), generator=g)


@pytest.mark.parametrize("S", [1, 3])
def test_equals_torchmetrics_multiclass_accuracy_per_member_with_ties(S):
    metric = TopKAccuracy((1, 5), members=S)
    want = [
        {k: MulticlassAccuracy(10, top_k=k, average="micro", validate_args=False) for k in (1, 5)} for _ in range(S)
    ]
    ties = 0
    for logits, y in batches(S):
        metric.update(logits.squeeze(1) if S == 1 else logits, y.squeeze(1) if S == 1 else y)
        for s in range(S):
            for m in want[s].values():
                m.update(logits[:, s], y[:, s])
        ties += int((logits.max(-1, keepdim=True).values == logits).sum(-1).gt(1).sum())
    assert ties > 50  # the tied rows are there: top-1 is argmax's first maximum, as torchmetrics
    got = metric.compute()  # (S, 2)
    assert got.shape == (S, 2) and got.dtype == torch.float32
    for s in range(S):
        assert torch.equal(got[s], torch.stack([want[s][1].compute(), want[s][5].compute()]))  # to the bit
    named = metric.named()
    assert list(named) == accuracy_names((1, 5)) == ["acc", "err", "acc_top5", "err_top5"]
    assert torch.equal(named["err_top5"], 1.0 - got[:, 1])


def test_members_and_k_are_kept_apart():
    """Member 0 always right at top-1, member 1 never in its top 3 but always in its top 5, member 2 always wrong:
    a count leaking from one member into another, or one k's count used for another, changes the answer."""
    N, K = 12, 10
    logits = torch.arange(K, 0, -1).float().expand(N, 3, K).clone()  # class 0 ranked first ... class 9 last
    y = torch.stack([torch.zeros(N), torch.full((N,), 3), torch.full((N,), 9)], 1).long()  # ranks 1, 4, 10
    metric = TopKAccuracy((1, 3, 5), members=3)
    metric.update(logits, y)
    want = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.equal(metric.compute(), want)
    assert metric.count.tolist() == [N, N, N]
    metric.update(logits[:, [2, 1, 0]], y[:, [2, 1, 0]])  # the members swap roles: member 2 now always right
    assert torch.equal(metric.compute(), torch.full((3, 3), 0.5).where(want.flip(0) != want, want))


def test_epoch_mean_is_a_batch_size_weighted_mean_per_member():
    mean = EpochMean(members=3, dtype=torch.float64)
    mean.update(torch.tensor([1.0, 2.0, 3.0]), 10)
    mean.update(torch.tensor([3.0, 0.0, 3.0]), 30)
    assert mean.compute().tolist() == [2.5, 0.5, 3.0]
    scalar = EpochMean()  # an ordinary run: S = 1, a scalar per batch
    scalar.update(torch.tensor(4.0), 1)
    scalar.update(torch.tensor(1.0), 3)
    assert scalar.compute().tolist() == 1.75  # torchmetrics squeezes one element, as before the member axis


def test_state_survives_a_state_dict_round_trip_and_resets_per_epoch():
    metrics, means = epoch_metrics((1, 5), ["data_loss", "loss"], members=3)
    it = batches(3)
    logits, y = next(it)
    metrics["train_metrics"].update(logits, y)
    means["train_means"]["loss"].update(torch.tensor([0.5, 1.0, 2.0]), len(y))
    state = {**metrics.state_dict(prefix="metrics."), **means.state_dict(prefix="means.")}
    assert {"metrics.train_metrics.correct", "metrics.train_metrics.count"} <= set(state)
    assert not any(".val_" in k or ".test_" in k for k in state)  # only training's travel
    fresh_metrics, fresh_means = epoch_metrics((1, 5), ["data_loss", "loss"], members=3)
    fresh_metrics.load_state_dict({k.removeprefix("metrics."): v for k, v in state.items() if "metrics." in k})
    fresh_means.load_state_dict({k.removeprefix("means."): v for k, v in state.items() if k.startswith("means.")})
    logits, y = next(it)
    for m in (metrics, fresh_metrics):  # both go on counting from the same state
        m["train_metrics"].update(logits, y)
    assert torch.equal(fresh_metrics["train_metrics"].compute(), metrics["train_metrics"].compute())
    values = epoch_values(fresh_metrics["train_metrics"], fresh_means["train_means"])
    assert set(values) == {"loss", *accuracy_names((1, 5))}  # data_loss saw no update: not reported
    assert values["loss"].tolist() == [0.5, 1.0, 2.0]
    assert (
        not fresh_metrics["train_metrics"].count.any()
        and epoch_values(fresh_metrics["train_metrics"], fresh_means["train_means"]) == {}
    )  # reset


def test_an_ordinary_checkpoint_in_the_torchmetrics_layout_loads_with_its_counts():
    """Before regnet/metrics.py a checkpoint held a torchmetrics MulticlassAccuracy (and an ErrorRate, the same
    states) per k, and scalar means: their counts become today's, so a mid-epoch resume keeps them."""
    logits, y = torch.randn(40, 10), torch.randint(0, 10, (40,))
    old = MetricCollection(
        {
            f"{kind}{suffix}": MulticlassAccuracy(10, top_k=k, average="micro", validate_args=False)
            for k, suffix in ((1, ""), (5, "_top5"))
            for kind in ("acc", "err")
        }
    )
    old.persistent(True)
    old.update(logits, y)
    module = RegNetModule(torch.nn.Linear(3, 10), 10)
    state = {f"model.{k}": v for k, v in module.model.state_dict().items()}
    state |= old.state_dict(prefix="metrics.train_metrics.")
    state |= {"means.train_means.loss.total": torch.tensor(45.0), "means.train_means.loss.count": torch.tensor(40.0)}
    assert "metrics.train_metrics.acc_top5.tp" in state  # the old layout
    checkpoint = {"state_dict": state}
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])  # strict: no old key left, no new one missing
    counts = module.metrics["train_metrics"]
    assert counts.count.tolist() == [40]
    assert torch.equal(counts.compute()[0], torch.stack([old["acc"].compute(), old["acc_top5"].compute()]))
    assert module.means["train_means"]["loss"].compute().tolist() == 45.0 / 40
    assert module.means["train_means"]["data_loss"].count.tolist() == [0.0]  # missing: starts from zero


def test_a_stack_checkpoint_with_the_old_buffers_loads_with_its_counts():
    from regnet.stacked.module import StackedModule

    S = 2
    module = StackedModule(torch.nn.Linear(3, 10 * S), [], num_classes=10, optimizer=torch.optim.SGD, scheduler=None,
                           scheduler_interval="step", loss="cross_entropy", generator_seeds=list(range(S)),
                           generator_states=[None] * S, weight_decay=torch.zeros(S))  # fmt: skip
    state = {k: v for k, v in module.state_dict().items() if not k.startswith(("metrics.", "means."))}
    old = {"count": [8.0, 8.0], "correct1": [3.0, 5.0], "correct5": [7.0, 8.0], "loss": [4.0, 12.0]}
    state |= {f"train__{k}": torch.tensor(v, dtype=torch.float64) for k, v in old.items()}
    state |= {"train__data_loss": torch.tensor([4.0, 12.0], dtype=torch.float64)}
    state |= {f"{stage}__{k}": torch.ones(S, dtype=torch.float64) for stage in ("val", "test") for k in old}
    checkpoint = {"state_dict": state}
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])  # strict
    assert module.metrics["train_metrics"].compute().tolist() == [[3 / 8, 7 / 8], [5 / 8, 1.0]]
    assert module.means["train_means"]["loss"].compute().tolist() == [0.5, 1.5]
    assert not module.metrics["val_metrics"].count.any()  # validation's sums are dropped
