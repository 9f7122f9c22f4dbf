"""Reference data2vec 2.0 training checkpoints load through fairseq's load_model_ensemble_and_task."""
import shutil

import pytest
import torch
from fairseq import checkpoint_utils

import data2vec_plugin  # noqa: F401
from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel

from .helpers import FIX

CKPT = FIX / "ref_ckpt"


@pytest.mark.parametrize("name", ["v2_audio", "v2_text", "v2_image"])
def test_reference_checkpoint_loads_with_teacher(name, tmp_path):
    shutil.copy(CKPT / "text_dict.txt", tmp_path / "dict.txt")
    exp = torch.load(CKPT / f"{name}.expected.pt", weights_only=False)
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(CKPT / f"{name}.pt")],
                                                                      arg_overrides={"data": str(tmp_path)})
    model = models[0].eval()
    assert isinstance(model, Data2VecMultiModel)
    inp = exp["inputs"]
    src = inp.get("source", inp.get("src_tokens", inp.get("img")))
    pad = src.eq(task.source_dictionary.pad()) if name == "v2_text" else None
    with torch.no_grad():
        x = model.extract_features(src, padding_mask=pad, mask=False)["x"]
    torch.testing.assert_close(x, exp["features"], atol=1e-5, rtol=0)
    saved = torch.load(CKPT / f"{name}.pt", weights_only=False)["model"]["_ema"]
    ours = model.teacher.state_dict()
    assert set(ours) == set(saved) and len(saved) == exp["n_teacher_tensors"]
    for k, v in saved.items():
        torch.testing.assert_close(ours[k], v.float())
