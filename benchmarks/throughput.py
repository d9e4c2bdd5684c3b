"""Training throughput, side by side on one device: seed-style loop vs raw PyTorch loop vs regnet.train.

    python benchmarks/throughput.py                    # auto device, default sizes
    python benchmarks/throughput.py --quick            # tiny sizes, fewer regnet.train cases (CPU smoke)
    python benchmarks/throughput.py --grid 8           # also K concurrent regnet.train runs on the device

Cases (images/s, batch 100 unless --batch-size):
  (a) seed_loop      torchvision MNIST (PIL → ToTensor → Normalize) through a DataLoader, hand-written SGD loop
  (b) raw_loop       the same model/optimizer in a raw PyTorch loop on device-resident uint8 data
      raw_resnet18    the same for ResNet-18 / CIFAR-100 (on a GPU: bf16 autocast, channels-last)
  (c) regnet_*       `python -m regnet.train` (subprocess, real Trainer, logging, checkpoints) for LeNet/MNIST
                     with reg none, l2, jacobian, svb and ResNet-18/CIFAR-100 with/without cifar_crop_flip
                     (on a GPU: trainer=gpu, bf16-mixed, callbacks.channels_last.enabled=true)
  steady_*           in this process, steady-state steps of regnet's real training path (regnet.train.train, a real
                     Trainer with every default callback) vs a hand-written loop doing the same work, medians of
                     interleaved repetitions (benchmarks/steady_state.py): LeNet reg=none and reg=jacobian,
                     ResNet-18; on a GPU also LeNet with compile=true and compile=reduce-overhead (CUDA graphs)
  grid               K concurrent regnet.train runs, aggregate images/s
  stacked_S / separate_S   (--stacked 1,5,30) aggregate images/s of S LeNets trained as one stacked model
                     (regnet/stacked/layers.py) vs the same S LeNets stepped one after another, as separate runs
                     sharing a device time-slice; the same raw loop (device-resident data, SGD) for both
Synthetic data in the real on-disk formats (60k MNIST-shaped, 50k CIFAR-shaped images) is written to a
temporary folder. Prints a table and ratios c/a, c/b; writes JSON (--out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from regnet.data.synthetic import write_cifar_dataset, write_idx_dataset  # noqa: E402
from regnet.models.lenet import LeNet  # noqa: E402
from regnet.models.resnet18 import ResNet18  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
import steady_state  # noqa: E402

MEAN, STD = 0.1307, 0.3081


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- (a) the seed studies' loop ----------------------------------------------------------------------------
def seed_loop(root: Path, device: torch.device, batch: int, steps: int, workers: int) -> float:
    transform = torchvision.transforms.Compose(
        [torchvision.transforms.ToTensor(), torchvision.transforms.Normalize((MEAN,), (STD,))]
    )
    dataset = torchvision.datasets.MNIST(str(root), train=True, transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    model = LeNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    done, start = 0, None
    while done < steps:
        for images, labels in loader:
            if done == 5:  # warm-up steps excluded
                sync(device)
                start = time.perf_counter()
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done >= steps:
                break
    sync(device)
    return (steps - 5) * batch / (time.perf_counter() - start)


# --- (b) raw PyTorch loop, data on the device --------------------------------------------------------------
def raw_loop(device: torch.device, batch: int, steps: int, n: int = 60_000, resnet: bool = False) -> float:
    """LeNet on MNIST-shaped data; ``resnet``: ResNet-18 on CIFAR-100-shaped data, on a GPU in bf16 autocast
    with channels-last weights (what ``regnet_resnet18*`` run)."""
    shape, classes = ((3, 32, 32), 100) if resnet else ((1, 28, 28), 10)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (n,), device=device)
    model = ResNet18(num_classes=classes).to(device) if resnet else LeNet().to(device)
    fast = resnet and device.type == "cuda"
    if fast:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    perm = torch.randperm(n, device=device)
    start = None
    for i in range(steps):
        if i == 5:
            sync(device)
            start = time.perf_counter()
        idx = perm[(i * batch) % (n - batch) : (i * batch) % (n - batch) + batch]
        x = (images[idx].float() / 255 - MEAN) / STD
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            loss = torch.nn.functional.cross_entropy(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return (steps - 5) * batch / (time.perf_counter() - start)


# --- (c) regnet.train --------------------------------------------------------------------------------------
def regnet_cmd(root: Path, out: Path, steps: int, batch: int, accelerator: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "regnet.train",
        f"data.root={root}",
        f"data.batch_size={batch}",
        f"trainer.accelerator={accelerator}",
        "trainer.max_epochs=2",
        f"trainer.limit_train_batches={steps}",
        "trainer.limit_test_batches=1",
        "callbacks.checkpoint.every_n_epochs=1",
        f"hydra.run.dir={out}",
        "force=true",
        *extra,
    ]


def regnet_run(root: Path, out: Path, steps: int, batch: int, accelerator: str, extra: list[str]) -> float | None:
    """images/s of the second epoch (the first pays for start-up, compilation and cudnn autotuning)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        regnet_cmd(root, out, steps, batch, accelerator, extra), cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return epoch_throughput(out / "metrics.csv")


