"""Whole-photo overhead: detection + alignment + paste-back versus restoration time.

For synthetic photos with 1, 4 and 16 faces (copies of scikit-image's astronaut face):

- overhead = ``FaceRestorer`` with an identity ``restore_fn`` (detect, align, colour-match, paste);
- restoration = the model on the same crops: a tiny random model end to end, and the full-size
  OSDFace architecture (random weights) timed per face on one batch and scaled by the face count.

Goal (issue 3): overhead under 5 % of restoration time for the full-size model.

Usage:
    python benchmarks/bench_photos.py                 # tiny + full-size (~5 min on 2 cores)
    python benchmarks/bench_photos.py --skip-full
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import skimage.data
import torch

from osdface.face import FaceRestorer, create_detector
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5, FacePlacement, compose_group_photo


def make_photo(n_faces: int, face_px: int = 180, seed: int = 0) -> np.ndarray:
    cols = math.ceil(math.sqrt(n_faces))
    rows = math.ceil(n_faces / cols)
    gap = int(face_px * 1.25)
    placements = [FacePlacement(gap * (i % cols) + gap / 2, gap * (i // cols) + gap / 2, face_px, (-20 + 13 * i) % 40 - 20)
                  for i in range(n_faces)]
    photo, _ = compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, placements,
                                   gap * rows, gap * cols, seed=seed)
    return photo


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def tiny_pipeline(size: int = 64):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from osdface.models.adapter import PromptAdapter
    from osdface.models.vre import VisualRepresentationEmbedder
    from osdface.pipeline import OSDFacePipeline

    torch.manual_seed(0)
    vre = VisualRepresentationEmbedder(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(16,),
                                       resolution=64, z_channels=16, num_codes=16, embed_dim=16, num_tokens=8)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=(2, 4), use_linear_projection=True)
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4)
    return OSDFacePipeline(vre, PromptAdapter(16, 8, 32), vae, unet, sample_size=size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    detector = create_detector("mtcnn", max_side=2048)
    photos = {n: make_photo(n) for n in args.faces}

    def overhead(n: int, face_size: int) -> float:
        restorer = FaceRestorer(lambda crops: crops, detector=detector, face_size=face_size)
        found = len(restorer(photos[n]).faces)
        assert found == n, f"{found} of {n} faces found"
        return best_of(lambda: restorer(photos[n]), args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; photos {', '.join(f'{n} faces {photos[n].shape[1]}×{photos[n].shape[0]}' for n in args.faces)}")
    from osdface.photos import pipeline_restore_fn

    tiny = tiny_pipeline()
    print("\n[tiny model, 64 px faces] end to end")
    for n in args.faces:
        over = overhead(n, 64)
        restorer = FaceRestorer(pipeline_restore_fn(tiny, batch_size=16), detector=detector, face_size=64)
        total = best_of(lambda: restorer(photos[n]), args.repeats)
        print(f"  {n:2d} faces: total {total * 1e3:7.0f} ms, overhead {over * 1e3:6.0f} ms "
              f"({over / n * 1e3:5.1f} ms/face), restoration {max(total - over, 1e-9) * 1e3:7.0f} ms")

    if args.skip_full:
        return
    from bench_inference import build_pipeline

    pipe = build_pipeline("channels_last")
    restore = pipeline_restore_fn(pipe, batch_size=4)
    crops = FaceRestorer(lambda c: c, detector=detector, face_size=512)(photos[max(args.faces)]).faces
    batch = [f.cropped for f in crops[:4]]
    restore(batch[:1])  # warm-up
    per_face = best_of(lambda: restore(batch), 1) / len(batch)
    print(f"\n[full-size model, 512 px faces] restoration {per_face:.1f} s/face (batch {len(batch)})")
    for n in args.faces:
        over = overhead(n, 512)
        share = over / (n * per_face) * 100
        print(f"  {n:2d} faces: overhead {over * 1e3:6.0f} ms vs restoration {n * per_face:7.1f} s → "
              f"{share:.2f} % (goal < 5 %: {'OK' if share < 5 else 'MISSED'})")


if __name__ == "__main__":
    main()
