"""Training data shared by both training stages: degradation model, datasets, synthetic test sets.

- ``degradations``: ``DegradationConfig`` / ``StageConfig``, presets (``gfpgan``, ``daefr``,
  ``codeformer``, ``difface``, ``dual``, ``dual_chain``), ``degrade(hq, cfg, rng)``.
- ``datasets``: ``HQFolderDataset`` (on-the-fly degradation), ``PairedFolderDataset``.
- ``make_testset``: ``degrade_folder`` writes an LQ folder + ``manifest.json``.
- ``kernels``, ``color``, ``geometry``: the building blocks.
"""

from .datasets import DatasetError, HQFolderDataset, PairedFolderDataset, scan_images
from .degradations import (
    PRESETS,
    DegradationConfig,
    StageConfig,
    as_degradation_config,
    degrade,
    get_preset,
    preset_names,
    rng_for,
    target_for,
)
from .make_testset import DegradeFolderSummary, degrade_folder

__all__ = [
    "PRESETS",
    "DatasetError",
    "DegradationConfig",
    "DegradeFolderSummary",
    "HQFolderDataset",
    "PairedFolderDataset",
    "StageConfig",
    "as_degradation_config",
    "degrade",
    "degrade_folder",
    "get_preset",
    "preset_names",
    "rng_for",
    "scan_images",
    "target_for",
]
