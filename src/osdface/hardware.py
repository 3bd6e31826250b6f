"""What the machine computes fast: CPU instruction sets, native bfloat16, and the ``--dtype auto`` choice.

``auto_dtype(device)`` picks the fastest precision that computes natively and accurately:

- CUDA: bfloat16 on compute capability 8.0+ (Ampere, Hopper: native bf16 tensor cores), float16 before;
- MPS: float16 (Apple GPUs have no fast bf16);
- CPU: bfloat16 with AMX-BF16 or AVX512-BF16 (Sapphire Rapids and later, Zen 4+: measured 5× the fp32
  convolution rate here), float32 otherwise (bf16 is emulated, slower than fp32, on AVX2-only CPUs).

The pipeline keeps the precision-sensitive steps in float32/float64 whatever the choice (see
``OSDFacePipeline.to``).
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, instruction-set flags) of the first CPU in /proc/cpuinfo (Linux; elsewhere no flags)."""
    name, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return name, flags


def cpu_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_info()[1]
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_description() -> str:
    """The CPU's model and the instruction sets that decide torch's speed, e.g.
    "Intel(R) Xeon(R) Processor, 2 cores; AVX2 + AVX-512 + AMX-BF16 (torch kernels: AVX512)"."""
    name, flags = cpu_info()
    isa = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("amx_bf16", "AMX-BF16")) if flag in flags]
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    return f"{name}, {os.cpu_count()} cores; {' + '.join(isa) or 'no AVX2'} (torch kernels: {capability})"


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """(dtype, reason) for ``--dtype auto`` on ``device`` (see module docstring)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, f"CUDA compute capability {major}.{minor} has native bfloat16"
        return torch.float16, f"CUDA compute capability {major}.{minor}: float16 (no native bfloat16)"
    if device.type == "mps":
        return torch.float16, "Apple GPU: float16"
    if cpu_native_bf16():
        return torch.bfloat16, "this CPU has native bfloat16: AMX-BF16 or AVX512-BF16"
    return torch.float32, "this CPU has no native bfloat16 (it would be emulated, slower than float32)"
