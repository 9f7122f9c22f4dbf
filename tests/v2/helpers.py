"""Helpers for the data2vec 2.0 tests: build models from fixture configs, tiny configs."""
import copy
from pathlib import Path

import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf

from data2vec_plugin.models._v2_config import Data2VecMultiConfig
from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def load_fixture(name):
    return torch.load(FIX / "parity" / f"{name}.pt", weights_only=False)


def dictionary_from_symbols(symbols):
    """fairseq Dictionary whose symbols are exactly ``symbols`` (specials first, as stored in the fixtures)."""
    d = Dictionary()
    for s in symbols[len(d.symbols):]:
        d.add_symbol(s)
    assert d.symbols == list(symbols)
    return d


class FakeTask:
    def __init__(self, dictionary=None):
        self.source_dictionary = dictionary


def make_cfg(raw: dict):
    raw = copy.deepcopy(raw)
    return OmegaConf.merge(OmegaConf.structured(Data2VecMultiConfig), OmegaConf.create(raw))


def model_from_fixture(fx, dictionary=None):
    cfg = make_cfg(fx["model_cfg"])
    model = Data2VecMultiModel.build_model(cfg, FakeTask(dictionary))
    model.load_state_dict(copy.deepcopy(fx["state_dict"]))
    return model


def tiny_raw(modality: str, **over):
    """Tiny data2vec_multi config (2 blocks, 32 dims) for one modality, as a plain dict."""
    dec = {"decoder_dim": 16, "decoder_groups": 4, "decoder_kernel": 3, "decoder_layers": 2, "input_dropout": 0.0}
    mods = {
        "AUDIO": {"audio": {"feature_encoder_spec": "[(32, 10, 5)] + [(32, 3, 2)] * 2", "conv_pos_width": 12,
                            "conv_pos_groups": 4, "conv_pos_depth": 2, "prenet_depth": 0, "mask_prob": 0.5,
                            "mask_length": 5, "use_alibi_encoder": True, "learned_alibi_scale": True,
                            "learned_alibi_scale_per_head": True, "decoder": dec}},
        "IMAGE": {"image": {"input_size": 32, "patch_size": 8, "embed_dim": 32, "prenet_depth": 1,
                            "num_extra_tokens": 1, "init_extra_token_zero": False, "mask_prob": 0.8,
                            "mask_prob_adjust": 0.07, "mask_length": 3, "inverse_mask": True,
                            "ema_local_encoder": True, "decoder": dec}},
        "TEXT": {"text": {"max_source_positions": 32, "prenet_depth": 0, "mask_prob": 0.48, "mask_length": 1,
                          "decoder": dict(dec, decoder_dim=32, decoder_groups=1, decoder_residual=False,
                                          projection_layers=2)}},
    }
    raw = {"_name": "data2vec_multi", "depth": 2, "embed_dim": 32, "num_heads": 4, "mlp_ratio": 2.0,
           "clone_batch": 2, "average_top_k_layers": 2, "instance_norm_target_layer": True,
           "ema_anneal_end_step": 100, "max_update": 100, "seed": 1, "supported_modality": modality,
           "ema_encoder_only": modality == "TEXT", "encoder_dropout": 0.0, "post_mlp_drop": 0.0,
           "attention_dropout": 0.0, "modalities": mods[modality],
           "cls_loss": 0.01 if modality == "IMAGE" else 0.0, "layer_norm_targets": modality == "IMAGE"}
    raw.update(over)
    return raw


def tiny_model(modality: str, dictionary=None, **over):
    cfg = make_cfg(tiny_raw(modality, **over))
    return Data2VecMultiModel.build_model(cfg, FakeTask(dictionary))


def tiny_input(modality: str, b: int = 2):
    g = torch.Generator().manual_seed(0)
    if modality == "AUDIO":
        return torch.randn(b, 2000, generator=g)
    if modality == "IMAGE":
        return torch.randn(b, 3, 32, 32, generator=g)
    return torch.randint(4, 40, (b, 12), generator=g)
