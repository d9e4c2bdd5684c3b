"""The results notebooks run top to bottom on a tiny sweep (a cell error fails the test), show their figures and
share the cache of ``regnet.analyze``."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = ["hoffman2019_mnist_results.ipynb", "cifar100_resnet18_results.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_a_tiny_sweep(name, tiny_sweep, tmp_path, monkeypatch):
    for key, value in {"REGNET_SWEEP": str(tiny_sweep), "REGNET_CACHE": str(tmp_path / "cache"),
                       "REGNET_PLANES": "1", "REGNET_RESOLUTION": "8",
                       "REGNET_ZOOMS": "0.1", "REGNET_EPS": "0,0.1", "REGNET_N_TEST": "16", "REGNET_PGD_STEPS": "1",
                       "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    path = REPO / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)  # fmt: skip
    assert "| lenet | mnist | l2 |" in text  # the accuracy table was rebuilt
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs >= 2 + 3, pngs  # example planes of both variants and the three robustness curves, as images
    # its planes and attacks went into the cache regnet.analyze keeps, so that the one reads what the other computed
    assert {p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt")} == {"tv", "robustness"}
