"""Steady-state training step, in one process: regnet's real training path vs a hand-written loop.

    python benchmarks/steady_state.py                     # LeNet none/jacobian, ResNet-18; 5 interleaved reps
    python benchmarks/steady_state.py --quick             # tiny step counts (CPU smoke)
    python benchmarks/steady_state.py --cases lenet_none --reps 7 --steps 300

regnet side: ``regnet.train.train(cfg, run_dir)`` on a config composed from ``conf/train.yaml`` exactly as
``python -m regnet.train`` composes it (real Lightning Trainer, loggers, checkpoints, progress, divergence check,
every default callback), plus one extra callback (:class:`StepTimer`) that reads the clock at the start of
step ``warmup`` and at the end of the last step, synchronising the device only there.
Hand side: the same model and optimizer (instantiated from the same config), the same multistep schedule,
uint8 data resident on the device, a ``randperm`` batch gather, normalisation on the device, the same dtype and
batch; the Jacobian penalty written out inline (Hoffman et al. 2019, Eq. 5, one random projection).
Bare Lightning side: that same step as a minimal LightningModule on a bare Trainer, fed by regnet's DataModule
(:class:`BareModule`): what Lightning's loop itself costs, the floor of any LightningModule-based step.
The three alternate, ``--reps`` times each (interleaved, so a busy machine slows all alike); the table gives the
median images/s of each and the medians of the per-repetition ratios regnet/hand and bare/hand.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: case → the overrides that pick it (composed with conf/train.yaml like a command line)
CASES: dict[str, list[str]] = {
    "lenet_none": ["model=lenet", "data=mnist", "reg=none"],
    "lenet_jacobian": ["model=lenet", "data=mnist", "reg=jacobian"],
    "resnet18": ["model=resnet18", "data=cifar100", "reg=none", "data.verify_checksums=false"],
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Times training steps ``warmup`` … last of the first epoch (the device synchronised only at those two
    points) and writes ``{"images": n, "seconds": t}`` to ``out``; added to a run by its config."""

    def __init__(self, out: str, warmup: int):
        self.out, self.warmup = Path(out), warmup
        self.start = None
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup and trainer.current_epoch == 0:
            sync(pl_module.device)
            self.start, self.cpu = time.perf_counter(), time.process_time()
        if self.start is not None:
            self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.start is None or trainer.current_epoch != 0:
            return
        sync(pl_module.device)  # before the module's epoch-end logging
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu
        self.out.write_text(json.dumps({"images": self.images, "seconds": seconds, "cpu_seconds": cpu}))


def rates(timing: Path) -> tuple[float, float]:
    """(images/s, images per CPU-second) from a :class:`StepTimer`'s file."""
    result = json.loads(timing.read_text())
    return result["images"] / result["seconds"], result["images"] / result["cpu_seconds"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import regnet  # noqa: F401  (registers the config resolvers)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


def case_overrides(case: str, root: Path, device: torch.device, batch: int, steps: int, extra: list[str]) -> list[str]:
    return [
        *CASES[case],
        f"data.root={root}",
        f"data.batch_size={batch}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}",
        "trainer.limit_test_batches=1",
        "force=true",
        *extra,
    ]


def regnet_step(case: str, root: Path, run_dir: Path, device, batch: int, steps: int, warmup: int,
                extra: list[str]) -> float:  # fmt: skip
    """(images/s, images per CPU-second) of steps ``warmup``…``steps`` of one real ``regnet.train.train`` run."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import regnet.train

    timing = run_dir / "step_timer.json"
    timer = [f"+callbacks.step_timer._target_={__name__}.StepTimer", f"+callbacks.step_timer.out={timing}",
             f"+callbacks.step_timer.warmup={warmup}"]  # fmt: skip
    cfg = compose([*case_overrides(case, root, device, batch, steps, extra), *timer])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(copy.deepcopy(cfg))
    with open(run_dir.parent / f"{run_dir.name}.out", "w") as log, contextlib.redirect_stdout(log):
        regnet.train.train(cfg, run_dir)  # its progress lines and model summary: not this table's
    return rates(timing)


def jacobian_lam(case: str, cfg) -> float | None:
    """The Jacobian penalty's λ in ``case``, None without the penalty."""
    return float(cfg.reg.jacobian.lam) if "reg=jacobian" in CASES[case] else None


def hand_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float | None) -> torch.Tensor:
    """Cross-entropy, plus with ``lam`` the Jacobian penalty written out inline: λ/2 · C · ‖vᵀJ‖² / B, v uniform on
    the unit sphere (Hoffman et al. 2019, Algorithm 1, one projection)."""
    if lam is not None:
        x.requires_grad_(True)
    logits = model(x)  # (B, classes)
    loss = torch.nn.functional.cross_entropy(logits, y)
    if lam is not None:
        v = torch.randn_like(logits)
        v = v / v.norm(dim=1, keepdim=True)
        (g,) = torch.autograd.grad(logits, x, grad_outputs=v, create_graph=True)
        loss = loss + lam * 0.5 * logits.shape[1] * g.pow(2).sum() / len(y)
    return loss


