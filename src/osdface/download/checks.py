"""After a download: the loaders' own key and shape checks, then the conversion to our format.

Nothing is declared done before the files pass the check of the code that will load them:

- ``sd21-base``: the unet/vae/scheduler configs load, and each safetensors file holds as many tensors
  and parameters as the model its config builds (built on the meta device: no memory, no weights);
- ``release``: all three files through ``osdface.official``'s strict readers (every key and shape of the
  VRE and adapter) and the LoRA against a UNet built on the meta device (SD 2.1-base's config, or the
  installed one's);
- ``mtcnn`` / ``metrics``: the strict loaders of the detector and the metric networks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from ..errors import WeightsFormatError
from .errors import DownloadError
from .fetch import ensure_space

CONVERTED_SIZE = 3_900_000_000  # our merged format (UNet + VAE in float32)


def check_sd21_base(folder: Path, home: Optional[Path] = None) -> str:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from safetensors import safe_open

    from ..models.space_to_depth import vae_class

    parts = []
    for part, cls in (("unet", UNet2DConditionModel), ("vae", None)):
        cls = cls or vae_class(folder / part)
        config = cls.load_config(folder / part)
        with torch.device("meta"):
            model = cls.from_config(config)
        expected = {k: v.numel() for k, v in model.state_dict().items()}
        weights = folder / part / "diffusion_pytorch_model.safetensors"
        try:
            with safe_open(str(weights), framework="pt") as f:
                shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        except Exception as err:  # noqa: BLE001 - safetensors' header errors (truncated, not safetensors)
            raise WeightsFormatError(f"{weights}: not a readable safetensors file ({err})") from None
        numel = sum(_prod(s) for s in shapes.values())
        if len(shapes) != len(expected) or numel != sum(expected.values()):
            raise WeightsFormatError(
                f"{weights}: {len(shapes)} tensors / {numel:,} values, but the {part} its config describes has "
                f"{len(expected)} / {sum(expected.values()):,}: not the weights of this {part}")
        parts.append(f"{part} {numel / 1e6:.1f} M")
        del model
    DDIMScheduler.load_config(folder / "scheduler")
    return ", ".join(parts) + ", scheduler"


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_release(folder: Path, home: Optional[Path] = None, vre_config: Optional[dict] = None,
                  adapter_config: Optional[dict] = None) -> str:
    import torch
    from diffusers import UNet2DConditionModel

    from .. import official
    from ..models.adapter import PromptAdapter
    from ..models.lora import load_lora_file, merge_lora
    from ..models.stable_diffusion import SD_FOLDER_NAME, sd21_base_config
    from ..models.vre import VisualRepresentationEmbedder

    official.check_release_folder(folder)
    vre = VisualRepresentationEmbedder(**(vre_config or {}))
    official.read_vre_state_dict(folder / official.VRE_FILE, vre.state_dict())
    adapter = PromptAdapter(**(adapter_config or {}))
    official.read_adapter_state_dict(folder / official.ADAPTER_FILE, adapter.state_dict())
    pairs = load_lora_file(folder / official.LORA_FILE)
    installed = Path(home) / SD_FOLDER_NAME / "unet" / "config.json" if home else None
    config = json.loads(installed.read_text()) if installed and installed.is_file() else sd21_base_config("unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    merge_lora(unet, pairs)  # on the meta device: checks every target module and shape, computes nothing kept
    return f"VRE, adapter, LoRA ({len(pairs)} modules)"


def check_mtcnn(folder: Path, home: Optional[Path] = None) -> str:
    from ..face.mtcnn import load_mtcnn_nets

    load_mtcnn_nets(folder)
    return "PNet, RNet, ONet"


def check_metrics(folder: Path, home: Optional[Path] = None) -> str:
    from ..models.arcface import ARCFACE_FILES, load_arcface
    from ..models.fan import FAN_FILE, load_fan
    from ..models.inception import INCEPTION_FILE, load_fid_inception

    done = []
    for name, load in ((INCEPTION_FILE, load_fid_inception), (FAN_FILE, load_fan),
                       *((n, load_arcface) for n in ARCFACE_FILES)):
        if (folder / name).is_file():
            load(folder / name)
            done.append(name)
    return ", ".join(done)


CHECKS: dict[str, Callable[..., str]] = {"sd21-base": check_sd21_base, "release": check_release,
                                         "mtcnn": check_mtcnn, "metrics": check_metrics}


def run_check(name: Optional[str], target: str, folder: Path, home: Path) -> str:
    """Run check ``name`` on ``folder``; any failure becomes one DownloadError. Returns what was checked."""
    if not name or name == "none":
        return "no loader check"
    if name not in CHECKS:
        raise DownloadError(f"{target}: unknown check {name!r} (known: {', '.join(CHECKS)}, none)")
    try:
        return CHECKS[name](folder, home=home)
    except Exception as err:  # noqa: BLE001 - whatever the loader says is the reason
        text = " ".join(str(err).split())[:500] or type(err).__name__
        raise DownloadError(f"{target}: the files in {folder} were downloaded but fail the loader check: {text}. "
                            f"They are left there (not recorded); run `osdface download {target}` again to fetch "
                            "them anew, or check the source") from None


def convert_paper(home: Path, notify: Callable[[str], None]) -> Optional[Path]:
    """``osdface convert`` of the installed release + SD 2.1-base into ``$OSDFACE_HOME/osdface`` (merged)."""
    from ..models.stable_diffusion import SD_FOLDER_NAME
    from ..pipeline import INDEX_FILE, OSDFacePipeline

    out = home / "osdface"
    release, sd = home / "osdface-release", home / SD_FOLDER_NAME
    if (out / INDEX_FILE).is_file():
        notify(f"{out} already holds a converted model: left as it is (remove it to convert again)")
        return out
    if out.exists():
        raise DownloadError(f"{out} exists but is not a converted model; move it away, or pass --no-convert")
    if not (sd / "unet").is_dir():
        notify(f"not converted: SD 2.1-base is not in {sd} (`osdface download sd21-base`); the release folder "
               "is used as it is")
        return None
    ensure_space(home, CONVERTED_SIZE, "the converted model")
    notify(f"converting {release} + {sd} → {out} (merged LoRA, safetensors)")
    OSDFacePipeline.from_official(release, sd).save_pretrained(out, lora="merged")
    return out
