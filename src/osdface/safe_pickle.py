"""Read PyTorch pickle checkpoints without ever running code from the file.

``torch.load(weights_only=True)`` is tried first. A PyTorch-Lightning checkpoint may also hold
objects it refuses (hyper-parameters as OmegaConf/argparse objects, callback states, ...); for those,
the fallback unpickler resolves only the globals of torch's own weights-only allow-list and turns
every other global into an inert placeholder class: nothing from the file is imported or called, and
the tensors come back intact while the foreign objects become harmless ``InertObject`` instances.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import torch


class InertObject:
    """Stands in for a class or function named by the file; records what it was given, does nothing."""

    _qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        for v in values:
            self.append(v)

    def __repr__(self):
        return f"<inert {self._qualname}>"


def _allowed_globals() -> dict[str, object]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return dict(_get_allowed_globals())
    except ImportError:  # very old/new torch: a minimal list of tensor building blocks
        import collections

        return {
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
            "torch.Size": torch.Size,
        }


class _InertUnpickler(pickle.Unpickler):
    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        obj = self._allowed.get(f"{module}.{name}")
        if obj is not None:
            return obj
        return type(name, (InertObject,), {"_qualname": f"{module}.{name}"})


def _inert_load(file, **kwargs):
    return _InertUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) subclasses ``Unpickler`` (adding storage handling) and calls ``load``.
_INERT_PICKLE = types.SimpleNamespace(__name__="osdface_inert_pickle", Unpickler=_InertUnpickler,
                                      load=_inert_load)


def safe_torch_load(path: str | Path):
    """Load a torch pickle on CPU: weights-only first, then the inert fallback (see module doc)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_INERT_PICKLE)
