"""osdface-mini 2 groundwork (issue 21): the 256-px configs build and train a step, the outside-the-photo
share that `osdface align` records (against geometry worked out by hand), the masked losses, and the
identity-held-out split of ../shared/data/hires."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from osdface.data import HQFolderDataset
from osdface.face.align_folder import align_folder, align_photo
from osdface.face.alignment import template_landmarks
from osdface.face.detection import Detection
from osdface.models.vre import VisualRepresentationEmbedder
from osdface.training import stage2
from osdface.training.mini2_data import person_of, shared_people, split_hires
from osdface.training.stage1_config import load_stage1_config
from osdface.training.stage2_config import load_stage2_config
from osdface.training.stage2_step import ReconstructionLosses

SIZE = 256
HIRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hires"


class PlacedFace:
    """A detector that finds one face whose landmarks sit on the FFHQ template of a ``side``-px crop whose
    top-left corner is at image pixel ``corner`` (scale 1, no rotation): crop (x, y) = image (x, y) − corner."""

    def __init__(self, corner, side=SIZE):
        self.points = template_landmarks(side) + np.asarray(corner, dtype=np.float64)  # (5, 2)

    def detect(self, image):
        (x0, y0), (x1, y1) = self.points.min(0) - 20, self.points.max(0) + 20
        return [Detection(np.array([x0, y0, x1, y1]), 0.99, self.points)]


def _photo(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- borders


@pytest.mark.parametrize("corner, h, w, expected", [
    ((-64, 10), 300, 300, 64 / 256),                         # 64 columns left of the photo
    ((-32, -48), 300, 300, 1 - (224 / 256) * (208 / 256)),   # off the left and the top
    ((100, 60), 300, 300, 1 - (200 / 256) * (240 / 256)),    # past the right (x ≥ 300) and the bottom (y ≥ 300)
    ((20, 20), 300, 300, 0.0),                                # whole
])
def test_recorded_outside_share_matches_the_geometry(corner, h, w, expected):
    (crop, record), = align_photo(_photo(h, w), PlacedFace(corner), SIZE)
    assert crop.shape == (SIZE, SIZE, 3) and record["image_hw"] == [h, w]
    assert record["outside"] == pytest.approx(expected, abs=2e-3)


def test_dataset_mask_is_zero_exactly_where_the_crop_left_the_photo(tmp_path):
    from PIL import Image

    Image.fromarray(_photo(300, 300, seed=1)).save(tmp_path / "edge.png")
    align_folder([tmp_path / "edge.png"], tmp_path / "faces", size=SIZE, detector=PlacedFace((-64, 10)), progress=False)
    (record,) = json.loads((tmp_path / "faces" / "manifest.json").read_text())["faces"]
    assert record["outside"] == pytest.approx(0.25, abs=2e-3)
    data = HQFolderDataset(tmp_path / "faces", size=SIZE, degradation="mini", hflip=True, valid_mask=True)
    flips = set()
    for epoch in range(8):  # both flips turn up
        data.set_epoch(epoch)
        sample = data[0]
        flips.add(json.loads(sample["params"])["hflip"])
        mask = sample["mask"][0].numpy()  # (256, 256)
        cols = mask.mean(0)
        outside = slice(SIZE - 64, SIZE) if json.loads(sample["params"])["hflip"] else slice(0, 64)
        inside = np.ones(SIZE, bool)
        inside[outside] = False
        assert sample["mask"].shape == (1, SIZE, SIZE) and cols[outside].max() < 0.02 and cols[inside].min() > 0.98
        assert mask.mean() == pytest.approx(1 - record["outside"], abs=2e-3)
    assert flips == {True, False}
    # a folder without align records: whole faces; and no mask unless asked
    assert torch.equal(HQFolderDataset(tmp_path, size=SIZE, degradation=None, valid_mask=True)[0]["mask"],
                       torch.ones(1, SIZE, SIZE))
    assert "mask" not in HQFolderDataset(tmp_path / "faces", size=SIZE, degradation=None)[0]


def test_masked_losses_ignore_the_reflected_pixels():
    cfg = load_stage2_config("stage2_mini256")
    losses = ReconstructionLosses(cfg)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.ones(2, 1, 32, 32)
    mask[..., :8] = 0  # the left 8 columns came from outside the photo
    pred = target.clone()
    pred[..., :8] = torch.rand(2, 3, 32, 8)  # wrong only there
    terms = losses(pred, target, mask)
    assert float(terms["mse"]) == 0 and float(terms["edge"]) == 0
    whole = losses(pred, target)
    assert float(whole["mse"]) == pytest.approx(float(F.mse_loss(pred, target))) and float(whole["edge"]) > 0
    pred = target + 0.5 * mask  # off by 0.5 inside: the masked MSE is the mean over the inside pixels
    assert float(losses(pred, target, mask)["mse"]) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- configs


def test_stage1_mini256_vre_keeps_minis_token_sizes():
    m = load_stage1_config("stage1_mini256").model
    assert m.resolution == 128  # a 256-px face is shrunk to 128 by the VRE itself
    torch.manual_seed(0)
    vre = VisualRepresentationEmbedder(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
                                       attn_resolutions=m.attn_resolutions, resolution=m.resolution, z_channels=m.z_channels,
                                       num_codes=m.num_codes, embed_dim=m.embed_dim, num_tokens=m.num_tokens)
    assert vre(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 32, 64)  # what stage2_mini256's adapter takes


def test_stage2_mini256_config_trains_a_step_with_masks(tmp_path):
    from PIL import Image

    for k, corner in enumerate([(-64, 10), (20, -40)]):
        Image.fromarray(_photo(300, 300, seed=k)).save(tmp_path / f"p{k}.png")
        align_folder([tmp_path / f"p{k}.png"], tmp_path / "faces", size=SIZE, detector=PlacedFace(corner), progress=False)
    m = load_stage1_config("stage1_mini256").model
    torch.manual_seed(0)
    VisualRepresentationEmbedder(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=1, attn_resolutions=m.attn_resolutions,
                                 resolution=m.resolution, z_channels=m.z_channels, num_codes=m.num_codes,
                                 embed_dim=m.embed_dim, num_tokens=m.num_tokens).save_pretrained(tmp_path / "vre")
    cfg = load_stage2_config("stage2_mini256", [
        f"model.vre={tmp_path / 'vre'}", f"data.roots=[{tmp_path / 'faces'}]", f"data.val_roots=[{tmp_path / 'faces'}]",
        "data.num_workers=0", "train.batch_size=2", "train.max_steps=1", "train.validate_every=1", "data.val_count=2",
        "data.val_grid=2", f"train.output_dir={tmp_path / 'run'}", "train.mixed_precision=no", "train.export=false",
        "model.unet_config.block_out_channels=[32,32,32]", "model.unet_config.norm_num_groups=8",
        "model.unet_config.layers_per_block=1"])
    assert cfg.model.sample_size == SIZE and cfg.model.vae_config["factor"] == 8
    assert cfg.losses.edge > 0 and cfg.losses.gan == 0 and cfg.data.valid_mask
    pipe, disc = stage2.build_models(cfg)
    z = pipe.vae.encode(torch.zeros(1, 3, SIZE, SIZE)).latent_dist.mode()
    assert disc is None and z.shape == (1, 192, 32, 32) and pipe.unet.config.in_channels == 192
    result = stage2.train(cfg)
    assert result.step == 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["train/edge"] > 0 and "val/psnr" in logged[-1]


# ----------------------------------------------------------------------------- the split


def _touch(root: Path, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_hires_split_holds_people_out(tmp_path):
    _touch(tmp_path, ["ffhq512/00010.jpg", "ffhq512/00249.jpg", "ffhq512/00250.jpg", "ffhq512/00299.jpg",
                      "portraits/london_neutral/089_03.jpg", "portraits/london_smiling/089_08.jpg",
                      "portraits/london_neutral/090_03.jpg", "portraits/london_smiling/090_08.jpg",
                      "portraits/london_neutral/102_03.jpg", "portraits/london_smiling/103_08.jpg",
                      "portraits/canada/003f.jpg", "portraits/3dsk/female_agata.jpg"])
    split = split_hires(tmp_path)
    assert split["val"] == ["ffhq512/00250.jpg", "ffhq512/00299.jpg", "portraits/london_neutral/090_03.jpg",
                            "portraits/london_neutral/102_03.jpg", "portraits/london_smiling/090_08.jpg"]
    assert len(split["train"]) == 7 and not shared_people(split["train"], split["val"])
    assert person_of("portraits/london_neutral/090_03.jpg") == person_of("portraits/london_smiling/090_08.jpg")
    assert shared_people(["portraits/london_neutral/090_03.jpg"], ["portraits/london_smiling/090_08.jpg"])


@pytest.mark.skipif(not HIRES.is_dir(), reason="../shared/data/hires is not here")
def test_the_shared_hires_split_has_no_person_on_both_sides():
    split = split_hires(HIRES)
    assert not shared_people(split["train"], split["val"])
    assert len(split["train"]) + len(split["val"]) == 644
    assert {f"ffhq512/{k:05d}.jpg" for k in range(250, 300)} <= set(split["val"])
