"""Evaluation metrics for face restoration (paper Tables 1–3, SPEC §7).

Weight-free metrics are implemented here (PSNR, SSIM, NIQE), and so are Deg., LMD and FID, which load
their networks from local weight files; LPIPS, DISTS, MUSIQ, CLIPIQA and MANIQA (and a FID cross-check) go
through the optional pyiqa backend. ``METRICS`` (a plain dict of specs) says which is which;
``metric_status(name)`` says whether a metric can run on this machine; ``evaluate_folders`` runs a set of
them over folders and writes the paper's tables.

Modules, one concept each:
    registry        METRICS, MetricSpec, metric_status, pyiqa_status (imports nothing heavy)
    image_input     accepted image forms → float64 [0, 255] tensors; luma definitions
    full_reference  compute_psnr, compute_ssim
    niqe            compute_niqe (pyiqa-calibrated), load_niqe_params
    pairing         pair_by_stem → PairingResult
    table           per-image CSV, means JSON, Markdown tables in the paper's layouts
    identity        Deg. (ArcFace embedding angle, VQFR's preprocessing); ID (dlib) (descriptor distance)
    landmarks       LMD (98-point AWing FAN landmark distance)
    fid             FID (Inception features, reference statistics, Fréchet distance)
    evaluate        evaluate_folders → Evaluation: pairs, decodes and runs the metrics in batches
    results         MethodResult, Evaluation (CSV / JSON / Markdown)
    resources       models, FID reference and caches shared by one evaluate_folders call
    runners         one runner per kind of metric (builtin, Deg., ID (dlib), LMD, FID, pyiqa)
    speed           benchmark_pipeline → SpeedResult (paper Table 3's columns)
"""

from .registry import METRICS, MetricSpec, get_spec, is_pyiqa_available, metric_status, pyiqa_status

_LAZY = {
    "compute_psnr": "osdface.metrics.full_reference",
    "compute_ssim": "osdface.metrics.full_reference",
    "compute_niqe": "osdface.metrics.niqe",
    "load_niqe_params": "osdface.metrics.niqe",
    "pair_by_stem": "osdface.metrics.pairing",
    "PairingResult": "osdface.metrics.pairing",
    "compute_deg": "osdface.metrics.identity",
    "compute_dlib_distance": "osdface.metrics.identity",
    "compute_lmd": "osdface.metrics.landmarks",
    "compute_fid": "osdface.metrics.fid",
    "frechet_distance": "osdface.metrics.fid",
    "load_fid_stats": "osdface.metrics.fid",
    "evaluate_folders": "osdface.metrics.evaluate",
    "Evaluation": "osdface.metrics.evaluate",
    "benchmark_pipeline": "osdface.metrics.speed",
}

__all__ = [
    "METRICS",
    "Evaluation",
    "MetricSpec",
    "PairingResult",
    "benchmark_pipeline",
    "compute_deg",
    "compute_dlib_distance",
    "compute_fid",
    "compute_lmd",
    "compute_niqe",
    "compute_psnr",
    "compute_ssim",
    "evaluate_folders",
    "frechet_distance",
    "get_spec",
    "is_pyiqa_available",
    "load_fid_stats",
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
