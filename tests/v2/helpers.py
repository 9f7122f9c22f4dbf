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
