"""osdface-mini 2 (issue 21): seconds per stage-2 step of ``stage2_mini256`` against ``stage2_mini``, measured
side by side, so that a busy machine still gives the ratio (the 128-px figure on an idle CPU is known:
README, "The bundled mini model": ~21 faces/s, 0.76 s a step of 16).

Per config, alternating: ``model``: one ``stage2.optimizer_step`` (G step, no GAN) on a fixed batch of
random faces, bf16 autocast as in training; ``data``: building one batch of 16 samples in the main process
(read, degrade, masks) from ``--faces`` (a folder of aligned faces at the config's size, or any faces: they
are resized). The first round is a warm-up. Prints one JSON line per config.

    PYTHONPATH=src python3 benchmarks/bench_mini2_step.py --faces128 runs/mini2/utk_train --faces256 runs/mini2/utk_train
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch


def _vre(folder: Path, config: str) -> Path:
    from osdface.models.vre import VisualRepresentationEmbedder
    from osdface.training.stage1_config import load_stage1_config

    m = load_stage1_config(config).model
    torch.manual_seed(0)
    VisualRepresentationEmbedder(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
                                 attn_resolutions=m.attn_resolutions, resolution=m.resolution, z_channels=m.z_channels,
                                 num_codes=m.num_codes, embed_dim=m.embed_dim, num_tokens=m.num_tokens).save_pretrained(folder)
    return folder


def _stream(batch):
    while True:
        yield 0, 0, batch


def main(args) -> None:
    from osdface.training import stage2
    from osdface.training.stage2_config import load_stage2_config
    from osdface.training.stage2_data import build_datasets

    work = Path(tempfile.mkdtemp())
    runs = {}
    for name, s1, faces in (("stage2_mini", "stage1_mini", args.faces128), ("stage2_mini256", "stage1_mini256", args.faces256)):
        cfg = load_stage2_config(name, [f"model.vre={_vre(work / name, s1)}", f"data.roots=[{faces}]",
                                        f"train.output_dir={work / name / 'run'}", "data.num_workers=0"])
        s = stage2.setup(cfg)
        train_set, _ = build_datasets(cfg)
        size, b = cfg.model.sample_size, cfg.train.batch_size
        g = torch.Generator().manual_seed(0)
        batch = {"lq": torch.rand(b, 3, size, size, generator=g) * 2 - 1, "hq": torch.rand(b, 3, size, size, generator=g) * 2 - 1}
        if cfg.data.valid_mask:
            batch["mask"] = torch.ones(b, 1, size, size)
        runs[name] = {"s": s, "set": train_set, "batch": batch, "model": [], "data": []}
    for round_ in range(args.rounds + 1):
        for name, r in runs.items():
            t0 = time.perf_counter()
            stage2.optimizer_step(r["s"], round_, _stream(r["batch"]))
            t1 = time.perf_counter()
            [r["set"][(round_ * 16 + i) % len(r["set"])] for i in range(16)]
            t2 = time.perf_counter()
            if round_:  # round 0: warm-up
                r["model"].append(t1 - t0), r["data"].append(t2 - t1)
    for name, r in runs.items():
        med = lambda v: sorted(v)[len(v) // 2]
        print(json.dumps({"config": name, "model_s_per_step": round(med(r["model"]), 3),
                          "data_s_per_batch_one_process": round(med(r["data"]), 3), "rounds": args.rounds}))
    print(json.dumps({"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces128", required=True)
    parser.add_argument("--faces256", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    main(parser.parse_args())
