"""End to end: the six-run hoffman2019 sweep through ``python -m regnet.train`` vs six hand-written loop processes.

    python benchmarks/end_to_end.py                  # one epoch of Fashion-MNIST per run, 1 repetition per side
    python benchmarks/end_to_end.py --reps 3         # interleaved: regnet, hand, hand, regnet, regnet, hand
    python benchmarks/end_to_end.py --quick          # 20 steps per run on a tiny synthetic set (a smoke test)

regnet side: ONE command, wall time from start to exit, everything a user pays included (Python start-up, imports,
Hydra, six sequential runs each writing its checkpoint, logs, confusion matrix and results.json)::

    python -m regnet.train experiment=hoffman2019_mnist data=fashion_mnist trainer.max_epochs=1 \\
        -m variant=no_reg,no_reg_no_dropout,l2,jacobi,jacobi_no_dropout,svb

hand side: six processes one after another, each this file's ``--hand VARIANT`` mode, what a researcher would
write with torch alone: the same LeNet (tanh, the variant's dropout, Glorot init; SVB: orthogonal), the idx
files regnet reads (uint8 on the device, a ``randperm`` per epoch, normalised per batch), SGD lr 0.1 momentum 0.9
(L2: weight decay 5e-4), lr × 0.1 at 1/3 and 2/3 of the steps, batch 100, the Jacobian penalty inline (Hoffman et
al. 2019, Algorithm 1, λ = 0.01, one projection), SVB's projection every 600 steps (Jia et al. 2017), then the
test set in batches of 1000. Both sides read the same decompressed files (prepared once, not timed) and run
with the same threads: torch's default, or ``--threads N`` (OMP_NUM_THREADS for both). Prints each side's wall
time and the ratio regnet / hand (the issue's target: ≤ 1.15).

On a CPU shared with other work, torch's default (one thread per core) can be many times slower than one
thread: the OpenMP threads wait for each other's cores (benchmarks/RESULTS.md). Compare at the same ``--threads``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["no_reg", "no_reg_no_dropout", "l2", "jacobi", "jacobi_no_dropout", "svb"]
SOURCE = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (regnet's offline source)
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
MEAN, STD = 0.2860, 0.3530  # regnet.data.fashion_mnist.FashionMNIST's


# --- the hand-written loop (one process per variant) -------------------------------------------------------
def hand_run(variant: str, root: Path, epochs: int, steps: int, test_batches: int) -> float:
    """Train one variant as a plain torch script would; returns its test accuracy."""
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    raw = root / "FashionMNIST" / "raw"

    def idx(name: str, offset: int):
        return torch.from_numpy(np.fromfile(raw / name, dtype=np.uint8, offset=offset).copy())

    x_train = idx(FILES[0], 16).view(-1, 1, 28, 28)  # (60000, 1, 28, 28) uint8
    y_train = idx(FILES[1], 8).long()
    x_test, y_test = idx(FILES[2], 16).view(-1, 1, 28, 28), idx(FILES[3], 8).long()

    dropout = 0.0 if variant.endswith("no_dropout") else 0.5
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Dropout(dropout),
        nn.Linear(120, 84), nn.Tanh(), nn.Dropout(dropout),
        nn.Linear(84, 10),
    )  # fmt: skip
    dense = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in dense:
        (nn.init.orthogonal_ if variant == "svb" else nn.init.xavier_uniform_)(m.weight)
        nn.init.zeros_(m.bias)
    batch, n = 100, len(y_train)
    per_epoch = min(n // batch, steps or n)
    total = epochs * per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4 if variant == "l2" else 0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [round(total / 3), round(2 * total / 3)], 0.1)
    jacobian = variant.startswith("jacobi")
    step = 0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(per_epoch):
            b = perm[i * batch : (i + 1) * batch]
            x = (x_train[b].float() / 255 - MEAN) / STD  # (100, 1, 28, 28)
            y = y_train[b]
            x.requires_grad_(jacobian)
            logits = model(x)  # (100, 10)
            loss = nn.functional.cross_entropy(logits, y)
            if jacobian:  # λ/2 · C · ‖vᵀJ‖² / B, v uniform on the unit sphere
                v = torch.randn_like(logits)
                v = v / v.norm(dim=1, keepdim=True)
                (g,) = torch.autograd.grad(logits, x, grad_outputs=v, create_graph=True)
                loss = loss + 0.01 * 0.5 * 10 * g.pow(2).sum() / len(y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if variant == "svb" and step % 600 == 0:  # singular values into [1/(1+ε), 1+ε], ε = 0.05
                with torch.no_grad():
                    for m in dense:
                        w = m.weight.view(len(m.weight), -1)
                        u, s, vh = torch.linalg.svd(w, full_matrices=False)
                        w.copy_((u * s.clamp(1 / 1.05, 1.05)) @ vh)
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for i in range(min(len(y_test) // 1000, test_batches or len(y_test))):
            x = (x_test[i * 1000 : (i + 1) * 1000].float() / 255 - MEAN) / STD
            correct += int((model(x).argmax(1) == y_test[i * 1000 : (i + 1) * 1000]).sum())
            seen += 1000
    return correct / seen


# --- the benchmark ------------------------------------------------------------------------------------------
def prepare(root: Path, quick: bool) -> None:
    """The idx files regnet reads, under ``root/FashionMNIST/raw`` (decompressed once, as regnet would):
    Fashion-MNIST's own, or with ``quick`` (or no Fashion-MNIST here) a small synthetic set in the same format."""
    raw = root / "FashionMNIST" / "raw"
    if quick or not all((SOURCE / f"{name}.gz").is_file() for name in FILES):
        sys.path.insert(0, str(REPO))
        from regnet.data.synthetic import write_idx_dataset

        write_idx_dataset(root, "FashionMNIST", n_train=2_000, n_test=1_000)
        return
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        with gzip.open(SOURCE / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> float:
    """Wall seconds of ``cmd`` to its exit; its output goes to ``log``; a failure stops the benchmark."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:  # the log's folder goes with the benchmark: show its end
        sys.stderr.write(log.read_text()[-3000:])
        sys.exit(f"end_to_end: {' '.join(cmd[:4])} … exited {proc.returncode}")
    return seconds


def regnet_sweep(tmp: Path, rep: int, root: Path, steps: int, env: dict) -> float:
    limits = [f"trainer.limit_train_batches={steps}", "trainer.limit_test_batches=1"] if steps else []
    cmd = [sys.executable, "-m", "regnet.train", "experiment=hoffman2019_mnist", "data=fashion_mnist",
           "trainer.max_epochs=1", f"data.root={root}", f"paths.outputs={tmp / f'outputs_{rep}'}", *limits,
           "-m", f"variant={','.join(VARIANTS)}"]  # fmt: skip
    seconds = timed(cmd, env, tmp, tmp / f"regnet_{rep}.log")
    runs = list((tmp / f"outputs_{rep}").glob("hoffman2019_mnist/*/results.json"))
    states = [json.loads(r.read_text())["status"] for r in runs]
    if len(runs) != len(VARIANTS) or set(states) != {"completed"}:
        sys.stderr.write((tmp / f"regnet_{rep}.log").read_text()[-3000:])
        sys.exit(f"end_to_end: the regnet sweep left {len(runs)} results ({states}), not {len(VARIANTS)} completed")
    return seconds


def hand_processes(tmp: Path, rep: int, root: Path, steps: int, env: dict) -> float:
    total = 0.0
    for variant in VARIANTS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--hand", variant, "--root", str(root), "--epochs", "1"]
        cmd += ["--steps", str(steps), "--test-batches", "1"] if steps else []
        total += timed(cmd, env, tmp, tmp / f"hand_{rep}_{variant}.log")
    return total


def measure(reps: int, quick: bool, steps: int, threads: int = 0) -> dict:
    """``reps`` interleaved repetitions of both sides (each goes first in half of them); wall seconds of each and
    the median ratio regnet / hand. ``threads``: OMP_NUM_THREADS of both sides (0: as this process has it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        prepare(tmp / "data", quick)
        ours, hand = [], []
        for r in range(reps):
            sides = [lambda: ours.append(regnet_sweep(tmp, r, tmp / "data", steps, env)),
                     lambda: hand.append(hand_processes(tmp, r, tmp / "data", steps, env))]  # fmt: skip
            for side in sides if r % 2 == 0 else sides[::-1]:
                side()
            print(f"  rep {r}: regnet sweep {ours[-1]:7.1f} s   six hand processes {hand[-1]:7.1f} s   "
                  f"ratio {ours[-1] / hand[-1]:.3f}", file=sys.stderr, flush=True)  # fmt: skip
    ratios = [o / h for o, h in zip(ours, hand)]
    return {"regnet_s": ours, "hand_s": hand, "ratios": ratios, "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=1, help="interleaved repetitions per side")
    parser.add_argument("--quick", action="store_true", help="20 steps per run on a small synthetic set")
    parser.add_argument("--steps", type=int, default=0, help="training steps per run (0: the whole epoch)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both sides (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--hand", choices=VARIANTS, help=argparse.SUPPRESS)  # one hand-loop process
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--test-batches", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand:
        acc = hand_run(args.hand, args.root, args.epochs, args.steps, args.test_batches)
        print(f"{args.hand}: test accuracy {acc:.4f}")
        return
    if args.reps < 1 or args.steps < 0 or args.threads < 0:
        parser.error(f"--reps {args.reps} / --steps {args.steps} / --threads {args.threads} is invalid: "
                     "use --reps ≥ 1, --steps ≥ 0, --threads ≥ 0")  # fmt: skip
    steps = args.steps or (20 if args.quick else 0)
    results = measure(args.reps, args.quick, steps, args.threads)
    results["threads"] = args.threads or "default"
    print(f"six-run sweep, {'quick: ' + str(steps) + ' steps per run' if steps else 'one epoch per run'}, "
          f"threads {results['threads']}, "
          f"{args.reps} repetition(s): regnet {statistics.median(results['regnet_s']):.1f} s, "
          f"hand {statistics.median(results['hand_s']):.1f} s, regnet / hand {results['ratio']:.3f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