class BareModule(L.LightningModule):
    """The hand loop's step as a minimal LightningModule: :func:`hand_loss`, the config's optimizer and the
    multistep schedule stepped per step; nothing else (no metrics, no logging)."""

    def __init__(self, model: torch.nn.Module, optimizer, lam: float | None, steps: int):
        super().__init__()
        self.model, self.optimizer, self.lam, self.steps = model, optimizer, lam, steps

    def training_step(self, batch, batch_idx):
        return hand_loss(self.model, batch[0], batch[1], self.lam)

    def configure_optimizers(self):
        optimizer = self.optimizer(self.model.parameters())
        milestones = [self.steps // 3, 2 * self.steps // 3]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def bare_lightning_step(case: str, root: Path, run_dir: Path, device, batch: int, steps: int, warmup: int,
                        extra: list[str]) -> tuple[float, float]:  # fmt: skip
    """(images/s, images per CPU-second) of :class:`BareModule` on a bare Trainer (no logger, checkpoint, progress
    bar, summary or other callback besides the timer), fed by regnet's DataModule of the case: Lightning's own cost
    per step, the least a LightningModule-based step can cost."""
    from hydra.utils import instantiate

    cfg = compose(case_overrides(case, root, device, batch, steps, extra))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    if cfg.get("compile"):
        model.compile()
    module = BareModule(model, instantiate(cfg.optim), jacobian_lam(case, cfg), steps)
    timing = run_dir / "bare_timer.json"
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=1,
                        limit_train_batches=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run_dir),
                        deterministic=cfg.trainer.get("deterministic", False),
                        callbacks=[StepTimer(str(timing), warmup)])  # fmt: skip
    trainer.fit(module, datamodule=instantiate(cfg.data))
    return rates(timing)


def hand_step(case: str, root: Path, device, batch: int, steps: int, warmup: int, extra: list[str]) -> float:
    """(images/s, images per CPU-second) of steps ``warmup``…``steps`` of a hand-written loop doing the same
    work."""
    from hydra.utils import get_object, instantiate

    cfg = compose(case_overrides(case, root, device, batch, steps, extra))
    torch.use_deterministic_algorithms(False)  # a Trainer before may have set it: the hand loop does not
    torch.manual_seed(0)
    c, h = cfg.data.in_channels, cfg.data.image_size
    n = steps * batch
    images = torch.randint(0, 256, (n, c, h, h), dtype=torch.uint8, device=device)  # (N, C, H, W)
    labels = torch.randint(0, cfg.data.num_classes, (n,), device=device)
    dataset = get_object(cfg.data._target_)  # its mean and std, unless the config sets them
    mean = torch.tensor(list(cfg.data.get("mean") or dataset.mean), device=device).view(1, c, 1, 1)
    std = torch.tensor(list(cfg.data.get("std") or dataset.std), device=device).view(1, c, 1, 1)
    model = instantiate(cfg.model).to(device).train()
    if cfg.get("compile"):
        model.compile()  # as regnet/build.py does for compile=true
    optimizer = instantiate(cfg.optim)(model.parameters())
    total = steps
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [total // 3, 2 * total // 3], 0.1)
    lam = jacobian_lam(case, cfg)
    perm = torch.randperm(n, device=device)
    start = None
    for i in range(steps):
        if i == warmup:
            sync(device)
            start, cpu = time.perf_counter(), time.process_time()
        idx = perm[i * batch : (i + 1) * batch]
        x = (images[idx].float() / 255 - mean) / std
        y = labels[idx]
        loss = hand_loss(model, x, y, lam)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    sync(device)
    images = (steps - warmup) * batch
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu)


