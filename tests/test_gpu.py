"""Every GPU path run for real (``pytest -m gpu``; skipped without CUDA): training with each regularizer,
ResNet-18 in bf16 + channels-last with augmentation, device-side batching and augmentation against the CPU,
resuming a SIGKILLed run, the GPU-packing sweep launcher, DDP, the stacked launcher, and analysis on CUDA.

``benchmarks/gpu_check.sh`` runs these with the benchmarks; tiny synthetic data in the real on-disk formats.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pandas as pd
import pytest
import torch

from regnet.augment import make_generator
from regnet.augment.crop import RandomCrop
from regnet.augment.erasing import sample_erasing
from regnet.augment.kernels import affine_batch, crop_batch, crop_resize_rotate_theta, erase_batch, hflip_batch
from regnet.augment.resized_crop_rotate import sample_resized_crop_rotate
from regnet.build import build
from regnet.data.batches import TensorBatches
from regnet.regularizers.base import weight_matrices
from regnet.train import train
from tests.conftest import CONF, REPO, compose_cfg, tiny, train_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GPU = ["trainer=gpu", "trainer.accelerator=gpu"]  # cudnn autotuning, not deterministic (after tiny()'s cpu: wins)
PENALTY = {"jacobian": "train/jacobian", "soft_svb": "train/soft_svb", "label_smoothing": "train/label_smoothing"}


def _cfg(data_root, *overrides, data=None):
    return compose_cfg([f"data.root={data_root}", *tiny(*overrides, data=data), *GPU], return_hydra_config=True)


def _state(run_dir) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def _initial_weights(cfg) -> dict[str, torch.Tensor]:
    """The weights the run started from: seeded and built as ``regnet.train`` does."""
    L.seed_everything(cfg.seed, workers=True)
    module, _, _ = build(cfg)
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


@pytest.mark.parametrize("reg", ["none", "l2", "jacobian", "svb", "soft_svb", "label_smoothing"])
def test_each_regularizer_trains_on_cuda(reg, data_root, tmp_path):
    extra = ["reg.svb.every=2", "trainer.limit_train_batches=4"] if reg == "svb" else []
    cfg = _cfg(data_root, f"reg={reg}", *extra)
    before = _initial_weights(cfg)
    result = train(cfg, tmp_path)
    assert result["status"] == "completed" and result["device"].startswith("cuda")
    assert math.isfinite(result["metrics"]["train/loss"]) and math.isfinite(result["test_loss"])
    after = _state(tmp_path)
    changed = [k for k, w in before.items() if w.is_floating_point() and not torch.equal(w, after[k])]
    assert changed, "training on the GPU left every weight as it was"
    if reg in PENALTY:
        assert result["metrics"][PENALTY[reg]] > 0  # the penalty was computed and logged
    if reg == "l2":
        assert result["config"]["reg"]["l2"]["weight_decay"] > 0
    if reg == "svb":  # projected at step 4, the last one: every singular value within [1/(1+ε), 1+ε]
        eps = cfg.reg.svb.eps
        model = build(cfg)[0].model
        model.load_state_dict(after)
        for name, _, w in weight_matrices(model):
            s = torch.linalg.svdvals(w.double())
            assert s.min() >= 1 / (1 + eps) - 1e-5 and s.max() <= 1 + eps + 1e-5, name


def test_resnet18_bf16_channels_last_with_crop_flip(data_root, tmp_path):
    cfg = _cfg(
        data_root,
        "model=resnet18",
        "trainer.precision=bf16-mixed",
        "callbacks.channels_last.enabled=true",
        "augment=cifar_crop_flip",
        data="cifar100",
    )
    result = train(cfg, tmp_path)
    assert result["status"] == "completed" and result["global_step"] == 3
    assert math.isfinite(result["metrics"]["train/loss"]) and math.isfinite(result["test_loss"])
    assert result["config"]["trainer"]["precision"] == "bf16-mixed"
    convs = [w for w in _state(tmp_path).values() if w.dim() == 4 and w.shape[1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(w.dtype == torch.float32 for w in convs)  # autocast: master weights stay fp32


def test_gpu_batches_and_augmentation_equal_the_cpu_path():
    """For fixed parameters (drawn once, on the CPU) the device-side gather, normalisation and every augmentation
    kernel give the CPU's numbers; a CUDA generator's draws are in range and reproducible."""
    cuda = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 100, (300,), generator=g)
    order = torch.randperm(300, generator=g)
    on_gpu = TensorBatches(images.to(cuda), labels.to(cuda), 64, shuffle=True, seed=3)
    order_gpu = on_gpu._order()
    for (xg, yg), i in zip(on_gpu, range(len(on_gpu))):
        idx = order_gpu[i * 64 : (i + 1) * 64].cpu()
        assert torch.equal(xg.cpu(), images[idx]) and torch.equal(yg.cpu(), labels[idx])
    assert sorted(order_gpu.tolist()) == list(range(300))  # an epoch is a permutation on the device too
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, -1, 1, 1), torch.tensor([0.25, 0.2, 0.3]).view(1, -1, 1, 1)
    x = (images[order[:100]].float() / 255 - mean) / std
    xg = (images[order[:100]].to(cuda).float() / 255 - mean.to(cuda)) / std.to(cuda)
    torch.testing.assert_close(xg.cpu(), x, rtol=0, atol=1e-6)

    crop = {
        "top": torch.randint(0, 9, (100,), generator=g),
        "left": torch.randint(0, 9, (100,), generator=g),
        "flip": torch.rand(100, generator=g) < 0.5,
    }
    erase = sample_erasing(100, 32, 32, g)
    affine = sample_resized_crop_rotate(100, g)
    theta = crop_resize_rotate_theta(affine["cx"], affine["cy"], affine["w"], affine["h"], affine["angle"])
    kernels = [
        lambda x, p: crop_batch(x, 4, p["top"], p["left"]),
        lambda x, p: hflip_batch(x, p["flip"]),
        lambda x, p: erase_batch(x, p["top"], p["left"], p["h"], p["w"], p["apply"]),
    ]
    for kernel, params in zip(kernels, [crop, crop, erase]):
        on_cuda = {k: v.to(cuda) for k, v in params.items()}
        assert torch.equal(kernel(xg, on_cuda).cpu(), kernel(x, params))
    torch.testing.assert_close(affine_batch(xg, theta.to(cuda)).cpu(), affine_batch(x, theta), rtol=0, atol=1e-4)

    # the same seed and step draw the same crops on the device, twice
    a, b = (RandomCrop(4)(xg, make_generator(cuda, seed=1, step=5)) for _ in range(2))
    assert torch.equal(a, b) and a.device.type == "cuda"


def _cli(args, data_root, timeout=300, env=None):
    return train_cli(args, data_root, timeout, env)


RESUME = [
    "trainer=gpu",
    "trainer.max_epochs=40",
    "data.batch_size=16",
    "data.eval_batch_size=64",
    "trainer.limit_test_batches=1",
    "callbacks.checkpoint_steps.every_n_train_steps=7",
    "reg=jacobian",
]


def test_sigkilled_run_resumes_on_the_gpu(data_root, tmp_path):
    """As tests/test_resume.py on the CPU; GPU kernels are not bitwise deterministic, so the losses are compared
    to a tolerance, the step counts and the learning curve's epochs exactly."""
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}

    def cmd(run_dir):
        return [sys.executable, "-m", "regnet.train", *RESUME, f"hydra.run.dir={run_dir}"]

    reference = tmp_path / "reference"
    out = subprocess.run(cmd(reference), cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (killed / "results.json").exists(), "the kill came too late to test resuming"
    out = subprocess.run(cmd(killed), cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from" in out.stdout + out.stderr
    want, got = (json.loads((d / "results.json").read_text()) for d in (reference, killed))
    assert got["global_step"] == want["global_step"] == 40 * 16
    assert 0 < got["resumed_from_step"] < 40 * 16 and got["device"].startswith("cuda")
    assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-2)
    epochs = [sorted(pd.read_csv(d / "metrics.csv")["epoch"].dropna().unique()) for d in (reference, killed)]
    assert epochs[0] == epochs[1] and len(epochs[0]) >= 40


def test_gpus_launcher_four_jobs_two_per_gpu(data_root, tmp_path):
    out = _cli(
        ["-m", "hydra/launcher=gpus", "jobs_per_gpu=2", "seed=0,1,2,3", f"hydra.sweep.dir={tmp_path}", *tiny(), *GPU],
        data_root,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/results.json"))]
    assert sorted(r["seed"] for r in results) == [0, 1, 2, 3]
    assert all(r["status"] == "completed" and r["device"].startswith("cuda") for r in results)
    losses = {round(r["test_loss"], 6) for r in results}
    assert len(losses) == 4  # four different seeds, four different runs


def test_ddp_on_one_gpu(data_root, tmp_path):
    out = _cli(
        [
            "trainer=ddp",
            "trainer.devices=1",
            "reg=[jacobian,svb]",
            "reg.svb.every=2",
            f"hydra.run.dir={tmp_path}",
            *tiny("trainer.max_epochs=2"),
            "trainer.accelerator=gpu",
        ],
        data_root,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["global_step"] == 6 and results["device"].startswith("cuda")
    assert results["config"]["trainer"]["strategy"] == "ddp" and results["metrics"]["train/jacobian"] > 0


def test_stacked_launcher_on_the_gpu(data_root, tmp_path):
    if not (CONF / "hydra" / "launcher" / "stacked.yaml").exists():
        pytest.skip("conf/hydra/launcher/stacked.yaml does not exist yet: no stacked launcher to run")
    out = _cli(["-m", "hydra/launcher=stacked", "seed=0,1,2", f"hydra.sweep.dir={tmp_path}", *tiny(), *GPU], data_root)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("**/results.json"))]
    assert sorted(r["seed"] for r in results) == [0, 1, 2]
    assert all(r["status"] == "completed" and r["device"].startswith("cuda") for r in results)
    assert all("stack" in json.dumps(r).lower() for r in results)  # each records that it was trained stacked


def test_analysis_on_cuda_gives_the_cpus_label_images(data_root, tmp_path):
    from regnet.analysis import PlaneSettings, find_runs, tv_records

    cfg = compose_cfg([f"data.root={data_root}", *tiny("trainer.limit_train_batches=8")], return_hydra_config=True)
    assert train(cfg, tmp_path / "run")["status"] == "completed"  # trained on the CPU: one checkpoint, both analyse it
    sweep = find_runs(tmp_path)
    settings = PlaneSettings(zooms=(0.1, 0.01), planes=3, resolution=48, seed=0, keep_images=3)
    cpu_records, cpu_images = tv_records(sweep, settings, device="cpu")
    gpu_records, gpu_images = tv_records(sweep, settings, device="cuda")
    (name, cpu), (_, gpu) = next(iter(cpu_images.items())), next(iter(gpu_images.items()))
    assert len(cpu) == len(gpu) == 6
    labels = set()
    for a, b in zip(cpu, gpu):
        differ = int((a["labels"].cpu() != b["labels"].cpu()).sum())
        assert differ == 0, f"{name} zoom {a['zoom']} plane {a['plane']}: {differ} of 48² labels differ"
        labels |= set(a["labels"].unique().tolist())
    assert len(labels) > 1  # the planes cross boundaries: equal images mean something
    pd.testing.assert_frame_equal(gpu_records, cpu_records)
