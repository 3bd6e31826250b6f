"""MTCNN face detector (P-Net → R-Net → O-Net cascade) in plain torch, offline.

The three networks load the weight files that facenet-pytorch ships inside its wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``, plain state dicts) with
``torch.load(weights_only=True)``. facenet-pytorch itself is never imported (it imports
torchvision); the folder is found with ``importlib.util.find_spec``, or passed explicitly.

Install the weights with ``pip install --no-deps facenet-pytorch==2.6.0`` (its metadata pins old
torch/numpy; the weight files do not care).

Cascade, as in Zhang et al. 2016: P-Net runs fully-convolutionally on an image pyramid and proposes
12×12 windows; R-Net (24×24) and O-Net (48×48) re-score and refine the surviving windows, batched
over all candidates; O-Net also gives the five landmarks. Non-maximum suppression is pure torch.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from .detection import Detection, check_rgb_image

WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


# ----------------------------------------------------------------------------- networks
# Layer names match the keys of the shipped state dicts.


class PNet(nn.Module):
    """Proposal net: (N, 3, H, W) normalised → face prob (N, H', W') and box offsets (N, 4, H', W')."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets (dx1, dy1, dx2, dy2) in box-size units

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _flatten_wh(x: torch.Tensor) -> torch.Tensor:
    """Flatten in (W, H, C) order: the dense layers were trained on transposed (Caffe) feature maps."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refine net: (N, 3, 24, 24) → face prob (N,) and box offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_wh(self.prelu3(self.conv3(x)))))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) → face prob (N,), box offsets (N, 4), landmarks (N, 10) = x0..4, y0..4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_wh(self.prelu4(self.conv4(x)))))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


# ----------------------------------------------------------------------------- weights


def default_weights_dir() -> Path:
    """The ``data/`` folder of the installed facenet-pytorch package, found without importing it; else
    ``$OSDFACE_HOME/mtcnn`` (where ``osdface download detector`` puts the same files)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        from ..models.stable_diffusion import weights_home

        downloaded = weights_home() / "mtcnn"
        if all((downloaded / f"{net}.pt").is_file() for net in ("pnet", "rnet", "onet")):
            return downloaded
        raise WeightsNotFoundError(
            f"MTCNN weights not found: facenet-pytorch is not installed ({INSTALL_HINT}), "
            "or pass weights=<folder with pnet.pt, rnet.pt, onet.pt>"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_mtcnn_nets(weights: str | Path | None = None) -> tuple[PNet, RNet, ONet]:
    """Build the three nets in eval mode and load ``weights`` (a folder with pnet/rnet/onet.pt)."""
    folder = Path(weights) if weights is not None else default_weights_dir()
    nets = (PNet(), RNet(), ONet())
    for net, key in zip(nets, WEIGHT_FILES):
        path = folder / WEIGHT_FILES[key]
        if not path.is_file():
            raise WeightsNotFoundError(
                f"MTCNN weights: {path} is missing (expected pnet.pt, rnet.pt, onet.pt)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
            raise WeightsFormatError(f"{path}: cannot load as a torch state dict ({err})") from None
        if not isinstance(state, dict):
            raise WeightsFormatError(f"{path}: expected a state dict, found {type(state).__name__}")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise WeightsFormatError(
                f"{path}: keys or shapes do not match {type(net).__name__} ({first})"
            ) from None
        net.eval().requires_grad_(False)
    return nets


# ----------------------------------------------------------------------------- box helpers


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Greedy non-maximum suppression; returns kept indices, best first.

    ``boxes`` (N, 4) xyxy float; overlap is intersection over union (``"union"``) or over the
    smaller box (``"min"``). Loops once per kept box, each step vectorised over the rest.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min'; got {mode!r}")
    order = torch.argsort(scores, descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = []
    while order.numel() > 0:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        ih = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = iw * ih
        if mode == "union":
            overlap = inter / (areas[i] + areas[rest] - inter).clamp(min=1e-9)
        else:
            overlap = inter / torch.minimum(areas[i], areas[rest]).clamp(min=1e-9)
        order = rest[overlap <= threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long)


def apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move box edges by ``offsets`` (N, 4) given in units of the box width/height."""
    wh = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
    return boxes + offsets * wh


def to_square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (side = the longer side)."""
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, 0:2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def crop_patches(image: np.ndarray, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut integer square windows (zero outside the image) and resize each to ``size``.

    ``image`` HWC float32 in [-1, 1]; returns ((N, 3, size, size) tensor, the integer boxes used).
    """
    h, w = image.shape[:2]
    ibox = boxes.round()
    ibox[:, 2:4] = torch.maximum(ibox[:, 2:4], ibox[:, 0:2] + 1)  # at least one pixel
    patches = np.empty((len(ibox), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(ibox.to(torch.int64).tolist()):
        window = np.full((y2 - y1, x2 - x1, 3), -1.0, dtype=np.float32)  # raw black, as the original
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            window[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        patches[k] = cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(patches).permute(0, 3, 1, 2), ibox


# ----------------------------------------------------------------------------- detector


class MTCNNDetector:
    """Offline MTCNN detector: ``detect(image HWC uint8 RGB) -> list[Detection]``, best score first.

    ``weights``: folder with pnet.pt / rnet.pt / onet.pt (default: the installed facenet-pytorch's).
    ``min_face_size``: smallest face side searched, in pixels of the (possibly shrunk) image.
    ``max_side``: if set, images whose longer side exceeds it are shrunk for detection (faster on
    large photos; results are mapped back to the full-size coordinates).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        min_face_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_side: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be >= 12 pixels (P-Net's window); got {min_face_size}")
        if not 0.1 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0.1, 1); got {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must hold 3 numbers (P-, R-, O-Net); got {thresholds}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = max_side
        self.device = torch.device(device)
        # channels-last weights match the HWC-born inputs (and run ~20 % faster on CPU)
        nets = (net.to(self.device, memory_format=torch.channels_last) for net in load_mtcnn_nets(weights))
        self.pnet, self.rnet, self.onet = nets

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """Scales at which P-Net's 12-px window covers faces from min_face_size up to the image size."""
        scale = 12.0 / self.min_face_size
        scales = []
        while min(height, width) * scale >= 12.0:
            scales.append(scale)
            scale *= self.scale_factor
        return scales

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[Detection]:
        check_rgb_image(image)
        shrink = 1.0
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            shrink = self.max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        normed = (image.astype(np.float32) - 127.5) * (1.0 / 128.0)

        boxes = self._propose(normed)
        if len(boxes):
            boxes = self._refine(normed, boxes)
        if not len(boxes):
            return []
        boxes, scores, landmarks = self._output(normed, boxes)
        # map back to full-resolution pixel coordinates (pixel centres at integers)
        boxes = (boxes + 0.5) / shrink - 0.5
        landmarks = (landmarks + 0.5) / shrink - 0.5
        return [
            Detection(box=b, score=s, landmarks5=p)
            for b, s, p in zip(boxes.double().numpy(), scores.tolist(), landmarks.double().numpy())
        ]

    def _propose(self, normed: np.ndarray) -> torch.Tensor:
        """Stage 1: P-Net over the pyramid → square candidate boxes (N, 4)."""
        h, w = normed.shape[:2]
        found = []
        for scale in self.pyramid_scales(h, w):
            size = (max(12, math.ceil(w * scale)), max(12, math.ceil(h * scale)))
            level = cv2.resize(normed, size, interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(level).permute(2, 0, 1)[None].to(self.device)
            prob, offsets = self.pnet(x)
            ys, xs = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if ys.numel() == 0:
                continue
            # each heat-map cell is a 12x12 window at stride 2 in the scaled image
            corner = torch.stack([xs, ys], dim=1).float() * 2.0 / scale
            cand = torch.cat([corner, corner + 12.0 / scale], dim=1).cpu()
            score = prob[0, ys, xs].cpu()
            cand = apply_offsets(cand, offsets[0, :, ys, xs].t().cpu())
            keep = nms(cand, score, 0.5)
            found.append(torch.cat([cand[keep], score[keep, None]], dim=1))
        if not found:
            return torch.zeros(0, 4)
        found = torch.cat(found)
        found = found[nms(found[:, :4], found[:, 4], 0.7)]
        return to_square(found[:, :4])

    def _refine(self, normed: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: R-Net re-scores all candidates in one batch."""
        patches, ibox = crop_patches(normed, boxes, 24)
        prob, offsets = self.rnet(patches.to(self.device))
        prob, offsets = prob.cpu(), offsets.cpu()
        ok = prob > self.thresholds[1]
        ibox, prob, offsets = ibox[ok], prob[ok], offsets[ok]
        keep = nms(ibox, prob, 0.7)
        return to_square(apply_offsets(ibox[keep], offsets[keep]))

    def _output(self, normed: np.ndarray, boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stage 3: O-Net → final boxes (N, 4), scores (N,), landmarks (N, 5, 2), best first."""
        patches, ibox = crop_patches(normed, boxes, 48)
        prob, offsets, points = (t.cpu() for t in self.onet(patches.to(self.device)))
        ok = prob > self.thresholds[2]
        ibox, prob, offsets, points = ibox[ok], prob[ok], offsets[ok], points[ok]
        side = ibox[:, 2:3] - ibox[:, 0:1]
        landmarks = torch.stack(
            [ibox[:, 0:1] + points[:, :5] * side, ibox[:, 1:2] + points[:, 5:] * side], dim=2
        )
        final = apply_offsets(ibox, offsets)
        keep = nms(final, prob, 0.7, mode="min")
        return final[keep], prob[keep], landmarks[keep]
