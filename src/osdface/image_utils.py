"""The one place for image conversion: files, PIL, numpy and torch.

Conventions used across the package:
- numpy images are HWC uint8 RGB (``np.ndarray``, values 0..255);
- image tensors are NCHW float in [-1, 1] unless the name says otherwise (``*_01`` means [0, 1]);
- BGR only exists at the cv2 boundary, inside the modules that call cv2.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError
from .files import atomic_write

ImageInput = Union[Image.Image, np.ndarray, torch.Tensor]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".gif")  # restored by osdface.video


# ----------------------------------------------------------------------------- files


# Whole photos are decoded in memory; beyond this many pixels a clear error is raised instead of
# running out of memory (a 100-megapixel RGB photo already needs ~1.2 GB as float tensors per copy).
MAX_PHOTO_PIXELS = 100_000_000


def _decode(path: Union[str, Path], convert, max_pixels: Optional[int] = None, max_side: Optional[int] = None):
    """Open, check, apply EXIF orientation, and ``convert`` a PIL image; every failure is one
    ImageReadError naming the file and the reason. ``max_side``: a larger image is reduced while it is
    decoded (``_reduce``), so that a huge file never lies in memory whole when its use is small."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise ImageReadError(f"{path}: not a regular file (a folder, pipe or device); give an image file")
        raise ImageReadError(f"{path}: no such file" + (" (a link to nothing)" if path.is_symlink() else ""))
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as caught:  # PIL/numpy warnings: re-issued naming the file
            warnings.simplefilter("always")
            with Image.open(path) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageReadError(
                        f"{path}: {im.width}×{im.height} = {im.width * im.height:,} pixels is over the limit of "
                        f"{max_pixels:,}; downscale it first"
                    )
                im = _reduce(im, max_side) if max_side is not None else im
                im = ImageOps.exif_transpose(im)
                im.load()
                image = convert(im)
        for w in {str(w.message): w for w in caught}.values():
            warnings.warn(f"{path}: {' '.join(str(w.message).split())}", UserWarning, stacklevel=3)
        return image
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: image too large to decode safely (decompression-bomb limit)") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated / corrupt data
        raise ImageReadError(f"{path}: cannot decode image ({err})") from None


