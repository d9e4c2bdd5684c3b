"""Where analysis runs, and at which float32 precision.

``default_device()``: a CUDA GPU when there is one (decision planes are 10⁷ forward passes per model), else the CPU.

``full_fp32()``: analysis numbers must not depend on the device. cuDNN convolutions default to TF32 on Ampere and
later GPUs (10-bit mantissa, ~1e-3 relative error), and matmuls may have been set to it
(``torch.set_float32_matmul_precision("high")``). That error moves labels wherever two logits are within ~1e-3 of
each other: exactly the boundary pixels whose total variation the decision planes measure. Inside ``full_fp32``
both run in IEEE float32; on leaving, the previous settings come back. Usable as ``with full_fp32():`` or as a
decorator ``@full_fp32()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def full_fp32() -> Iterator[None]:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch ≥ 2.9: per-backend precision settings
        saved = conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
        conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
    else:  # older torch: the allow_tf32 switches
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
