"""Would adaptive refinement give the same decision-plane label images as evaluating every grid point?

    python benchmarks/refinement_check.py outputs/hoffman2019_mnist --planes 16 --seed 1

Adaptive refinement evaluates the grid rows and columns every K points, fills each block whose perimeter has a
single label with that label, and splits the other blocks at their middle row and column until they are 2
points wide. It would evaluate a fraction of the points; it is wrong wherever a region of another class lies
wholly inside a block. This script computes the exact label images of every run in a sweep with
:func:`regnet.analysis.decision_plane`, replays refinement on them (reading the exact labels instead of
evaluating the model) and prints, per K, the fraction of points refinement evaluates, how many images and
pixels it gets wrong, and the logit margin (top-1 minus top-2) of the model at the wrong pixels: margins far
above float rounding mean the missed regions are real, not near-ties. benchmarks/RESULTS.md has the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from regnet.analysis import decision_plane, find_runs, load_run, sample_planes, test_inputs  # noqa: E402
from regnet.analysis.boundaries import grid_axis  # noqa: E402


def refine(labels: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """The label image refinement with blocks of ``k`` would produce from exact ``labels``, and how many
    points it evaluates."""
    r = labels.shape[0]
    known = torch.zeros(r, r, dtype=torch.bool)
    out = torch.full((r, r), -1, dtype=torch.long)

    def evaluate(mask: torch.Tensor) -> None:
        new = mask & ~known
        out[new], known[new] = labels[new], True

    lines = list(range(0, r - 1, k)) + [r - 1]
    mask = torch.zeros(r, r, dtype=torch.bool)
    mask[lines, :], mask[:, lines] = True, True
    evaluate(mask)
    blocks = [(r0, r1, c0, c1) for r0, r1 in zip(lines, lines[1:]) for c0, c1 in zip(lines, lines[1:])]
    while blocks:
        split, mask = [], torch.zeros(r, r, dtype=torch.bool)
        for r0, r1, c0, c1 in blocks:
            edge = torch.cat([out[r0, c0 : c1 + 1], out[r1, c0 : c1 + 1], out[r0 : r1 + 1, c0], out[r0 : r1 + 1, c1]])
            if (edge == edge[0]).all():
                out[r0 + 1 : r1, c0 + 1 : c1] = edge[0]
            elif r1 - r0 <= 2 or c1 - c0 <= 2:
                mask[r0 + 1 : r1, c0 + 1 : c1] = True
            else:
                rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
                mask[rm, c0 : c1 + 1], mask[r0 : r1 + 1, cm] = True, True
                split += [(r0, rm, c0, cm), (r0, rm, cm, c1), (rm, r1, c0, cm), (rm, r1, cm, c1)]
        evaluate(mask)
        blocks = split
    return out, int(known.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--planes", type=int, default=16)
    p.add_argument("--seed", type=int, default=1, help="seed of the runs to use (and of the planes)")
    p.add_argument("--zooms", type=float, nargs="+", default=[0.025, 0.01, 0.001])
    p.add_argument("--resolution", type=int, default=250)
    p.add_argument("--blocks", type=int, nargs="+", default=[8, 16, 32])
    args = p.parse_args()
    runs = find_runs(args.sweep).table()
    runs = runs[runs["seed"] == args.seed]
    if runs.empty:
        sys.exit(f"error: no completed run with seed {args.seed} below {args.sweep}")
    stats = {k: {"points": 0, "evaluated": 0, "images": 0, "wrong_images": 0, "wrong_pixels": 0, "margins": []}
             for k in args.blocks}  # fmt: skip
    for run in runs.itertuples():
        module, dm, _ = load_run(run.run_dir)
        model = module.model
        x, _ = test_inputs(dm)
        inputs = (x - torch.tensor(dm.mean).view(1, -1, 1, 1)) / torch.tensor(dm.std).view(1, -1, 1, 1)
        for idx, v1, v2 in sample_planes(inputs, args.planes, args.seed):
            for zoom in args.zooms:
                labels = decision_plane(model, inputs[idx], v1, v2, zoom, args.resolution)
                axis = grid_axis(zoom, args.resolution).float()
                for k, s in stats.items():
                    out, evaluated = refine(labels, k)
                    wrong = (out != labels).nonzero()
                    s["points"] += labels.numel()
                    s["evaluated"] += evaluated
                    s["images"] += 1
                    s["wrong_images"] += bool(len(wrong))
                    s["wrong_pixels"] += len(wrong)
                    if len(wrong):
                        a, b = axis[wrong[:, 0]].view(-1, 1, 1, 1), axis[wrong[:, 1]].view(-1, 1, 1, 1)
                        with torch.inference_mode():
                            top2 = model(inputs[idx] + a * v1 + b * v2).topk(2, -1).values
                        s["margins"] += (top2[:, 0] - top2[:, 1]).tolist()
        print(f"{run.variant} seed {run.seed}: done", file=sys.stderr)
    for k, s in stats.items():
        margins = torch.tensor(s.pop("margins") or [float("nan")])
        s |= {"block": k, "evaluated_fraction": round(s["evaluated"] / s["points"], 3),
              "wrong_pixels_margin_over_0.1": int((margins > 0.1).sum()),
              "margin_at_wrong_median": round(float(margins.median()), 3),
              "margin_at_wrong_max": round(float(margins.max()), 3)}  # fmt: skip
        print(json.dumps(s))


if __name__ == "__main__":
    main()
