"""callbacks.channels_last.enabled=true trains the model in NHWC memory format, to the same numbers."""

from __future__ import annotations

import pytest
import torch

from regnet.train import train
from tests.conftest import compose_cfg, tiny


def _conv_weights(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    return [v for k, v in state.items() if k.startswith("model.") and v.dim() == 4]


def test_channels_last_weights_and_same_results(data_root, tmp_path):
    runs = {}
    for enabled in (False, True):
        cfg = compose_cfg(
            [f"data.root={data_root}", f"callbacks.channels_last.enabled={enabled}", *tiny()], return_hydra_config=True
        )
        runs[enabled] = train(cfg, tmp_path / str(enabled))
        convs = _conv_weights(tmp_path / str(enabled))
        wide = [w for w in convs if w.shape[1] > 1]  # (a one-channel weight is contiguous in both formats)
        assert wide and all(w.is_contiguous(memory_format=torch.channels_last) == enabled for w in wide)
        assert all(w.is_contiguous() != enabled for w in wide)
    assert runs[True]["global_step"] == runs[False]["global_step"] == 3
    assert runs[True]["test_loss"] == pytest.approx(runs[False]["test_loss"], rel=1e-4)