def _reduce(im: Image.Image, max_side: int) -> Image.Image:
    """``im`` with its long side at most ``max_side`` (the other in proportion, at least 1 pixel), area
    averaged. A JPEG is decoded at 1/2, 1/4 or 1/8 scale by the decoder itself (``draft``), never whole;
    other formats are decoded whole once and reduced."""
    long_side = max(im.size)
    if long_side <= max_side:
        return im
    size = tuple(max(1, round(side * max_side / long_side)) for side in im.size)
    im.draft(None, size)  # JPEG: DCT scaling to the smallest scale still >= size; other formats: no-op
    im.load()
    if im.mode in ("1", "P", "PA"):  # resampling these would pick pixels, not average them
        im = im.convert("L" if im.mode == "1" else "RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    gap = None if im.mode.startswith("I;16") else 2.0  # (Image.reduce has no 16-bit modes)
    return im.resize(size, Image.Resampling.BOX, reducing_gap=gap) if im.size != size else im


def read_image(path: Union[str, Path], max_pixels: Optional[int] = MAX_PHOTO_PIXELS,
               max_side: Optional[int] = None) -> np.ndarray:
    """Read an image file as HWC uint8 RGB (EXIF orientation applied; alpha flattened on white).

    Raises ImageReadError (file name + reason) for missing, empty, truncated or non-image files and
    for images over ``max_pixels`` (checked before decoding). ``max_side``: an image whose long side is
    larger comes back reduced to it (area averaged; a JPEG is decoded reduced, see ``_reduce``).
    """
    return _decode(path, pil_to_numpy, max_pixels, max_side)


def read_photo(path: Union[str, Path], max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """Read a whole photo in its own layout, as uint8: HW for a grayscale file (L, 1-bit, 16-bit, float),
    HWC RGB, or RGBA when the file has transparency (gray with alpha too: ``read_photo_and_mode`` tells).

    EXIF orientation is applied; 16-bit and float images are scaled to 8 bits. Photos over
    ``max_pixels`` raise ImageReadError before decoding.
    """
    return _decode(path, pil_to_photo_array, max_pixels)


def read_photo_and_mode(path: Union[str, Path], max_pixels: int = MAX_PHOTO_PIXELS) -> tuple[np.ndarray, str]:
    """``read_photo`` and the file's PIL mode (e.g. "LA": written back as gray with alpha)."""
    return _decode(path, lambda im: (pil_to_photo_array(im), im.mode), max_pixels)


def check_upscaled(name, height: int, width: int, upscale: float, max_pixels: Optional[int] = None,
                   option: str = "--upscale") -> tuple[int, int]:
    """(height, width) of a ``height``×``width`` image upscaled by ``upscale``, rounded as the restorers
    round. ImageReadError naming ``name`` when nothing is left, or when the result is over ``max_pixels``
    (an output has the same pixel budget as an input); ``option`` is what the message asks to change."""
    max_pixels = MAX_PHOTO_PIXELS if max_pixels is None else max_pixels  # read now: tests lower the budget
    out_h, out_w = round(height * upscale), round(width * upscale)
    if min(out_h, out_w) < 1:
        raise ImageReadError(f"{name}: ×{upscale:g} leaves nothing of a {width}×{height} image; raise {option}")
    if out_h * out_w > max_pixels:
        raise ImageReadError(f"{name}: the output would be {out_h * out_w:,} pixels (×{upscale:g}), over the limit "
                             f"of {max_pixels:,}; lower {option}")
    return out_h, out_w


GRAY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")  # one channel: a photo in them stays gray


def pil_to_photo_array(im: Image.Image) -> np.ndarray:
    """PIL → uint8 in the image's layout: HW for a gray mode (``GRAY_MODES``; 16-bit and float scaled as
    ``pil_to_numpy``), RGBA when the image has transparency (gray with alpha as equal channels), else RGB."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    if im.mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    if im.mode in GRAY_MODES:
        return pil_to_numpy(im)[..., 0].copy()
    return pil_to_numpy(im)


def pil_to_numpy(im: Image.Image) -> np.ndarray:
    """Any PIL mode → HWC uint8 RGB. 16-bit and float images are scaled, alpha is dropped (on white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if (im.mode != "I" or arr.max() > 255) else 255.0
        gray = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        peak = 1.0 if arr.max() <= 1.0 else 255.0
        gray = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def write_image_atomic(image: np.ndarray, path: Union[str, Path], quality: int = 95) -> None:
    """Write HWC uint8 RGB(A) (or HW gray) to ``path`` atomically; the format follows the suffix."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format=fmt, **kwargs))


def list_images(inputs: Sequence[Union[str, Path]]) -> tuple[list[Path], list[str]]:
    """Expand files and folders (one level, sorted) into image paths.

    Returns (paths, problems): a missing input is a problem line, not an exception.
    """
    paths: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            try:
                found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            except OSError as err:
                problems.append(f"{item}: folder cannot be read ({err.strerror or err})")
                continue
            if not found:
                problems.append(f"{item}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        elif item.exists():
            problems.append(f"{item}: not a regular file (a pipe or device); give an image file")
        else:
            problems.append(f"{item}: no such file or folder" + (" (a link to nothing)" if item.is_symlink() else ""))
    return paths, problems


# ----------------------------------------------------------------------------- tensors


def to_tensor(image: ImageInput) -> torch.Tensor:
    """One image (PIL, HWC uint8 array, or CHW/1CHW tensor in [-1, 1]) → (1, 3, H, W) float32 in [-1, 1]."""
    if isinstance(image, Image.Image):
        image = pil_to_numpy(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"numpy image must be HW, HWC with C in (1, 3, 4); got shape {image.shape}")
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        image = image[..., :3]
        if image.dtype == np.uint16:
            image = (image.astype(np.float64) / 257.0).round().astype(np.uint8)
        if image.dtype != np.uint8:
            raise ValueError(f"numpy image must be uint8 (0..255) or uint16; got {image.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # (1, 3, H, W) 0..255
        return t / 255.0 * 2.0 - 1.0  # to_tensor's x/255, then 2x-1 as the official code
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"tensor image must be (3, H, W) or (N, 3, H, W); got {tuple(image.shape)}")
        return t.float()
    raise TypeError(f"unsupported image type {type(image).__name__}; use PIL, numpy HWC uint8 or a tensor")


def to_batch(images) -> list[torch.Tensor]:
    """A single image, a list of images, or an (N, 3, H, W) tensor → list of (1, 3, H, W) tensors in [-1, 1]."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [to_tensor(t) for t in images]
    if isinstance(images, (list, tuple)):
        return [to_tensor(im) for im in images]
    return [to_tensor(images)]


def tensor_to_numpy(images: torch.Tensor, rounding: str = "truncate") -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8.

    ``rounding="truncate"`` scales [0, 1] by 255 and truncates, exactly as the official code
    (torchvision ToPILImage); ``"nearest"`` rounds to nearest.
    """
    x01 = (images.detach().float().clamp(-1, 1) * 0.5 + 0.5).clamp(0, 1)
    x255 = x01.permute(0, 2, 3, 1).cpu() * 255.0
    if rounding == "nearest":
        x255 = x255.round()
    elif rounding != "truncate":
        raise ValueError(f"rounding must be 'truncate' or 'nearest', got {rounding!r}")
    return x255.to(torch.uint8).numpy()


def numpy_to_pil(images: np.ndarray) -> list[Image.Image]:
    """(N, H, W, 3) or (H, W, 3) uint8 → list of PIL images."""
    if images.ndim == 3:
        images = images[None]
    return [Image.fromarray(im) for im in images]
