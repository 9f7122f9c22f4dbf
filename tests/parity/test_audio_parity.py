"""Our data2vec_audio, loaded with reference weights, reproduces the reference's features, targets and loss."""
import pytest
import torch

from .helpers import build_from_reference_cfg, load_fixture, max_diff
from data2vec_plugin.models._audio_config import Data2VecAudioConfig
from data2vec_plugin.models.data2vec_audio import Data2VecAudioModel
from data2vec_plugin.modules.losses import regression_loss

TOL = 1e-5


def model_for(fx, **over):
    m = build_from_reference_cfg(Data2VecAudioModel, Data2VecAudioConfig, fx["model_cfg"], **over)
    m.load_state_dict(fx["state_dict"], strict=True)
    return m.eval()


@pytest.mark.parametrize("name", ["audio_default_pc1", "audio_ln_pc5"])
def test_features_match_reference(name):
    fx = load_fixture(name)
    m = model_for(fx)
    inp, exp = fx["inputs"], fx["expected"]
    with torch.no_grad():
        res = m.extract_features(inp["source"], inp["padding_mask"], mask=False)
        single = m.extract_features(inp["source"][:1], None, mask=False)["x"]
    valid = ~exp["frame_padding_mask"]
    assert torch.equal(res["padding_mask"], exp["frame_padding_mask"])
    assert max_diff(res["x"][valid], exp["features"][valid]) <= TOL
    assert max_diff(single, exp["features_single_unpadded"]) <= TOL
    for i, ffn in enumerate(exp["layer_results"]["ffn"]):
        assert max_diff(res["layer_results"][i][valid], ffn.transpose(0, 1)[valid]) <= TOL


@pytest.mark.parametrize("name", ["audio_default_pc1", "audio_ln_pc5"])
def test_targets_predictions_and_loss_match_reference(name):
    fx = load_fixture(name)
    m = model_for(fx, target_norm_ignores_padding=False)  # reproduce the reference's padded statistics
    inp, exp, mask = fx["inputs"], fx["expected"], fx["mask"]
    with torch.no_grad():
        out = m(inp["source"], padding_mask=inp["padding_mask"], mask_indices=mask)
    pred, target = out["pred"][mask], out["target"][mask]
    assert max_diff(target, exp["targets"]) <= TOL
    assert max_diff(pred, exp["pred"]) <= TOL
    loss = regression_loss(pred, target, out["loss_beta"], out["loss_scale"]).sum()
    assert abs(loss.item() - exp["loss"].item()) <= TOL * max(1.0, abs(exp["loss"].item()))
    assert int(mask.sum()) == exp["sample_size"]


def test_padding_aware_targets_differ_only_in_padded_rows():
    fx = load_fixture("audio_default_pc1")
    inp, mask = fx["inputs"], fx["mask"]
    with torch.no_grad():
        fixed = model_for(fx)(inp["source"], padding_mask=inp["padding_mask"], mask_indices=mask)["target"]
        ref = model_for(fx, target_norm_ignores_padding=False)(
            inp["source"], padding_mask=inp["padding_mask"], mask_indices=mask)["target"]
    assert max_diff(fixed[0], ref[0]) <= TOL  # unpadded row: identical
    assert max_diff(fixed[1], ref[1]) > 1e-3  # padded row: statistics no longer include padding
