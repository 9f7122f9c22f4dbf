"""Reference checkpoints and their variants load through fairseq's own loader with the plugin imported."""
import logging

import pytest
import torch
from fairseq import checkpoint_utils

import data2vec_plugin  # noqa: F401

from .helpers import ALL, data_dir, ref_state, ref_features, teacher_key, variant


def load(path, tmp_path):
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)],
                                                                     arg_overrides={"data": str(data_dir(tmp_path))})
    return models[0]


def teacher_state(model):
    sd = model.state_dict()
    return sd.get("encoder._ema", sd.get("_ema"))


@pytest.mark.parametrize("name", ALL)
def test_reference_checkpoint_loads_with_teacher(name, tmp_path):
    from .helpers import REF
    m = load(REF / f"{name}.pt", tmp_path)
    assert type(m).__module__.startswith("data2vec_plugin")
    ours, expected = ref_features(m, name)
    assert (ours - expected).abs().max() <= 1e-5
    saved = ref_state(name)["model"][teacher_key(ref_state(name))]
    mine = teacher_state(m)
    if mine is not None:  # teacher restored from the file, not re-initialised
        assert all(torch.equal(mine[k], saved[k].to(mine[k].dtype)) for k in saved if k in mine)


@pytest.mark.parametrize("name", ALL)
def test_stripped_variant_with_unknown_and_missing_keys(name, tmp_path, caplog):
    """No ``_ema``, no optimizer_history/extra_state, unknown cfg keys (dropped with a warning listing them) and a
    known key missing (dataclass default)."""
    path = variant(name, tmp_path / "v.pt", strip_ema=True, strip_optimizer=True, unknown=True,
                   drop_known="ema_decay")
    with caplog.at_level(logging.WARNING):
        m = load(path, tmp_path)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "model.debug_only_option" in warned and "task.eval_wer" in warned
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    assert m.cfg.ema_decay == MODEL_DATACLASS_REGISTRY[ref_state(name)["cfg"]["model"]["_name"]]().ema_decay
    ours, expected = ref_features(m, name)
    assert (ours - expected).abs().max() <= 1e-5


def test_unknown_nested_text_key_is_dropped(tmp_path, caplog):
    sd = ref_state("text_head1")
    sd["cfg"]["model"]["transformer"]["encoder"]["old_flag"] = 3
    torch.save(sd, tmp_path / "t.pt")
    with caplog.at_level(logging.WARNING):
        load(tmp_path / "t.pt", tmp_path)
    assert "model.transformer.encoder.old_flag" in caplog.text
