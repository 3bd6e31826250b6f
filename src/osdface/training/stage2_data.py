"""Stage 2's data: the training and held-out face sets, and validation on the held-out faces.

``validate`` restores the first ``data.val_count`` held-out faces with the generator being trained and
returns PSNR / SSIM / MSE plus the LQ | restored | HQ rows of the sample grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import OSDFaceError
from ..pipeline import OSDFacePipeline
from .stage2_config import Stage2Config


def build_datasets(cfg: Stage2Config):
    """(training set, held-out set or None), faces at ``model.sample_size``."""
    from ..data import HQFolderDataset, PairedFolderDataset

    d, size = cfg.data, cfg.model.sample_size
    if not d.roots:
        raise OSDFaceError("set data.roots: folders of aligned HQ faces (e.g. data.roots=[data/ffhq512])")
    train_set = HQFolderDataset(list(d.roots), size=size, degradation=d.degradation, hflip=d.hflip, seed=d.seed,
                                valid_mask=d.valid_mask)
    val_set = None
    if d.val_lq:
        val_set = PairedFolderDataset(d.val_lq, d.val_hq, size=size)
    elif d.val_roots:
        val_set = HQFolderDataset(list(d.val_roots), size=size, degradation=d.degradation, hflip=False, seed=d.val_seed)
    if val_set is not None:
        val_set.set_epoch(0)
    return train_set, val_set


@torch.no_grad()
def validate(pipe: OSDFacePipeline, val_set, cfg: Stage2Config, accelerator) -> tuple[dict, list[torch.Tensor]]:
    """Restore the first ``data.val_count`` held-out faces; PSNR / SSIM (RGB, 8-bit scale) and the
    LQ | restored | HQ rows of the first ``data.val_grid``."""
    from ..metrics.full_reference import compute_psnr, compute_ssim

    n = min(cfg.data.val_count, len(val_set))
    lqs, outs, hqs = [], [], []
    modules = (pipe.unet, pipe.adapter)
    modes = [mod.training for mod in modules]
    for mod in modules:
        mod.eval()
    try:
        for start in range(0, n, cfg.train.batch_size):
            items = [val_set[i] for i in range(start, min(n, start + cfg.train.batch_size))]
            lq = torch.stack([it["lq"] for it in items])
            with accelerator.autocast():
                restored = pipe.generate(lq.to(accelerator.device))["image"]
            lqs.append(lq), outs.append(restored.float().cpu()), hqs.append(torch.stack([it["hq"] for it in items]))
    finally:
        for mod, mode in zip(modules, modes):
            mod.train(mode)
    lq, restored, hq = torch.cat(lqs), torch.cat(outs), torch.cat(hqs)
    metrics = {"val/psnr": float(compute_psnr(restored, hq).mean()), "val/ssim": float(compute_ssim(restored, hq).mean()),
               "val/mse": float(F.mse_loss(restored, hq))}
    k = min(cfg.data.val_grid, n)
    return metrics, [lq[:k], restored[:k], hq[:k]]
