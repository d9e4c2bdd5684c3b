"""Time the decision-boundary TV table of LeNets: models × zooms × planes × resolution² grid points.

    python benchmarks/decision_planes.py                       # one LeNet, 3 zooms × 50 planes × 250², CPU or GPU
    python benchmarks/decision_planes.py --models 30           # a 30-run sweep's worth (the hoffman2019_mnist grid)
    python benchmarks/decision_planes.py --planes 5 --threads 2 --json out.json
    python benchmarks/decision_planes.py --models 30 --quick   # ≤ 3 models, 1 plane, 1 zoom, 32²: a smoke test

Prints (and optionally writes) JSON: seconds in total and per plane, points per second, device, settings.
A random-weight LeNet costs the same as a trained one (the grid evaluation does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from regnet.analysis.boundaries import PlaneSettings, boundary_records  # noqa: E402
from regnet.models.lenet import LeNet  # noqa: E402


def cpu_name() -> str:
    """The CPU's model name and family (AVX2 and AVX-512 machines of one name differ ~3× here)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
    except OSError:
        return platform.processor()
    info = {k.strip(): v.strip() for k, v in info.items()}
    return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=1, help="LeNets to analyse one after another (each its own weights)")
    p.add_argument("--planes", type=int, default=50)
    p.add_argument("--zooms", type=float, nargs="+", default=[0.025, 0.01, 0.001])
    p.add_argument("--resolution", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=None, help="grid points per pass (default: 1,024 CPU, 16,384 GPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--quick",
        action="store_true",
        help="at most 3 models, 1 plane at the first zoom, 32² (checks the script; not a timing)",
    )
    args = p.parse_args()
    if args.quick:
        args.models, args.planes, args.zooms, args.resolution = min(args.models, 3), 1, args.zooms[:1], 32
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models < 1:
        p.error(f"--models {args.models} is invalid: it must be ≥ 1")
    torch.manual_seed(0)
    models = [LeNet().to(args.device).eval() for _ in range(args.models)]
    inputs = torch.randn(100, 1, 28, 28)
    boundary_records(models[0], inputs, PlaneSettings(args.zooms[:1], 1, 16))  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    settings = PlaneSettings(tuple(args.zooms), args.planes, args.resolution, batch_size=args.batch_size)
    start = time.perf_counter()
    n_images = 0
    for model in models:
        records, _ = boundary_records(model, inputs, settings)
        n_images += len(records)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {
        "benchmark": "decision_planes",
        "quick": args.quick,
        "model": "lenet",
        "models": args.models,
        "zooms": args.zooms,
        "planes": args.planes,
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "label_images": n_images,
        "seconds": round(seconds, 3),
        "seconds_per_model": round(seconds / args.models, 3),
        "seconds_per_image": round(seconds / n_images, 4),
        "points_per_s": round(n_images * args.resolution**2 / seconds),
        "seconds_3x50_extrapolated": round(seconds / n_images * 150, 1),
        "device": args.device + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        from regnet.files import write_atomic

        write_atomic(args.json, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
