"""Assemble what ``benchmarks/gpu_check.sh`` ran into OUTDIR/gpu_check.json and OUTDIR/gpu_check.md.

    python benchmarks/gpu_report.py OUTDIR [--cpu-smoke]

Reads OUTDIR/steps.tsv (each step's exit status and seconds), tests.xml (pytest's JUnit report),
throughput.json and decision_planes.json; judges the targets of the GPU work (issue "Every GPU path run for
real": batch 100). Exits 1 if a test failed or a step did not finish, else 0 (a missed target is a
measurement, not a failure).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "omegaconf", "numpy")
FULL_TABLE = {"models": 30, "planes": 50, "resolution": 250, "zooms": 3}  # the TV table of the target


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def steps(out: Path) -> dict[str, dict]:
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line.strip()]
    return {name: {"exit_status": int(rc), "seconds": int(s)} for name, rc, s in rows}


def tests(xml: Path) -> list[dict]:
    """One row per test case: name, outcome (passed, failed, error, skipped), seconds, message."""
    if not xml.is_file():
        return []
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (child.get("message") or "").splitlines()[0][:300] if child.get("message") else ""
                break
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        cases.append(
            {"name": name, "outcome": outcome, "seconds": round(float(case.get("time", 0)), 1), "message": message}
        )
    return cases


def targets(throughput: dict, planes: dict) -> list[dict]:
    rate = throughput.get("images_per_s", {})
    ratios = throughput.get("ratios", {})
    full = (
        planes.get("planes") == FULL_TABLE["planes"]
        and planes.get("resolution") == FULL_TABLE["resolution"]
        and planes.get("models") == FULL_TABLE["models"]
        and len(planes.get("zooms", [])) == FULL_TABLE["zooms"]
    )
    tv_s = (
        planes.get("seconds")
        if full
        else (
            planes["seconds_per_image"]
            * FULL_TABLE["zooms"]
            * FULL_TABLE["planes"]
            * FULL_TABLE["models"]
            * (FULL_TABLE["resolution"] / planes["resolution"]) ** 2
            if planes.get("seconds_per_image")
            else None
        )
    )
    rows = [
        ("LeNet through regnet.train, img/s", rate.get("regnet_lenet_none"), ">=", 100_000),
        ("regnet.train / seed-style DataLoader loop", ratios.get("c/a (regnet / seed loop)"), ">=", 5),
        ("regnet.train / raw eager loop", ratios.get("c/b (regnet / raw loop)"), ">=", 2),
        ("Jacobian step time / no-reg step time", ratios.get("jacobian time / none time"), "<=", 2),
        (
            "ResNet-18 bf16 + channels-last + crop_flip / raw eager bf16 + channels-last loop",
            ratios.get("resnet18 crop_flip / raw loop"),
            ">=",
            1,
        ),
        ("steady state, LeNet reg=none: regnet / hand loop", ratios.get("steady lenet_none regnet/hand"), ">=", 1),
        (
            "steady state, LeNet reg=jacobian: regnet / hand loop",
            ratios.get("steady lenet_jacobian regnet/hand"),
            ">=",
            1,
        ),
        ("steady state, ResNet-18: regnet / hand loop", ratios.get("steady resnet18 regnet/hand"), ">=", 0.95),
        ("TV table of 30 LeNets, s" + ("" if full else " (extrapolated from the quick table)"), tv_s, "<=", 60),
    ]
    return [
        {
            "target": name,
            "value": value,
            "want": f"{op} {want:,}",
            "met": None if value is None else (value >= want if op == ">=" else value <= want),
        }
        for name, value, op, want in rows
    ]


def environment(smoke: bool) -> dict:
    import torch

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    versions |= {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and not smoke else None
    return {"device": gpu or f"cpu ({os.cpu_count()} cores, {platform.machine()})", "versions": versions}


def fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def markdown(report: dict) -> str:
    v = report["versions"]
    header = (
        f"{report['date']} · {report['device']} · torch {v['torch']} (CUDA {v['cuda']}) · torchvision "
        f"{v['torchvision']} · lightning {v['lightning']} · hydra-core {v['hydra-core']} · "
        f"commit {report['git_commit']}"
    )
    lines = [f"# GPU check, {report['mode']}", "", header, ""]
    if report["mode"] != "gpu":
        lines += ["CPU smoke at `--quick` sizes: these numbers check the script, not the targets.", ""]
    lines += ["| target (batch 100) | measured | wanted | verdict |", "|---|---:|---:|---|"]
    for t in report["targets"]:
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "**missed**")
        verdict = verdict if report["mode"] == "gpu" else f"not judged ({verdict} at smoke sizes)"
        lines.append(f"| {t['target']} | {fmt(t['value'])} | {t['want']} | {verdict} |")
    rates = report["throughput"].get("images_per_s", {})
    lines += ["", "| throughput case | images/s |", "|---|---:|"] + [f"| {k} | {fmt(r)} |" for k, r in rates.items()]
    lines += ["", "| test | outcome | s |", "|---|---|---:|"]
    lines += [
        f"| {t['name']} | {t['outcome']}{': ' + t['message'] if t['message'] else ''} | {t['seconds']} |"
        for t in report["tests"]
    ]
    lines += ["", "| step | exit status | s |", "|---|---:|---:|"]
    lines += [f"| {name} | {s['exit_status']} | {s['seconds']} |" for name, s in report["steps"].items()]
    lines += ["", f"**{'PASS' if report['ok'] else 'FAIL'}**: {report['summary']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args(argv)
    if not (args.out / "steps.tsv").is_file():
        print(f"gpu_report: {args.out / 'steps.tsv'} is missing: run benchmarks/gpu_check.sh", file=sys.stderr)
        return 2
    ran = steps(args.out)
    cases = tests(args.out / "tests.xml")
    throughput, planes = read_json(args.out / "throughput.json"), read_json(args.out / "decision_planes.json")
    failed = [t["name"] for t in cases if t["outcome"] in ("failed", "error")]
    broken = [name for name, s in ran.items() if s["exit_status"] != 0]
    count = {o: sum(t["outcome"] == o for t in cases) for o in ("passed", "failed", "error", "skipped")}
    report = {
        "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": os.environ.get("REGNET_COMMIT", "unknown"),
        **environment(args.cpu_smoke),
        "ok": not failed and not broken,
        "summary": (", ".join(f"{n} {o}" for o, n in count.items() if n) or "no test report")
        + (f"; steps that did not finish: {', '.join(broken)}" if broken else ""),
        "targets": targets(throughput, planes),
        "tests": cases,
        "steps": ran,
        "throughput": throughput,
        "decision_planes": planes,
    }
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from regnet.results import write_atomic

    write_atomic(args.out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    write_atomic(args.out / "gpu_check.md", markdown(report))
    print(markdown(report))
    print(f"gpu_check: wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