def epoch_throughput(metrics_csv: Path) -> float | None:
    import pandas as pd

    frame = pd.read_csv(metrics_csv)
    if "train/images_per_s" not in frame:
        return None
    values = frame["train/images_per_s"].dropna()
    return float(values.iloc[-1]) if len(values) else None


def grid(root: Path, tmp: Path, k: int, steps: int, batch: int, accelerator: str) -> float:
    """K concurrent runs; on the CPU each gets 1/K of the cores, as a sweep's jobs do (``share_cpu_cores``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if accelerator == "cpu":
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // k)))
    procs = [
        subprocess.Popen(
            regnet_cmd(root, tmp / f"grid{i}", steps, batch, accelerator, [f"seed={i}"]),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(k)
    ]
    for p in procs:
        p.wait()
    rates = [epoch_throughput(tmp / f"grid{i}" / "metrics.csv") for i in range(k)]
    return float(sum(r for r in rates if r))


# --- stacked runs: S LeNets as one wide model vs S separate models (regnet/stacked/) ------------------------
def stacked_case(device: torch.device, batch: int, steps: int, sizes: list[int]) -> dict[str, float]:
    """Aggregate images/s (all members' images) of S LeNets (dropout 0.5, tanh: hoffman2019_mnist's) stepped as
    one stacked model and as S separate models in turn, each member on its own batch."""
    from regnet.stacked.layers import stack_models

    n = 60_000
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (n,), device=device)
    out: dict[str, float] = {}

    def timed(step_fn, count: int) -> float:
        for i in range(min(5, count)):
            step_fn(i)
        sync(device)
        start = time.perf_counter()
        for i in range(count):
            step_fn(i)
        sync(device)
        return time.perf_counter() - start

    for S in sizes:
        models = [LeNet() for _ in range(S)]
        perms = torch.stack([torch.randperm(n, device=device) for _ in range(S)])  # (S, n): each member's order
        wide = stack_models(models).to(device)
        opt = torch.optim.SGD(wide.parameters(), lr=0.1, momentum=0.9)

        def wide_step(i: int) -> None:
            idx = perms[:, (i * batch) % (n - batch) : (i * batch) % (n - batch) + batch].t()  # (B, S)
            x = ((images[idx].float() / 255 - MEAN) / STD).flatten(1, 2)  # (B, S·1, 28, 28)
            logits = wide(x).view(batch, S, -1)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[idx].flatten(), reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.view(batch, S).mean(0).sum().backward()
            opt.step()

        out[f"stacked_{S}"] = S * batch * steps / timed(wide_step, steps)
        separate = [m.to(device) for m in models]
        opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in separate]
        rounds = max(1, steps // S) if S > 1 else steps

        def separate_round(i: int) -> None:
            for s, (m, o) in enumerate(zip(separate, opts)):
                idx = perms[s, (i * batch) % (n - batch) : (i * batch) % (n - batch) + batch]
                loss = torch.nn.functional.cross_entropy(m((images[idx].float() / 255 - MEAN) / STD), labels[idx])
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()

        out[f"separate_{S}"] = S * batch * rounds / timed(separate_round, rounds)
        out[f"stacked_{S}/separate_{S}"] = out[f"stacked_{S}"] / out[f"separate_{S}"]
    return out


def steady_cases(device: torch.device, quick: bool, skip_resnet: bool) -> dict[str, dict]:
    """The in-process steady-state comparison (benchmarks/steady_state.py); on a GPU also the launch-bound LeNet
    compiled, and compiled with CUDA graphs (``compile=reduce-overhead``), against the hand loop compiled alike."""
    cases = ["lenet_none", "lenet_jacobian"] + ([] if skip_resnet or quick else ["resnet18"])
    out = steady_state.run(device, cases, reps=3, quick=quick)
    if device.type == "cuda":
        for mode in ("true", "reduce-overhead"):
            try:  # one failing compiled case must not cost the other numbers
                compiled = steady_state.run(device, ["lenet_none"], reps=1, quick=quick, extra=[f"compile={mode}"])
            except Exception as err:  # noqa: BLE001
                print(f"steady lenet_none compile={mode} failed: {type(err).__name__}: {err}", file=sys.stderr)
                continue
            out[f"lenet_none_compile_{mode}"] = compiled["lenet_none"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300, help="training steps per case")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the seed loop")
    parser.add_argument("--grid", type=int, default=0, help="K concurrent regnet.train runs (0: skip)")
    parser.add_argument("--quick", action="store_true", help="few steps, small synthetic sets")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--stacked", default="", help="stack sizes S, e.g. 1,5,30: stacked vs separate LeNets (only)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "throughput.json")
    args = parser.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    steps = 12 if args.quick else args.steps  # the first 5 are warm-up
    n_train = 2_000 if args.quick else 60_000
    if steps <= 5:
        parser.error(f"--steps {steps} is invalid: use ≥ 6 (the first 5 steps are not timed)")

    results: dict[str, float | None] = {}
    if args.stacked:  # only the stacked case: it needs no files
        results = stacked_case(device, args.batch_size, steps, [int(v) for v in args.stacked.split(",")])
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": name,
            "torch": torch.__version__,
            "batch_size": args.batch_size,
            "steps": steps,
            "images_per_s": results,
        }
        for name, value in results.items():
            print(f"  {name:32s} {value:12,.2f}" if "/" in name else f"  {name:32s} {value:12,.0f} img/s")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_idx_dataset(tmp / "data", "MNIST", n_train=n_train, n_test=1_000)
        write_cifar_dataset(tmp / "data", classes=100, n_train=n_train - n_train % 5, n_test=1_000)
        results["seed_loop"] = seed_loop(tmp / "data", device, args.batch_size, steps, args.workers)
        results["raw_loop"] = raw_loop(device, args.batch_size, steps, n_train)
        for reg in ("none", "jacobian") if args.quick else ("none", "l2", "jacobian", "svb"):
            results[f"regnet_lenet_{reg}"] = regnet_run(
                tmp / "data", tmp / f"lenet_{reg}", steps, args.batch_size, accelerator, [f"reg={reg}"]
            )
        if not args.skip_resnet:
            resnet = ["model=resnet18", "data.verify_checksums=false"]
            if device.type == "cuda":
                resnet += ["trainer=gpu", "trainer.precision=bf16-mixed", "callbacks.channels_last.enabled=true"]
            rsteps = max(10, steps // (1 if device.type == "cuda" else 10))
            results["raw_resnet18"] = raw_loop(device, args.batch_size, rsteps, n_train, resnet=True)
            if not args.quick:
                results["regnet_resnet18"] = regnet_run(
                    tmp / "data", tmp / "r18", rsteps, args.batch_size, accelerator, resnet
                )
            results["regnet_resnet18_crop_flip"] = regnet_run(
                tmp / "data", tmp / "r18aug", rsteps, args.batch_size, accelerator, [*resnet, "augment=cifar_crop_flip"]
            )
        steady = steady_cases(device, args.quick, args.skip_resnet)
        if args.grid:
            results[f"grid_{args.grid}_lenet"] = grid(tmp / "data", tmp, args.grid, steps, args.batch_size, accelerator)

    c = results.get("regnet_lenet_none")
    ratios = {
        "c/a (regnet / seed loop)": c / results["seed_loop"] if c else None,
        "c/b (regnet / raw loop)": c / results["raw_loop"] if c else None,
    }
    if c and results.get("regnet_lenet_jacobian"):
        ratios["jacobian time / none time"] = c / results["regnet_lenet_jacobian"]
    if results.get("regnet_resnet18_crop_flip") and results.get("raw_resnet18"):
        ratios["resnet18 crop_flip / raw loop"] = results["regnet_resnet18_crop_flip"] / results["raw_resnet18"]
    for name, r in steady.items():
        results[f"steady_{name}_hand"], results[f"steady_{name}_regnet"] = r["hand"], r["regnet"]
        results[f"steady_{name}_lightning"] = r["lightning"]
        ratios[f"steady {name} regnet/hand"] = r["ratio"]
        ratios[f"steady {name} bare Lightning/hand"] = r["lightning_ratio"]
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "steps": steps,
        "quick": args.quick,
        "images_per_s": results,
        "ratios": ratios,
        "steady_state": steady,
    }
    print(f"device: {report['device']}   torch {report['torch']}   batch {args.batch_size}   steps {steps}")
    for name, value in results.items():
        print(f"  {name:32s} {value:12,.0f} img/s" if value else f"  {name:32s}       failed")
    for name, value in ratios.items():
        print(f"  {name:32s} {value:12.2f}" if value else f"  {name:32s}          n/a")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
