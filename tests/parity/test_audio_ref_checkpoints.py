"""Checkpoints written by the reference trainer load through fairseq's loader with the plugin registered."""
import pytest
import torch

from ..conftest import FIXTURES
from .helpers import max_diff


@pytest.mark.parametrize("name", ["audio_default_pc1", "audio_ln_pc5"])
def test_reference_checkpoint_loads_and_matches_features(name, tmp_path):
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    path = FIXTURES / "ref_ckpt" / f"{name}.pt"
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)],
                                                                     arg_overrides={"data": str(tmp_path)})
    m = models[0].eval()
    assert type(m).__module__.startswith("data2vec_plugin")
    raw = torch.load(path, map_location="cpu", weights_only=True)["model"]
    for k, v in m.teacher.state_dict().items():  # the reference teacher is restored, not re-initialised
        assert torch.equal(v, raw["_ema"][k].to(v.dtype)), k
    exp = torch.load(FIXTURES / "ref_ckpt" / f"{name}.expected.pt", weights_only=True)
    with torch.no_grad():
        feats = m.extract_features(exp["inputs"]["source"], None, mask=False)["x"]
    assert max_diff(feats, exp["features"]) <= 1e-5
    # and it keeps training: a pretraining forward with a data-pipeline mask works on the loaded model
    mask = torch.zeros(feats.shape[:2], dtype=torch.bool)
    mask[:, 10:30] = True
    out = m.train()(exp["inputs"]["source"], mask_indices=mask)
    assert torch.isfinite(out["pred"]).all() and torch.isfinite(out["target"]).all()