def compare(root: Path, tmp: Path, device, cases: list[str], reps: int, batch: int, steps: dict[str, int],
            warmup: int, extra: list[str] = ()) -> dict[str, dict]:  # fmt: skip
    """Interleaved repetitions of the three sides per case (hand, bare Lightning, regnet; each repetition starts
    one side later, so a busy machine slows all alike): median images/s of each side, and the medians of the
    per-repetition ratios regnet/hand and bare Lightning/hand, by wall time and by process CPU time (steadier than
    wall time on a shared machine)."""
    out = {}
    for case in cases:
        runs = {"hand": [], "lightning": [], "regnet": []}
        for r in range(reps):
            run_dir = tmp / f"{case}_{r}"
            run_dir.mkdir(parents=True, exist_ok=True)
            args = (root, device, batch, steps[case], warmup, list(extra))
            sides = [("hand", lambda: hand_step(case, *args)),
                     ("lightning", lambda: bare_lightning_step(case, args[0], run_dir, *args[1:])),
                     ("regnet", lambda: regnet_step(case, args[0], run_dir, *args[1:]))]  # fmt: skip
            for name, side in sides[r % 3 :] + sides[: r % 3]:
                runs[name].append(side())
            print(f"  {case:16s} rep {r}: " + "  ".join(f"{k} {v[-1][0]:9,.0f}" for k, v in runs.items())
                  + " img/s (per CPU-s: " + " ".join(f"{v[-1][1]:9,.0f}" for v in runs.values()) + ")",
                  file=sys.stderr, flush=True)  # fmt: skip
        out[case] = {"steps": steps[case], "warmup": warmup}
        hand = runs["hand"]
        for i, kind in enumerate(("", "_cpu")):
            for name, prefix in (("regnet", ""), ("lightning", "lightning_")):
                ratios = [o[i] / h[i] for o, h in zip(runs[name], hand)]
                out[case][f"{name}{kind}"] = statistics.median(o[i] for o in runs[name])
                out[case][f"{prefix}ratio{kind}"] = statistics.median(ratios)
                out[case][f"{prefix}ratios{kind}"] = ratios
            out[case][f"hand{kind}"] = statistics.median(h[i] for h in hand)
    return out


def write_data(root: Path, steps: dict[str, int], batch: int) -> None:
    """MNIST- and CIFAR-100-shaped sets in their real file formats, one epoch ≥ the steps of each case."""
    from regnet.data.synthetic import write_cifar_dataset, write_idx_dataset

    lenet = max(steps["lenet_none"], steps["lenet_jacobian"]) * batch
    write_idx_dataset(root, "MNIST", n_train=lenet, n_test=1_000)
    cifar = steps["resnet18"] * batch
    write_cifar_dataset(root, classes=100, n_train=cifar + (-cifar) % 5, n_test=1_000)


def print_table(results: dict[str, dict]) -> None:
    print(f"  {'case':16s} {'hand img/s':>11s} {'bare Lightning':>15s} {'regnet img/s':>13s} {'regnet/hand':>12s} "
          f"{'(by CPU time)':>14s} {'bare/hand':>10s}")  # fmt: skip
    for case, r in results.items():
        print(f"  {case:16s} {r['hand']:11,.0f} {r['lightning']:15,.0f} {r['regnet']:13,.0f} {r['ratio']:12.3f} "
              f"{r['ratio_cpu']:14.3f} {r['lightning_ratio']:10.3f}")  # fmt: skip


def run(device: torch.device, cases: list[str], reps: int = 5, batch: int = 100, steps: int = 200, warmup: int = 10,
        quick: bool = False, extra: list[str] = ()) -> dict[str, dict]:  # fmt: skip
    """The comparison on fresh synthetic data files; ``quick``: 16 LeNet steps (4 of warm-up), 2 repetitions."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # the runs' model summaries
    warnings.filterwarnings("ignore", module="lightning")  # its hints about srun and log_every_n_steps
    lenet = 16 if quick else steps
    warmup = 4 if quick else warmup
    steps_of = {"lenet_none": lenet, "lenet_jacobian": lenet,
                "resnet18": max(warmup + 4, lenet // (1 if device.type == "cuda" else 10))}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_data(tmp / "data", steps_of, batch)
        return compare(tmp / "data", tmp, device, cases, 2 if quick else reps, batch, steps_of, warmup, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200, help="LeNet steps per repetition (ResNet-18: a tenth)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny step counts, 2 repetitions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("overrides", nargs="*", help="extra config overrides for both sides, e.g. compile=true")
    args = parser.parse_args()
    cases = args.cases.split(",")
    for case in cases:
        if case not in CASES:
            parser.error(f"--cases {case!r} is invalid: use {', '.join(CASES)}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(device, cases, args.reps, args.batch_size, args.steps, args.warmup, args.quick, args.overrides)
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
