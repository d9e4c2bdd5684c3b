"""regnet's AutoAttack and Square against torchattacks 3.5.1, the library they were ported from, on a trained run.

    pip install torchattacks==3.5.1   # the reference only; regnet itself does not need it
    python benchmarks/attacks_vs_torchattacks.py <run dir> [n_test] [square_queries]

For each ε it prints both libraries' robust accuracy on the run's first ``n_test`` test images and whether the
adversarial images are identical (``torch.equal``); docs/results/autoattack/README.md reports a run of it.
"""

from __future__ import annotations

import sys
import time

import torch
import torchattacks

from regnet.analysis.attacks import PixelModel, accuracy, autoattack, square
from regnet.analysis.runs import load_run, test_inputs


def main(run_dir: str, n_test: int = 200, queries: int = 100) -> None:
    torch.set_num_threads(1)
    module, datamodule, results = load_run(run_dir, device="cpu")
    norm = results["normalization"]
    model = PixelModel(module.model, norm["mean"], norm["std"]).eval()
    x, y = test_inputs(datamodule, n_test)
    print(f"{run_dir}: clean {100 * accuracy(model, x, y):.1f} % on {len(x)} test images", flush=True)
    for eps in (0.02, 0.05, 0.1):
        start = time.perf_counter()
        ours = autoattack(model, x, y, eps, 10, seed=0, square_queries=queries)
        mid = time.perf_counter()
        ref_attack = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        for member in ref_attack._autoattack.attacks:
            if isinstance(member, torchattacks.Square):
                member.n_queries = queries
        ref = ref_attack(x, y)
        end = time.perf_counter()
        sq = square(model, x, y, eps, 0, queries)
        sq_ref = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0)(x, y)
        print(
            f"ε={eps}: AutoAttack regnet {100 * accuracy(model, ours, y):.1f} % ({mid - start:.0f} s), torchattacks "
            f"{100 * accuracy(model, ref, y):.1f} % ({end - mid:.0f} s), identical: {torch.equal(ours, ref)}; Square "
            f"regnet {100 * accuracy(model, sq, y):.1f} %, torchattacks {100 * accuracy(model, sq_ref, y):.1f} %, "
            f"identical: {torch.equal(sq, sq_ref)}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
