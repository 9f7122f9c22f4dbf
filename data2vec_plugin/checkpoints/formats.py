"""Checkpoint format sniffing and safe loading, without ever executing a pickle payload.

Formats:
* ``safe``: loads with ``torch.load(weights_only=True)`` (plain containers, tensors; plus the allow-listed
  ``fairseq.data.Dictionary``). Everything this plugin writes, and the reference's hydra checkpoints.
* ``legacy``: needs a few extra, known data classes (``argparse.Namespace`` in ``args``, numpy scalars/dtypes,
  omegaconf containers). Refused by default; ``d2v-convert IN OUT --trust-source`` rewrites it as ``safe`` using a
  scoped allow-list of exactly these classes (still no arbitrary code).
* ``unsafe``: references any other global (e.g. ``os.system``): refused everywhere, also by ``d2v-convert``.

The globals a file references are listed by ``torch.serialization.get_unsafe_globals_in_checkpoint``, which reads
the pickle opcodes without executing them.
"""
import importlib
import pickle
import zipfile
from typing import List, Tuple

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely; the message names the file and what to do."""


# Data classes that old fairseq / data2vec checkpoints pickle; they build plain objects and run no user code.
LEGACY_GLOBALS = (
    "argparse.Namespace", "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode", "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode", "omegaconf.nodes.ValueNode", "typing.Any",
    "builtins.dict", "builtins.list", "builtins.int", "builtins.str", "builtins.float", "builtins.bool",
    "builtins.object", "collections.defaultdict",
)


def is_legacy_global(name: str) -> bool:
    return name in LEGACY_GLOBALS or (name.startswith("numpy.dtypes.") and name.endswith("DType"))


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    try:
        obj = importlib.import_module(module)
    except ImportError:
        obj = importlib.import_module(module.replace("numpy.core", "numpy._core"))
    return getattr(obj, attr)


def referenced_globals(path: str) -> List[str]:
    """Globals the checkpoint's pickle references that ``weights_only`` does not allow (opcodes only)."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a zip-format torch checkpoint and not loadable with weights_only=True; "
                              "re-save it with torch >= 1.6 in an environment you trust")
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def classify(path: str) -> Tuple[str, List[str]]:
    """``("safe"|"legacy"|"unsafe", globals beyond weights_only's allow-list)``."""
    names = [n for n in referenced_globals(path) if n not in _safe_names()]
    if not names:
        return "safe", []
    if all(is_legacy_global(n) for n in names):
        return "legacy", names
    return "unsafe", names


def _safe_names() -> List[str]:
    from ..safe_load import SAFE_CLASSES
    return [f"{c.__module__}.{c.__qualname__}" for c in SAFE_CLASSES]


def refusal(path: str) -> CheckpointError:
    kind, names = classify(path)
    if kind == "legacy":
        return CheckpointError(
            f"{path}: legacy checkpoint: it needs full unpickling of {sorted(set(names))} (old fairseq `args` "
            f"Namespace / numpy scalars). If you trust its source, convert it once with\n"
            f"    d2v-convert {path} OUT.pt --trust-source\nand load OUT.pt (weights-only safe).")
    if kind == "unsafe":
        return CheckpointError(
            f"{path}: refused: the pickle references {sorted(set(names))}, which could execute code when loaded. "
            "It was not loaded; d2v-convert refuses it too. Obtain the checkpoint from a trusted source.")
    return CheckpointError(f"{path}: torch.load(weights_only=True) failed although no unsafe global was found")


def safe_torch_load(path: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a file needing more raises ``CheckpointError`` saying why/what to do."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        err = refusal(str(path))
        raise err from e


def load_legacy(path: str, map_location="cpu"):
    """Load a ``legacy`` checkpoint with a scoped allow-list of ``LEGACY_GLOBALS`` (never unsafe files)."""
    kind, names = classify(path)
    if kind == "unsafe":
        raise refusal(path)
    allowed = [_resolve(n) for n in sorted(set(names))]
    if "numpy.dtype" in names:  # a dtype's BUILD names its concrete DType class, not listed as a global
        import numpy as np
        allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=map_location, weights_only=True)
