"""OSDFacePipeline: aligned LQ faces → restored faces in one diffusion step.

Example::

    from osdface import OSDFacePipeline
    pipe = OSDFacePipeline.from_official("weights/osdface-release", sd_model="weights/stable-diffusion-2-1-base")
    pipe.save_pretrained("weights/osdface")            # safetensors + JSON; later loads need no pickle
    pipe = OSDFacePipeline.from_pretrained("weights/osdface").to("cuda", torch.float16)
    faces = pipe([Image.open("a.png"), Image.open("b.png")]).images

The recipe (``restore_tensor``) follows the official ``infer.py`` exactly: VRE prompt from the LQ
face, VAE-encode, one UNet pass at T_L = 399 with no added noise, x0 from the predicted noise in
float64, decode, clamp. It is batched (the official selection only works at batch size 1).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from . import __version__, official
from .errors import WeightsFormatError, WeightsNotFoundError
from .files import atomic_folder
from .image_utils import numpy_to_pil, tensor_to_numpy, to_batch
from .models.adapter import PromptAdapter
from .models.lora import LORA_WEIGHT_NAME, LoraPair, add_lora_adapter, load_lora_file, lora_state_dict
from .models.lora import merge_lora as merge_lora_weights
from .models.stable_diffusion import alphas_cumprod_from_config, load_sd21_base, sd21_base_config
from .models.space_to_depth import vae_class
from .models.vre import VisualRepresentationEmbedder

INDEX_FILE = "model_index.json"
FORMAT_VERSION = 1


@dataclass
class OSDFacePipelineOutput:
    """``images``: list of PIL images, an (N, H, W, 3) uint8 array (``"np"``) or an (N, 3, H, W)
    tensor in [-1, 1] (``"pt"``); a list for np/pt when output sizes differ (non-square inputs)."""

    images: Union[list[Image.Image], np.ndarray, torch.Tensor, list]


def _pad_to_square(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Edge-replicate padding of (1, 3, H, W) to a square; returns the padded image and (l, r, t, b)."""
    H, W = x.shape[-2:]
    side = max(H, W)
    left, top = (side - W) // 2, (side - H) // 2
    pad = (left, side - W - left, top, side - H - top)
    return F.pad(x, pad, mode="replicate"), pad


