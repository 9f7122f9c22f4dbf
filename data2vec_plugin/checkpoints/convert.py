"""Rewrite any data2vec-world checkpoint into the safe format (loads with ``torch.load(weights_only=True)``).

* ``args`` (an ``argparse.Namespace`` of pre-hydra fairseq) is converted by fairseq's own
  ``checkpoint_utils._upgrade_state_dict`` (which calls ``convert_namespace_to_omegaconf``), stored as ``cfg``
  (a plain dict), and ``args`` is set to None;
* omegaconf containers become plain dicts/lists, numpy scalars become Python numbers, numpy arrays tensors;
* the model state (student, teacher ``_ema`` / ``encoder._ema``, heads) is kept as is;
* release-stripped files get an empty ``optimizer_history`` / ``extra_state``.
Legacy files are read with a scoped allow-list of known data classes (``formats.LEGACY_GLOBALS``), only when the
caller vouches for the source (``trust_source``); files referencing any other global are always refused.
"""
import argparse
import os
from typing import Any, Dict

import numpy as np
import torch

from .formats import CheckpointError, classify, load_legacy, refusal, safe_torch_load


def to_plain(obj: Any) -> Any:
    """Containers of tensors/str/numbers/None only (what ``weights_only`` accepts)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    if isinstance(obj, (DictConfig, ListConfig)):
        return to_plain(OmegaConf.to_container(obj, resolve=False))
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items()) if type(obj) is not dict \
            else {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def convert_state(state: Dict) -> Dict:
    import data2vec_plugin  # noqa: F401  (registers the models/tasks convert_namespace_to_omegaconf looks up)
    from fairseq.checkpoint_utils import _upgrade_state_dict

    from .fairseq_hook import drop_unknown_cfg_keys, fill_missing_state
    state = fill_missing_state(dict(state))
    if state.get("args") is not None:
        state = _upgrade_state_dict(state)  # fairseq's conversion: args -> cfg
        state["args"] = None
    state = to_plain(state)
    if isinstance(state.get("cfg"), dict):
        drop_unknown_cfg_keys(state["cfg"], "converted cfg")
    return state


def convert_checkpoint(src: str, dst: str, trust_source: bool = False) -> Dict[str, Any]:
    """Convert ``src`` into the safe format at ``dst`` (atomic write, verified weights-only). Returns a summary."""
    src, dst = str(src), str(dst)
    if not os.path.isfile(src):
        raise CheckpointError(f"{src}: no such checkpoint file")
    kind, names = classify(src)
    if kind == "unsafe":
        raise refusal(src)
    if kind == "legacy" and not trust_source:
        raise CheckpointError(f"{src}: legacy checkpoint (needs {sorted(set(names))}); loading it runs the "
                              "constructors of these data classes. If you trust where the file comes from, rerun "
                              f"with --trust-source: d2v-convert {src} {dst} --trust-source")
    state = load_legacy(src) if kind == "legacy" else safe_torch_load(src)
    had_args = state.get("args") is not None
    state = convert_state(state)
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        torch.load(tmp, map_location="cpu", weights_only=True)  # verify: the output is safe
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    model = state.get("model", {})
    return {"input_format": kind, "converted_args": had_args,
            "model": (state.get("cfg") or {}).get("model", {}).get("_name"),
            "teacher_tensors": sum(len(v) for k, v in model.items()
                                   if k.split(".")[-1] == "_ema" and isinstance(v, dict))}
