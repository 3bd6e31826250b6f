"""Evaluation metrics for face restoration (paper Tables 1–3, SPEC §7).

Weight-free metrics are implemented here (PSNR, SSIM, NIQE); the learned ones (LPIPS, DISTS, MUSIQ,
CLIPIQA, MANIQA, FID) go through the optional pyiqa backend. ``METRICS`` (a plain dict of specs) says
which is which; ``metric_status(name)`` says whether a metric can run on this machine.

Modules, one concept each:
    registry        METRICS, MetricSpec, metric_status, pyiqa_status (imports nothing heavy)
    image_input     accepted image forms → float64 [0, 255] tensors; luma definitions
    full_reference  compute_psnr, compute_ssim
    niqe            compute_niqe (pyiqa-calibrated), load_niqe_params
    pairing         pair_by_stem → PairingResult
    table           per-image CSV, means JSON, Markdown tables in the paper's layouts
"""

from .registry import METRICS, MetricSpec, get_spec, is_pyiqa_available, metric_status, pyiqa_status

_LAZY = {
    "compute_psnr": "osdface.metrics.full_reference",
    "compute_ssim": "osdface.metrics.full_reference",
    "compute_niqe": "osdface.metrics.niqe",
    "load_niqe_params": "osdface.metrics.niqe",
    "pair_by_stem": "osdface.metrics.pairing",
    "PairingResult": "osdface.metrics.pairing",
}

__all__ = [
    "METRICS",
    "MetricSpec",
    "PairingResult",
    "compute_niqe",
    "compute_psnr",
    "compute_ssim",
    "get_spec",
    "is_pyiqa_available",
    "load_niqe_params",
    "metric_status",
    "pair_by_stem",
    "pyiqa_status",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'osdface.metrics' has no attribute {name!r}")
