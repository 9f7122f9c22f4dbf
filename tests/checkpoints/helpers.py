"""Checkpoint variants built from the reference fixtures in tmp dirs (no new binaries committed)."""
import argparse
import os
import shutil

import numpy as np
import torch

from ..conftest import FIXTURES

REF = FIXTURES / "ref_ckpt"
ALL = ["audio_default_pc1", "audio_ln_pc5", "text_head1", "text_head2", "vision", "v2_audio", "v2_text", "v2_image"]


def ref_state(name):
    return torch.load(REF / f"{name}.pt", map_location="cpu", weights_only=True)


def data_dir(tmp_path):
    """A task data dir good for every fixture (text tasks need dict.txt)."""
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    shutil.copy(REF / "text_dict.txt", d / "dict.txt")
    return d


def teacher_key(state):
    return "encoder._ema" if "encoder._ema" in state["model"] else "_ema"


def variant(name, dst, strip_ema=False, strip_optimizer=False, unknown=False, drop_known=None):
    sd = ref_state(name)
    if strip_ema:
        del sd["model"][teacher_key(sd)]
    if strip_optimizer:
        for k in ("optimizer_history", "last_optimizer_state", "extra_state", "criterion"):
            sd.pop(k, None)
    if unknown:
        sd["cfg"]["model"]["debug_only_option"] = 1
        sd["cfg"]["task"]["eval_wer"] = True
    if drop_known:
        del sd["cfg"]["model"][drop_known]
    torch.save(sd, dst)
    return dst


def legacy(name, dst):
    """Pre-hydra layout: an argparse.Namespace in ``args`` (no ``cfg``) and numpy scalars in the state. Models with
    nested configs (text: ``model.transformer``) never had an ``args`` form: their ``cfg`` is kept but pickled as
    an omegaconf ``DictConfig`` (fairseq 0.10-0.12 style)."""
    sd = ref_state(name)
    if isinstance(sd["cfg"]["model"].get("transformer"), dict):
        from omegaconf import OmegaConf
        sd["cfg"] = OmegaConf.create(sd["cfg"])
        sd["extra_state"]["best_loss"] = np.float64(1.25)
        sd["optimizer_history"][-1]["num_updates"] = np.int64(3)
        torch.save(sd, dst)
        return dst
    cfg = sd.pop("cfg")
    flat = {}
    for sec in ("common", "dataset", "distributed_training", "optimization", "checkpoint", "task", "model",
                "criterion"):
        flat.update({k: v for k, v in (cfg.get(sec) or {}).items() if k != "_name"})
    flat.update(task=cfg["task"]["_name"], arch=cfg["model"]["_name"], criterion=cfg["criterion"]["_name"],
                optimizer=cfg["optimizer"]["_name"], lr_scheduler=cfg["lr_scheduler"]["_name"])
    sd["args"] = argparse.Namespace(**flat)
    sd["extra_state"]["best_loss"] = np.float64(1.25)
    sd["optimizer_history"][-1]["num_updates"] = np.int64(3)
    torch.save(sd, dst)
    return dst


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious(name, dst, marker):
    """A normal-looking checkpoint whose pickle would run ``touch MARKER`` if fully unpickled."""
    sd = ref_state(name)
    sd["extra_state"]["payload"] = _Payload(marker)
    torch.save(sd, dst)
    return dst


@torch.no_grad()
def ref_features(model, name):
    """The features recorded in ``<name>.expected.pt`` (same call as the reference) and ours."""
    exp = torch.load(REF / f"{name}.expected.pt", weights_only=True)
    inp, m = exp["inputs"], model.eval()
    if name.startswith("audio"):
        out = m.extract_features(inp["source"], None, mask=False)["x"]
    elif name.startswith("text"):
        out = m(inp["src_tokens"], features_only=True)[0]
    elif name == "vision":
        out = m(inp["img"], mask=False)
    elif name == "v2_audio":
        out = m.extract_features(inp["source"], mode="AUDIO", padding_mask=None, mask=False)["x"]
    elif name == "v2_text":
        src = inp["src_tokens"]
        out = m.extract_features(src, mode="TEXT", padding_mask=src.eq(1), mask=False)["x"]
    else:
        out = m.extract_features(inp["img"], mode="IMAGE", mask=False)["x"]
    return out, exp["features"]
