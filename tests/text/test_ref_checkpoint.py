"""Real reference checkpoints (tests/fixtures/ref_ckpt/text_head{1,2}.pt, task masked_lm, criterion model) load
through ``checkpoint_utils.load_model_ensemble_and_task`` with the plugin registered, teacher included, and give
the reference's features."""
import shutil
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils

import data2vec_plugin  # noqa: F401  (registers data2vec_text)

REF = Path(__file__).resolve().parents[1] / "fixtures" / "ref_ckpt"


@pytest.mark.parametrize("name", ["text_head1", "text_head2"])
def test_reference_checkpoint_loads_with_teacher_and_features(name, tmp_path):
    ckpt, expected = REF / f"{name}.pt", REF / f"{name}.expected.pt"
    if not (ckpt.exists() and expected.exists() and (REF / "text_dict.txt").exists()):
        pytest.skip("reference checkpoints not generated")
    shutil.copy(REF / "text_dict.txt", tmp_path / "dict.txt")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                     arg_overrides={"data": str(tmp_path)})
    model = models[0].eval()
    assert type(model).__module__.startswith("data2vec_plugin") and cfg.task._name == "masked_lm"
    exp = torch.load(expected, weights_only=False)
    with torch.no_grad():
        feats = model(exp["inputs"]["src_tokens"], features_only=True)[0]
    assert (feats - exp["features"]).abs().max() <= 1e-5
    saved = torch.load(ckpt, weights_only=False)["model"]["encoder._ema"]
    ours = model.state_dict()["encoder._ema"]
    assert set(ours) == set(saved)
    assert all(torch.equal(ours[k], saved[k].to(ours[k].dtype)) for k in saved)
    assert model.encoder.teacher is not None and model.encoder.regression_head is not None
