"""Speed and size of the one-step pipeline: paper Table 3's columns measured on the current device.

``benchmark_pipeline(pipe, batch_sizes=(1, 2, 4))`` runs ``OSDFacePipeline.restore_tensor`` on random
faces at the model's size (512×512 for the release) and reports:

- steps: 1 (one UNet pass; the paper's "Step" column);
- seconds per face at batch 1 and at each batch size (median over ``repeats`` timed runs after ``warmup``
  untimed ones, wall clock with the device synchronised; per face = run time / batch size); the best batch
  size is the one with the fewest seconds per face;
- parameters per component (VRE, prompt adapter, VAE, UNet; a merged LoRA adds none);
- MACs of one face (``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2; convolutions, matmuls and
  attention, not element-wise ops), counted in one extra batch-1 run;
- peak memory of the batch-1 runs: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only, reset
  before the runs); on CPU the process's peak resident set (``ru_maxrss``, which includes the model, its
  loading, and everything the process did before).

``build_random_pipeline`` builds the full-size release architecture with random weights (SD 2.1-base VAE
and UNet from the shipped configs, VRE, adapter), which is enough for timing, parameters and MACs.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from . import table as tables

PAPER_TABLE3 = {"steps": 1, "time_s": 0.10, "params_m": 978.4, "macs_g": 2132}  # NVIDIA A6000, 512×512
PAPER_LABEL = "OSDFace (paper, A6000)"


@dataclass
class SpeedResult:
    """What ``benchmark_pipeline`` measured. Times in seconds per face, memory in bytes."""

    device: str
    dtype: str
    size: int
    params: dict[str, int]
    seconds_per_face: dict[int, float]  # batch size → seconds per face
    macs: float | None = None  # per face
    peak_memory: int | None = None
    memory_kind: str = ""
    weights: str = ""
    steps: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def time_batch1(self) -> float | None:
        return self.seconds_per_face.get(1)

    @property
    def best_batch(self) -> tuple[int, float]:
        """(batch size, seconds per face) with the fewest seconds per face."""
        return min(self.seconds_per_face.items(), key=lambda kv: (kv[1], kv[0]))

    def row(self) -> dict[str, float | str | None]:
        bs, best = self.best_batch
        return {
            "steps": self.steps,
            "time_s": self.time_batch1 if self.time_batch1 is not None else "batch size 1 not timed",
            "best_time_s": best,
            "best_batch": bs,
            "params_m": sum(self.params.values()) / 1e6,
            "macs_g": self.macs / 1e9 if self.macs is not None else "not counted (--no-macs)",
            "peak_gb": self.peak_memory / 2**30 if self.peak_memory is not None else f"not measured ({self.memory_kind})",
        }

    def render_markdown(self, method: str = "OSDFace (this run)", with_paper: bool = True) -> str:
        """Table 3's columns (Step, Time (s) at batch 1, Param (M), MACs (G)) plus best batch and peak memory."""
        columns = tables.TABLE3_COLUMNS + [
            tables.Column("best_time_s", "Time (s), best batch", None, digits=3),
            tables.Column("best_batch", "Best batch", None, digits=0),
            tables.Column("peak_gb", "Peak mem. (GiB)", None, digits=2),
        ]
        columns[1] = tables.Column("time_s", "Time (s)", None, digits=3)
        results = {method: self.row()}
        reasons = {}
        if with_paper:
            results[PAPER_LABEL] = dict(PAPER_TABLE3)
            reasons[PAPER_LABEL] = {k: "not reported in the paper" for k in ("best_time_s", "best_batch", "peak_gb")}
        title = f"Table 3 layout ({self.size}×{self.size} input, {self.device}, {self.dtype}, {self.weights})"
        lines = [tables.render_markdown(columns, results, reasons, title)]
        per_batch = ", ".join(f"batch {bs}: {s:.3f} s/face" for bs, s in sorted(self.seconds_per_face.items()))
        parts = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in self.params.items())
        lines.append(f"- timings: {per_batch}")
        lines.append(f"- parameters: {parts}")
        lines.append(f"- peak memory: {self.memory_kind}")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def count_macs(pipe, lq: torch.Tensor, layers_only: bool = False) -> float:
    """Multiply-accumulates of ``pipe.restore_tensor(lq)`` (FLOPs / 2), for the whole batch.

    ``layers_only`` counts conv and linear layers alone, as counters like thop (used for papers'
    tables) do; by default every op torch's FLOP counter knows is included.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        pipe.restore_tensor(lq)
    if not layers_only:
        return counter.get_total_flops() / 2
    per_op = counter.get_flop_counts()["Global"]
    return sum(v for op, v in per_op.items() if str(op).split(".")[1] in ("convolution", "mm", "addmm")) / 2


def time_per_face(pipe, lq: torch.Tensor, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``restore_tensor(lq)`` over ``repeats`` runs after ``warmup``, divided by the batch."""
    for _ in range(warmup):
        pipe.restore_tensor(lq)
    synchronize(pipe.device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        pipe.restore_tensor(lq)
        synchronize(pipe.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / lq.shape[0]


def process_peak_rss() -> int:
    """Peak resident set size of this process in bytes.

    Linux: ``VmHWM`` of /proc/self/status (``ru_maxrss`` would include the parent's peak at fork
    time, inherited across exec). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def random_faces(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """(batch, 3, size, size) uniform noise in [-1, 1] (the content does not change the work done)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def benchmark_pipeline(
    pipe,
    batch_sizes: Sequence[int] = (1,),
    repeats: int = 3,
    warmup: int = 1,
    macs: bool = True,
    size: int | None = None,
    weights: str = "",
    log: Callable[[str], None] | None = None,
) -> SpeedResult:
    """Measure ``pipe`` on its device and dtype (see the module docstring). Batch 1 is always timed first."""
    from ..pipeline import param_counts

    log = log or (lambda message: None)
    size = size or pipe.sample_size
    device = pipe.device
    sizes = sorted({1, *batch_sizes})
    if any(bs < 1 for bs in sizes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    result = SpeedResult(str(device), str(pipe.dtype).removeprefix("torch."), size, param_counts(pipe), {},
                         weights=weights)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for bs in sizes:
        lq = random_faces(bs, size, seed=bs).to(device, pipe.dtype)
        log(f"timing batch {bs} ({warmup} warm-up + {max(1, repeats)} timed run(s))")
        result.seconds_per_face[bs] = time_per_face(pipe, lq, repeats, warmup if bs == 1 else min(warmup, 1))
        log(f"batch {bs}: {result.seconds_per_face[bs]:.3f} s/face")
        if bs == 1:
            if device.type == "cuda":
                result.peak_memory = torch.cuda.max_memory_allocated(device)
                result.memory_kind = "torch.cuda.max_memory_allocated during the batch-1 runs"
            elif device.type == "cpu":
                result.peak_memory = process_peak_rss()
                result.memory_kind = "process peak RSS (ru_maxrss) after the batch-1 runs, model build included"
            else:
                result.memory_kind = f"not measured on {device.type}"
            if macs:
                log("counting MACs (one more batch-1 run)")
                result.macs = count_macs(pipe, lq)
    if not math.isfinite(sum(result.seconds_per_face.values())):
        result.notes.append("a timing was not finite")
    return result


def build_random_pipeline(seed: int = 0):
    """The full-size release architecture with random weights (offline): SD 2.1-base VAE + UNet, VRE,
    adapter; built on the meta device and filled in place, so memory peaks at the weights' size."""
    from ..models.adapter import PromptAdapter
    from ..models.stable_diffusion import build_sd21_base, fill_random_
    from ..models.vre import VisualRepresentationEmbedder
    from ..pipeline import OSDFacePipeline

    vae, unet = build_sd21_base(seed)
    with torch.device("meta"):
        vre, adapter = VisualRepresentationEmbedder(), PromptAdapter()
    fill_random_(vre, seed + 2), fill_random_(adapter, seed + 3)
    with torch.no_grad():  # codebook on the scale of the features, so the token selection is realistic
        vre.quantize.embedding.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + 4))
    return OSDFacePipeline(vre, adapter, vae, unet)
