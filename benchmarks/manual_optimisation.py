"""Would manual optimisation bring a LightningModule's step to the hand loop's speed? (issue: the step costs what
the math costs; benchmarks/RESULTS.md, "Manual optimisation").

One invocation times, side by side, interleaved, the hand loop of ``steady_state.py`` and the same step
(``hand_loss``, the config's optimizer, the multistep schedule per step) as three bare LightningModules on a bare
Trainer fed by regnet's DataModule:

- ``automatic``: Lightning's automatic optimisation (``steady_state.BareModule``, the floor of that table);
- ``manual``: ``automatic_optimization = False``, ``manual_backward`` and Lightning's optimizer wrapper, which
  counts the step (``global_step``) and runs the optimizer hooks, as any real module would need;
- ``raw``: manual optimisation past that wrapper (the bare torch optimizer). Lightning then counts no step:
  ``global_step`` stays 0, so step-based checkpoints, schedules, logging and ``max_steps`` stop working. It is
  here only to show what the wrapper costs.

    python benchmarks/manual_optimisation.py --case lenet_none --reps 8 --steps 300
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steady_state import (  # noqa: E402 (the sibling benchmark)
    BareModule,
    StepTimer,
    case_overrides,
    compose,
    hand_loss,
    hand_step,
    jacobian_lam,
    rates,
    write_data,
)


class ManualModule(BareModule):
    """:class:`BareModule` with manual optimisation through Lightning's optimizer wrapper."""

    raw = False

    def __init__(self, *args):
        super().__init__(*args)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers(use_pl_optimizer=not self.raw)
        loss = hand_loss(self.model, batch[0], batch[1], self.lam)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()


class RawManualModule(ManualModule):
    """Manual optimisation with the bare torch optimizer: Lightning counts no step."""

    raw = True


def bare_step(module_class, case: str, root: Path, run_dir: Path, batch: int, steps: int, warmup: int) -> float:
    """Images/s of ``module_class`` over steps ``warmup``…``steps`` on a bare CPU Trainer."""
    from hydra.utils import instantiate

    cfg = compose(case_overrides(case, root, torch.device("cpu"), batch, steps, []))
    torch.manual_seed(0)
    module = module_class(instantiate(cfg.model), instantiate(cfg.optim), jacobian_lam(case, cfg), steps)
    timing = run_dir / f"{module_class.__name__}.json"
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(run_dir),
                        deterministic=cfg.trainer.get("deterministic", False),
                        callbacks=[StepTimer(str(timing), warmup)])  # fmt: skip
    trainer.fit(module, datamodule=instantiate(cfg.data))
    assert trainer.global_step == (0 if module_class is RawManualModule else steps), trainer.global_step
    return rates(timing)[0]


def run(case: str, reps: int, batch: int, steps: int, warmup: int) -> dict[str, float]:
    """Median images/s of each side and the median per-repetition ratio of each Lightning side to the hand loop."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_data(tmp / "data", {"lenet_none": steps, "lenet_jacobian": steps, "resnet18": 1}, batch)
        sides = {"hand": lambda d: hand_step(case, tmp / "data", torch.device("cpu"), batch, steps, warmup, [])[0]}
        for name, cls in (("automatic", BareModule), ("manual", ManualModule), ("raw", RawManualModule)):
            sides[name] = lambda d, cls=cls: bare_step(cls, case, tmp / "data", d, batch, steps, warmup)
        got = {name: [] for name in sides}
        order = list(sides)
        for r in range(reps):
            run_dir = tmp / f"rep{r}"
            run_dir.mkdir()
            for name in order[r % 4 :] + order[: r % 4]:  # each repetition starts one side later
                got[name].append(sides[name](run_dir))
            print(f"  rep {r}: " + "  ".join(f"{k} {v[-1]:8,.0f}" for k, v in got.items()) + " img/s", file=sys.stderr)
    out = {f"{k}_img_s": statistics.median(v) for k, v in got.items()}
    for name in order[1:]:
        out[f"{name}/hand"] = statistics.median(s / h for s, h in zip(got[name], got["hand"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="lenet_none", choices=["lenet_none", "lenet_jacobian"])
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    for key, value in run(args.case, args.reps, args.batch_size, args.steps, args.warmup).items():
        print(f"{key:16s} {value:10.3f}" if "/" in key else f"{key:16s} {value:10,.0f}")


if __name__ == "__main__":
    main()
