"""``fairseq.checkpoint_utils.load_checkpoint_to_cpu`` with the plugin's safety and compatibility rules.

Same steps as fairseq's function (local path, ``torch.load``, ``args``/``cfg`` overrides, ``_upgrade_state_dict``),
except:
* the load is ``torch.load(weights_only=True)`` explicitly; a file that needs more is refused with a
  ``CheckpointError`` naming ``d2v-convert`` (legacy) or the dangerous globals (unsafe);
* checkpoints without ``optimizer_history`` / ``extra_state`` (stripped for release) get empty ones instead of
  fairseq's ``KeyError: 'best_loss'``;
* config keys the installed model/task dataclasses do not know are dropped with a warning listing them (fairseq
  drops them silently or fails with ``ConfigKeyError``); keys the file lacks take the dataclass defaults.
Installed once by ``data2vec_plugin.safe_load.register_safe_globals``.
"""
import logging
import os
from dataclasses import fields, is_dataclass
from typing import List

from .formats import safe_torch_load

logger = logging.getLogger(__name__)
_installed = False


def _unknown(section, dc_cls, prefix: str) -> List[str]:
    if not isinstance(section, dict) or not is_dataclass(dc_cls):
        return []
    known = {f.name: f for f in fields(dc_cls)}
    out = []
    for k in list(section):
        if k == "_name":
            continue
        if k not in known:
            out.append(prefix + k)
            continue
        default = known[k].default_factory() if callable(known[k].default_factory) else known[k].default
        if isinstance(section[k], dict) and is_dataclass(default):
            out += _unknown(section[k], type(default), f"{prefix}{k}.")
    return out


def drop_unknown_cfg_keys(cfg: dict, path: str = "") -> List[str]:
    """Remove (in place) ``cfg.model``/``cfg.task`` keys unknown to the registered dataclasses; warn; return them."""
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    dropped = []
    for name, registry in (("model", MODEL_DATACLASS_REGISTRY), ("task", TASK_DATACLASS_REGISTRY)):
        section = cfg.get(name) if isinstance(cfg, dict) else None
        if isinstance(section, dict) and section.get("_name") in registry:
            found = _unknown(section, registry[section["_name"]], f"{name}.")
            for key in found:
                _pop_path(section, key[len(name) + 1:].split("."))
            dropped += found
    if dropped:
        logger.warning(f"{path}: config keys unknown to the installed plugin/fairseq were dropped: {dropped}")
    return dropped


def _pop_path(d: dict, parts: List[str]) -> None:
    for p in parts[:-1]:
        d = d[p]
    d.pop(parts[-1], None)


def fill_missing_state(state: dict) -> dict:
    """Release-stripped checkpoints: add the bookkeeping entries fairseq's upgrade step requires."""
    if "optimizer_history" not in state or not state["optimizer_history"]:
        state["optimizer_history"] = [{"criterion_name": None, "optimizer_name": None, "lr_scheduler_state": {},
                                       "num_updates": 0}]
        state.setdefault("last_optimizer_state", None)
        state.pop("optimizer", None)
        state.pop("best_loss", None)
    if not isinstance(state.get("extra_state"), dict):
        state["extra_state"] = {}
    return state


def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager
    from omegaconf import OmegaConf
    local_path = PathManager.get_local_path(path)
    if local_path != path and PathManager.path_requires_pathmanager(path):  # stale cached remote copy (fairseq)
        try:
            os.remove(local_path)
        except FileNotFoundError:
            pass
        if load_on_all_ranks:
            import torch
            torch.distributed.barrier()
        local_path = PathManager.get_local_path(path)
    state = fill_missing_state(safe_torch_load(local_path))
    if state.get("args") is not None and arg_overrides is not None:
        for name, val in arg_overrides.items():
            setattr(state["args"], name, val)
    if state.get("cfg") is not None:
        if isinstance(state["cfg"], dict):
            drop_unknown_cfg_keys(state["cfg"], str(path))
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides is not None:
            checkpoint_utils.overwrite_args_by_name(state["cfg"], arg_overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def install() -> None:
    """Route fairseq's checkpoint reads (model loading, ``--restore-file``, fine-tuning ``w2v_path``) here."""
    global _installed
    if _installed:
        return
    from fairseq import checkpoint_utils
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
    _installed = True
