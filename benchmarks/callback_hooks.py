"""Host time of Lightning's per-step callback dispatch with regnet's callbacks, with and without the idle hooks.

    python benchmarks/callback_hooks.py [--steps 5000] [--reps 3]

The Trainer is regnet's own (``regnet.trainer.make_trainer`` on the default config, with the callbacks a run adds:
its signal checkpoint and divergence check). Each "step" calls Lightning's dispatcher
(``lightning.pytorch.trainer.call._call_callback_hooks``) for the four hooks a training step calls between the
batch hooks (``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``, ``on_before_zero_grad``),
first with every callback's inherited hooks restored (Lightning's default: each called inside a profiler context),
then as ``make_trainer`` leaves them (``skip_idle_step_hooks``: inherited hooks set to None, which Lightning skips).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer import call

sys.path.insert(0, str(Path(__file__).resolve().parent))
import steady_state  # noqa: E402  (its config composition and data files)

HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def per_step_us(trainer: L.Trainer, steps: int) -> float:
    loss, optimizer = torch.tensor(1.0), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    args = {"on_before_backward": (loss,), "on_after_backward": (), "on_before_optimizer_step": (optimizer,),
            "on_before_zero_grad": (optimizer,)}  # fmt: skip
    start = time.perf_counter()
    for _ in range(steps):
        for hook in HOOKS:
            call._call_callback_hooks(trainer, hook, *args[hook])
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from regnet.build import build
    from regnet.callbacks.divergence import DivergenceCheck
    from regnet.signals import CheckpointAtSignal, SignalGuard
    from regnet.trainer import STEP_HOOKS, make_trainer

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        steady_state.write_data(tmp / "data", {"lenet_none": 10, "lenet_jacobian": 10, "resnet18": 1}, 10)
        cfg = steady_state.compose(steady_state.case_overrides("lenet_none", tmp / "data", torch.device("cpu"), 10,
                                                               10, []))  # fmt: skip
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp / "run")
        HydraConfig.instance().set_config(copy.deepcopy(cfg))
        module, datamodule, reg_callbacks = build(cfg)
        run_callbacks = [*reg_callbacks, CheckpointAtSignal(SignalGuard(), tmp / "run" / "checkpoints"),
                         DivergenceCheck()]  # fmt: skip
        trainer = make_trainer(cfg, tmp / "run", datamodule, run_callbacks)
        trainer.strategy.connect(module)
        module.trainer = trainer
        skipped = {(i, h) for i, cb in enumerate(trainer.callbacks) for h in STEP_HOOKS if getattr(cb, h) is None}
        names = ", ".join(type(cb).__name__ for cb in trainer.callbacks)
        print(f"{len(trainer.callbacks)} callbacks ({names}); {len(skipped)} idle per-step hooks skipped")
        for rep in range(args.reps):
            for i, hook in skipped:  # Lightning's default: the inherited hooks back, each called
                delattr(trainer.callbacks[i], hook)
            default = per_step_us(trainer, args.steps)
            for i, hook in skipped:
                setattr(trainer.callbacks[i], hook, None)
            lean = per_step_us(trainer, args.steps)
            print(f"rep {rep}: {default:6.1f} µs a step with every hook called, {lean:6.1f} µs with the idle ones "
                  f"skipped")  # fmt: skip


if __name__ == "__main__":
    main()