class OSDFacePipeline:
    """The one-step generator with its visual prompt. Components:

    - ``vre``: VisualRepresentationEmbedder (frozen), LQ face → (B, 77, 512) tokens;
    - ``adapter``: PromptAdapter, tokens → (B, 77, 1024) cross-attention context;
    - ``vae``: SD 2.1-base AutoencoderKL; ``unet``: SD 2.1-base UNet with the LoRA (merged or not);
    - ``scheduler_config``: the SD noise schedule (only ᾱ at ``timestep`` is used); SD 2.1-base's
      when None.

    Config (stored in ``model_index.json``): ``timestep`` (T_L, 399), ``sample_size`` (the face size
    the model runs at, 512).

    ``small_faces`` (not saved; ``with_small_faces``): None, or a second pipeline at a smaller face size and
    the largest native face size (px) it takes: whole-photo restoring (``photos.make_face_restorer``, the
    ``--aligned`` path) sends such faces to it. The bundled default pairs mini256 with mini128 this way.
    ``to``, ``autocast`` and ``channels_last`` apply to it too.
    """

    def __init__(
        self,
        vre: VisualRepresentationEmbedder,
        adapter: PromptAdapter,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        scheduler_config: Optional[dict] = None,
        timestep: int = 399,
        sample_size: int = 512,
        lora: Optional[dict[str, LoraPair]] = None,
        lora_merged: bool = True,
        base_model: Optional[str] = None,
    ):
        self.vre, self.adapter, self.vae, self.unet = vre, adapter, vae, unet
        self.scheduler_config = dict(scheduler_config or sd21_base_config("scheduler"))
        self.alphas_cumprod = alphas_cumprod_from_config(self.scheduler_config)  # (T,) float32
        if not 0 <= timestep < len(self.alphas_cumprod):
            raise ValueError(f"timestep {timestep} outside the schedule's 0..{len(self.alphas_cumprod) - 1}")
        self.timestep, self.sample_size = int(timestep), int(sample_size)
        self.lora, self.lora_merged, self.base_model = lora, lora_merged, base_model
        self.autocast_dtype: Optional[torch.dtype] = None  # see ``autocast``
        self.small_faces: Optional[tuple[OSDFacePipeline, float]] = None  # see ``with_small_faces``
        for module in self.modules():
            module.eval().requires_grad_(False)

    # ------------------------------------------------------------------ components, device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [self.vre, self.adapter, self.vae, self.unet]

    def with_small_faces(self, pipe: Optional["OSDFacePipeline"], up_to: float = 0.0) -> "OSDFacePipeline":
        """Pair this pipeline with ``pipe`` for faces whose native size is at most ``up_to`` px in whole
        photos (None: no pairing). ``pipe`` must run at a smaller face size. Returns self."""
        if pipe is None:
            self.small_faces = None
            return self
        if not pipe.sample_size < self.sample_size or not up_to > 0:
            raise ValueError(f"a small-face pipeline runs below {self.sample_size} px and takes faces up to > 0 px; "
                             f"got {pipe.sample_size} px, up to {up_to}")
        if pipe.small_faces is not None:
            raise ValueError("the small-face pipeline has a small-face pipeline of its own")
        self.small_faces = (pipe, float(up_to))
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_dtype(self) -> torch.dtype:
        """The autoencoder's weight dtype; float32 for a parameter-free one (space-to-depth: exact latents)."""
        weight = next(self.vae.parameters(), None)
        return weight.dtype if weight is not None else torch.float32

    def to(self, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None):
        """Move every component (like ``nn.Module.to``); returns self.

        ``dtype`` applies to the VAE and the UNet (the work). The VRE and the adapter stay float32 (float64
        when asked) whatever ``dtype`` is: the VRE's nearest-code selection in half precision picks other
        codes (a changed token moves output pixels by up to ~0.6), and both cost little. x0 is always
        computed in float64 (``predict_x0``).
        """
        exact = dtype if dtype in (None, torch.float32, torch.float64) else torch.float32
        for module in (self.vre, self.adapter):
            torch.nn.Module.to(module, device=device, dtype=exact)  # (diffusers' .to warns on plain casts)
        for module in (self.vae, self.unet):
            torch.nn.Module.to(module, device=device, dtype=dtype)
        if self.small_faces is not None:
            self.small_faces[0].to(device, dtype)
        return self

    def autocast(self, dtype: Optional[torch.dtype]):
        """Run the VAE and UNet under ``torch.autocast(dtype)`` with float32 weights (``None``: off).

        The alternative to casting the weights (``to(dtype=...)``): matmuls and convolutions run in
        ``dtype``, precision-sensitive ops (norms, softmax) stay float32. Returns self."""
        self.autocast_dtype = dtype
        if self.small_faces is not None:
            self.small_faces[0].autocast(dtype)
        return self

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def channels_last(self, enable: bool = True):
        """Channels-last memory layout for the 4-D weights (``enable=False``: back to NCHW); same outputs."""
        layout = torch.channels_last if enable else torch.contiguous_format
        for module in self.modules():
            torch.nn.Module.to(module, memory_format=layout)
        if self.small_faces is not None:
            self.small_faces[0].channels_last(enable)
        return self

    def merge_lora(self):
        """Fuse an un-merged (PEFT) LoRA into the UNet weights; no-op when already merged."""
        if not self.lora_merged:
            self.unet.fuse_lora()
            self.unet.unload_lora()
            self.lora_merged = True
        return self

    # ------------------------------------------------------------------ the one-step recipe

    def visual_prompt(self, lq: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] → (B, 77, 1024) cross-attention context."""
        return self.prompt_from_features(self.visual_features(lq))

    def visual_features(self, lq: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] → the VRE's pre-quantisation features (B, 512, 16, 16) at the release
        sizes; the release's double normalisation inside. Video smooths these along a face track."""
        return self.vre.encode(lq.to(self.device, self.vre.dtype))

    def prompt_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """VRE features (B, C, h, w) → distinct nearest codes (B, 77, 512) → adapter → (B, 77, 1024)."""
        tokens = self.vre.quantize.select_tokens(features.to(self.vre.dtype), self.vre.config.num_tokens)
        return self.adapter(tokens.to(self.adapter.dtype)).to(self.dtype)

    def predict_x0(self, latents: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (z − √(1−ᾱ)·ε̂) / √ᾱ at ``timestep``, in float64 (on CPU for devices without it)."""
        work = latents.device if latents.device.type not in ("mps",) else torch.device("cpu")
        a = self.alphas_cumprod[self.timestep].to(work, torch.float64)
        z, e = latents.to(work, torch.float64), eps.to(work, torch.float64)
        x0 = (z - (1 - a).sqrt() * e) / a.sqrt()
        return x0.to(latents.device, torch.float32)  # as the official code, before the decode dtype cast

    def generate(self, lq: torch.Tensor, generator=None, posterior: str = "mode",
                 clamp: bool = True, prompt_embeds: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The one-step recipe with autograd left on (stage-2 training goes through here too).

        lq: (B, 3, H, W) in [-1, 1], H and W multiples of 8·2^(UNet levels − 1). Returns a dict with
        ``image`` (B, 3, H, W) in [-1, 1] and the intermediates the training losses use:
        ``prompt_embeds``, ``latents`` (z_L, scaled) and ``pred_latents`` (ẑ_H, scaled).
        ``posterior``: ``"mode"`` (deterministic, default) or ``"sample"`` as the official code
        (then ``generator`` — one torch.Generator or a list of B — makes it reproducible).
        ``clamp=False`` leaves the decoded image unclamped (training: no zero gradient where the
        decoder overshoots [-1, 1]); inference always clamps, as the official code. ``prompt_embeds``
        (B, 77, 1024): a visual prompt made beforehand (video: from VRE features smoothed along a face
        track) instead of the one of ``lq``.
        """
        if posterior not in ("mode", "sample"):
            raise ValueError(f"posterior must be 'mode' or 'sample', got {posterior!r}")
        lq = lq.to(self.device, torch.promote_types(lq.dtype, torch.float32))  # the VRE sees the input unrounded
        vae_dtype = self.vae_dtype
        # 1. Visual prompt from the VRE
        if prompt_embeds is None:
            prompt_embeds = self.visual_prompt(lq)  # (B, 77, 1024)
        prompt_embeds = prompt_embeds.to(self.device, self.dtype)
        # 2. Encode the LQ face to latents
        with self._autocast():
            dist = self.vae.encode(lq.to(vae_dtype)).latent_dist  # mean/std (B, 4, H/8, W/8)
        if posterior == "mode":
            latents = dist.mode()
        elif isinstance(generator, list):
            noise = torch.cat([torch.randn(dist.mean[:1].shape, generator=g, device=g.device, dtype=torch.float32)
                               for g in generator]).to(self.device, vae_dtype)
            latents = dist.mean + dist.std * noise
        else:
            latents = dist.sample(generator=generator)
        latents = latents * self.vae.config.scaling_factor  # (B, 4, H/8, W/8)
        # 3. One UNet pass at T_L; the clean LQ latent is the input (no noise added)
        with self._autocast():
            eps = self.unet(latents.to(self.dtype), self.timestep, encoder_hidden_states=prompt_embeds).sample
        # 4. x0 from the predicted noise (float64)
        pred_latents = self.predict_x0(latents, eps)  # (B, 4, H/8, W/8)
        # 5. Decode and clamp
        with self._autocast():
            image = self.vae.decode(pred_latents.to(vae_dtype) / self.vae.config.scaling_factor).sample
        image = image.float() if self.autocast_dtype is not None else image
        return {"image": image.clamp(-1, 1) if clamp else image, "prompt_embeds": prompt_embeds, "latents": latents,
                "pred_latents": pred_latents}

    @torch.inference_mode()
    def restore_tensor(self, lq: torch.Tensor, generator=None, posterior: str = "mode",
                       prompt_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Batched restoration of (B, 3, H, W) faces in [-1, 1] → (B, 3, H, W) in [-1, 1] (see ``generate``)."""
        return self.generate(lq, generator=generator, posterior=posterior, prompt_embeds=prompt_embeds)["image"]

    def preprocess(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(1, 3, H, W) in [-1, 1] → (1, 3, S, S) and what ``postprocess`` needs to undo it.

        Square inputs are resized to S (bilinear, align_corners=True: the official code). Non-square
        inputs are edge-padded to a square first; ``postprocess`` crops the padding off again.
        """
        pad = (0, 0, 0, 0)
        hw = tuple(image.shape[-2:])
        if hw[0] != hw[1]:
            image, pad = _pad_to_square(image)
        side = image.shape[-1]
        if side != self.sample_size:
            image = F.interpolate(image, size=(self.sample_size, self.sample_size), mode="bilinear",
                                  align_corners=True)
        return image, (side, pad, hw)

    def postprocess(self, restored: torch.Tensor, info: tuple) -> torch.Tensor:
        """Undo the padding of ``preprocess``: square inputs come out S×S; non-square H×W ones keep their
        aspect ratio with the long side S: (round(H·S/max), round(W·S/max)), at least 1 pixel."""
        side, (left, _, top, _), (h, w) = info
        if h == w:
            return restored
        s = self.sample_size / side
        out_h, out_w = max(1, round(h * s)), max(1, round(w * s))
        y0 = min(round(top * s), self.sample_size - out_h)
        x0 = min(round(left * s), self.sample_size - out_w)
        return restored[..., y0:y0 + out_h, x0:x0 + out_w]

    def __call__(self, images, batch_size: int = 4, posterior: str = "mode", generator=None,
                 output_type: str = "pil", rounding: str = "truncate") -> OSDFacePipelineOutput:
        """Restore aligned faces.

        images: a PIL image, an HWC uint8 RGB array, a (3, H, W)/(N, 3, H, W) tensor in [-1, 1], or a
        list of them. ``generator``: a Generator or one per image (``posterior="sample"`` only).
        ``output_type``: "pil" | "np" | "pt". ``rounding``: float → uint8 as the official code
        ("truncate") or "nearest".
        """
        # 1. Check and convert inputs
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        batch = to_batch(images)  # list of (1, 3, H, W) in [-1, 1]
        if isinstance(generator, list) and len(generator) != len(batch):
            raise ValueError(f"got {len(generator)} generators for {len(batch)} images")
        # 2. Preprocess to S×S and restore in batches
        prepared = [self.preprocess(x) for x in batch]
        outputs: list[torch.Tensor] = []
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start:start + batch_size]
            gens = generator[start:start + batch_size] if isinstance(generator, list) else generator
            restored = self.restore_tensor(torch.cat([x for x, _ in chunk]), generator=gens, posterior=posterior)
            outputs.extend(self.postprocess(r[None], info).float().cpu() for r, (_, info) in zip(restored, chunk))
        # 3. Convert outputs
        same_size = len({o.shape for o in outputs}) == 1
        if output_type == "pt":
            return OSDFacePipelineOutput(torch.cat(outputs) if same_size else outputs)
        arrays = [tensor_to_numpy(o, rounding)[0] for o in outputs]  # HWC uint8
        if output_type == "np":
            return OSDFacePipelineOutput(np.stack(arrays) if same_size else arrays)
        return OSDFacePipelineOutput([numpy_to_pil(a)[0] for a in arrays])

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_official(cls, release_dir: Union[str, os.PathLike], sd_model: Union[str, os.PathLike],
                      merge_lora: bool = True, dtype: torch.dtype = torch.float32, timestep: int = 399,
                      vre_config: Optional[dict] = None, adapter_config: Optional[dict] = None,
                      sample_size: int = 512) -> "OSDFacePipeline":
        """Build from SD 2.1-base + the official release folder (associate_2.ckpt,
        embedding_change_weights.pth, pytorch_lora_weights.safetensors).

        ``vre_config``/``adapter_config`` default to the release's architecture (tests pass tiny ones).
        """
        folder = official.check_release_folder(release_dir)
        vre = VisualRepresentationEmbedder(**(vre_config or {}))
        vre.load_state_dict(official.read_vre_state_dict(folder / official.VRE_FILE, vre.state_dict()))
        adapter = PromptAdapter(**(adapter_config or {}))
        adapter.load_state_dict(official.read_adapter_state_dict(folder / official.ADAPTER_FILE,
                                                                 adapter.state_dict()))
        vae, unet, scheduler_config = load_sd21_base(sd_model)
        pairs = load_lora_file(folder / official.LORA_FILE)
        (merge_lora_weights if merge_lora else add_lora_adapter)(unet, pairs)
        pipe = cls(vre, adapter, vae, unet, scheduler_config, timestep=timestep, sample_size=sample_size,
                   lora=pairs, lora_merged=merge_lora, base_model=str(sd_model))
        return pipe.to(dtype=dtype)

    def save_pretrained(self, save_dir: Union[str, os.PathLike], lora: str = "merged") -> Path:
        """Write our format: safetensors + JSON only, atomically (a temp folder, then rename).

        ``lora="merged"``: the merged UNet and the VAE are stored; loading needs nothing else.
        ``lora="separate"``: only the LoRA (PEFT keys), VRE and adapter; loading needs SD 2.1-base.
        """
        if lora not in ("merged", "separate"):
            raise ValueError(f"lora must be 'merged' or 'separate', got {lora!r}")
        if lora == "separate" and self.lora is None:
            raise ValueError("this pipeline holds no separate LoRA weights; save with lora='merged'")
        save_dir = Path(save_dir)
        with atomic_folder(save_dir, replace=False) as tmp:
            self.vre.save_pretrained(tmp / "visual_embedder")
            self.adapter.save_pretrained(tmp / "prompt_adapter")
            (tmp / "scheduler").mkdir()
            (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(self.scheduler_config, indent=2))
            if lora == "merged":
                if not self.lora_merged:
                    raise ValueError("the LoRA is not merged: call pipe.merge_lora() first, or save lora='separate'")
                self.vae.save_pretrained(tmp / "vae")
                self.unet.save_pretrained(tmp / "unet")
            else:
                from safetensors.torch import save_file

                (tmp / "lora").mkdir()
                save_file(lora_state_dict(self.lora), str(tmp / "lora" / LORA_WEIGHT_NAME))
            index = {"_class_name": type(self).__name__, "osdface_version": __version__,
                     "format_version": FORMAT_VERSION, "timestep": self.timestep,
                     "sample_size": self.sample_size, "lora": lora, "base_model": self.base_model}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        return save_dir

    @classmethod
    def from_pretrained(cls, model_dir: Union[str, os.PathLike], sd_model: Union[str, os.PathLike, None] = None,
                        merge_lora: bool = True, dtype: torch.dtype = torch.float32,
                        small_faces: Optional[bool] = None) -> "OSDFacePipeline":
        """Load a folder written by ``save_pretrained`` (no pickle, no merge for the merged layout).
        ``"mini"``, ``"mini256"``, ``"mini128"`` (when no such folder exists here) are the bundled models
        (``osdface.bundled``; "mini" is the default one). ``small_faces``: pair a bundled model with the one
        that takes its small faces (``bundled.SMALL_FACES``, ``with_small_faces``) when installed; None: only
        for "mini"."""
        from .bundled import DEFAULT_NAME, NAMES, resolve_bundled, small_faces_for

        if small_faces is None:
            small_faces = str(model_dir) == DEFAULT_NAME
        if str(model_dir) in NAMES and not Path(model_dir).exists():
            folder = resolve_bundled(str(model_dir))
            if folder is None:
                raise WeightsNotFoundError(f"the bundled {model_dir} model is missing from this install; reinstall osdface")
            model_dir = folder
        partner = small_faces_for(Path(model_dir)) if small_faces else None
        if partner is not None:
            small = cls.from_pretrained(partner[0], sd_model, merge_lora, dtype, small_faces=False)
            return cls.from_pretrained(model_dir, sd_model, merge_lora, dtype, small_faces=False).with_small_faces(
                small, partner[1])
        model_dir = Path(model_dir).expanduser()
        index_path = model_dir / INDEX_FILE
        if not index_path.is_file():
            raise WeightsNotFoundError(f"{model_dir}: no {INDEX_FILE}; not an osdface model folder "
                                       "(make one with `osdface convert`)")
        index = json.loads(index_path.read_text())
        if index.get("format_version", 0) > FORMAT_VERSION:
            raise WeightsFormatError(f"{model_dir}: format {index['format_version']} is newer than this "
                                     f"osdface ({__version__}) reads; upgrade osdface")
        vre = VisualRepresentationEmbedder.from_pretrained(model_dir / "visual_embedder")
        adapter = PromptAdapter.from_pretrained(model_dir / "prompt_adapter")
        scheduler_config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
        pairs = None
        if index["lora"] == "merged":
            vae = vae_class(model_dir / "vae").from_pretrained(model_dir / "vae")
            unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
            merged = True
        else:
            base = sd_model or index.get("base_model")
            if base is None:
                raise WeightsNotFoundError(f"{model_dir} stores only the LoRA; pass sd_model (SD 2.1-base)")
            vae, unet, _ = load_sd21_base(base)
            pairs = load_lora_file(model_dir / "lora")
            (merge_lora_weights if merge_lora else add_lora_adapter)(unet, pairs)
            merged = merge_lora
        pipe = cls(vre, adapter, vae, unet, scheduler_config, timestep=index["timestep"], sample_size=index["sample_size"],
                   lora=pairs, lora_merged=merged, base_model=index.get("base_model"))
        return pipe.to(dtype=dtype)


def param_counts(pipe: OSDFacePipeline) -> dict[str, int]:
    """Parameter count per component (LoRA included in the UNet when un-merged)."""
    return {name: sum(math.prod(p.shape) for p in module.parameters())
            for name, module in zip(("vre", "adapter", "vae", "unet"), pipe.modules())}
