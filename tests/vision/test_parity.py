"""Parity with the reference data2vec_vision (fixtures produced by scripts/make_parity_fixtures.py and a real
reference training run, tests/fixtures/ref_ckpt/vision.pt): features, per-block outputs, targets, predictions and
loss on a fixed mask, <= 1e-5; state-dict and _ema layout; load_model_ensemble_and_task."""
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import FIXTURES

PARITY = FIXTURES / "parity"
REF_CKPT = FIXTURES / "ref_ckpt" / "vision.pt"
TOL = 1e-5


def load_fixture(name):
    path = PARITY / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"{path} not generated")
    return torch.load(path, weights_only=False)


def build(fx):
    import data2vec_plugin  # noqa: F401
    from fairseq.dataclass.utils import merge_with_parent
    from data2vec_plugin.models.data2vec_vision import Data2VecVisionConfig, Data2VecVisionModel
    cfg = merge_with_parent(Data2VecVisionConfig(), OmegaConf.create(fx["model_cfg"]), remove_missing=True)
    model = Data2VecVisionModel(cfg)
    model.load_state_dict(dict(fx["state_dict"]), strict=True)
    return model


@pytest.mark.parametrize("name", ["vision_eob", "vision_ffn"])
def test_reference_fixture_parity(name):
    from data2vec_plugin.modules.losses import masked_regression_loss
    fx = load_fixture(name)
    model = build(fx).eval()
    img, exp = fx["inputs"]["img"], fx["expected"]
    with torch.no_grad():
        assert (model(img, mask=False) - exp["features"]).abs().max() <= TOL
        blocks = model(img, mask=False, layer_results=True)
        assert len(blocks) == len(exp["layer_results"])
        for ours, ref in zip(blocks, exp["layer_results"]):
            assert (ours - ref).abs().max() <= TOL
        for train, ref in ((False, exp), (True, exp["train_mode"])):
            model.train(train)
            out = model(img, mask_indices=fx["mask"])
            m = out["mask"]
            assert m.sum() == ref["sample_size"]
            assert (out["target"][m] - ref["targets"]).abs().max() <= TOL  # rows ordered like x[mask]
            assert (out["pred"][m] - ref["pred"]).abs().max() <= TOL
            loss = masked_regression_loss(out["pred"], out["target"], m, out["loss_beta"], out["loss_scale"])
            assert abs(loss.item() - ref["loss"].item()) <= TOL * max(1.0, abs(ref["loss"].item()))
            if train:
                assert (model(img, mask=False) - ref["features"]).abs().max() <= TOL


def test_state_dict_layout_matches_reference():
    fx = load_fixture("vision_eob")
    model = build(fx)
    ours = model.state_dict()
    assert set(ours) == set(fx["state_dict"])
    assert set(ours["_ema"]) == set(fx["state_dict"]["_ema"])
    for k, v in fx["state_dict"].items():
        if k != "_ema":
            assert ours[k].shape == v.shape, k
    assert all(v.dtype == torch.float32 for v in ours["_ema"].values() if v.is_floating_point())
    assert ours["_ema"]["rel_pos_bias.relative_position_index"].dtype == torch.int64


def test_reference_checkpoint_loads_with_load_model_ensemble_and_task():
    if not REF_CKPT.exists():
        pytest.skip("reference checkpoint not generated")
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    from data2vec_plugin.models.data2vec_vision import Data2VecVisionModel
    from data2vec_plugin.tasks.image_pretraining import Data2VecImagePretrainingTask
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(REF_CKPT)])
    assert cfg.task._name == "image_pretraining" and isinstance(task, Data2VecImagePretrainingTask)
    model = models[0].eval()
    assert isinstance(model, Data2VecVisionModel)
    expected = torch.load(REF_CKPT.with_suffix(".expected.pt"), weights_only=False)
    with torch.no_grad():
        feats = model(expected["inputs"]["img"], mask=False)
    assert feats.shape == expected["features"].shape
    assert (feats - expected["features"]).abs().max() <= TOL
    ref_ema = torch.load(REF_CKPT, weights_only=False)["model"]["_ema"]
    teacher = model.teacher.state_dict()
    assert set(teacher) == set(ref_ema)
    assert all(torch.equal(teacher[k], ref_ema[k].to(teacher[k].dtype)) for k in teacher)


def test_classifier_fine_tunes_from_reference_checkpoint():
    """Reference B10: its classifier cannot strictly reload its own pretraining checkpoint; ours can."""
    if not REF_CKPT.exists():
        pytest.skip("reference checkpoint not generated")
    import data2vec_plugin  # noqa: F401
    from data2vec_plugin.models.data2vec_image_classification import (Data2VecImageClassificationConfig,
                                                                       Data2VecImageClassifier)
    cfg = OmegaConf.structured(Data2VecImageClassificationConfig(model_path=str(REF_CKPT), num_classes=3))
    clf = Data2VecImageClassifier(cfg).eval()
    ref = torch.load(REF_CKPT, weights_only=False)["model"]
    assert torch.equal(clf.model.encoder.blocks[1].attn.qkv.weight, ref["encoder.blocks.1.attn.qkv.weight"])
    with torch.no_grad():
        assert clf(torch.randn(2, 3, 32, 32)).shape == (2, 3)
