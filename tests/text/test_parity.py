"""Parity with the reference ``data2vec_text`` (fixtures from tests/fixtures/parity/text_head{1,2}.pt).

Same weights and tokens give the same student features, inner states, head outputs and teacher targets.
Teacher targets are compared with both teachers fed the full original sentence (``full_teacher_input``). Row 0
has no padding and matches exactly; row 1 is padded and the reference's instance norm counts pad positions in its
statistics, which the plugin excludes: the test reproduces the reference value by normalising the plugin's
teacher layer outputs with pads included, and checks the plugin's own value is padding-invariant.
"""
import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from data2vec_plugin.models._text_config import Data2VecTextConfig
from data2vec_plugin.models.data2vec_text import Data2VecTextModel
from data2vec_plugin.modules.losses import masked_regression_loss
from data2vec_plugin.modules.transformer import attention_mask_from_padding

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

TOL = 1e-5
NAMES = ["text_head1", "text_head2"]


def load(name, regress="mask_token"):
    path = FIXTURES / "parity" / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"{path} not generated yet")
    fx = torch.load(path, weights_only=False)
    d = Dictionary()
    for s in fx["dict_symbols"][d.nspecial:]:
        d.add_symbol(s)

    class Task:
        source_dictionary = d

    cfg = merge_with_parent(Data2VecTextConfig(), OmegaConf.create(fx["model_cfg"]), remove_missing=True)
    cfg.regress_positions = regress
    model = Data2VecTextModel.build_model(cfg, Task())
    model.load_state_dict(fx["state_dict"])
    return fx, model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_match_reference(name):
    fx, model = load(name)
    ours = model.state_dict()
    assert set(ours) == set(fx["state_dict"])
    assert set(ours["encoder._ema"]) == set(fx["state_dict"]["encoder._ema"])
    for k, v in fx["state_dict"]["encoder._ema"].items():
        assert torch.equal(ours["encoder._ema"][k], v.to(ours["encoder._ema"][k].dtype)), k


@pytest.mark.parametrize("name", NAMES)
def test_student_features_and_inner_states(name):
    fx, model = load(name)
    inp, exp = fx["inputs"], fx["expected"]
    real = inp["src_tokens_orig"].ne(1)
    with torch.no_grad():
        feats, extra = model(inp["src_tokens_orig"], features_only=True, return_all_hiddens=True)
        masked_feats, _ = model(inp["src_tokens"], features_only=True)
    assert (feats - exp["features"])[real].abs().max() <= TOL
    assert (masked_feats - exp["features_masked_input"])[real].abs().max() <= TOL
    assert len(extra["inner_states"]) == len(exp["inner_states"])
    for a, b in zip(extra["inner_states"], exp["inner_states"]):
        assert (a - b).transpose(0, 1)[real].abs().max() <= TOL


def reference_style_targets(model, tokens):
    """Teacher targets with the reference's statistics: pad positions included in instance norm."""
    teacher, cfg = model.encoder.teacher.module, model.cfg
    x, _, pad = teacher.embed(tokens)
    outs = []
    for layer in teacher.layers:
        x, ffn = layer(x, attention_mask_from_padding(pad))
        outs.append(ffn)
    ys = []
    for y in outs[-cfg.average_top_k_layers:]:
        if cfg.instance_norm_target_layer:
            y = F.instance_norm(y.transpose(1, 2)).transpose(1, 2)
        if cfg.layer_norm_target_layer:
            y = F.layer_norm(y, y.shape[-1:])
        ys.append(y)
    return sum(ys) / len(ys)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pred_targets_loss_with_full_teacher_input(name, mode):
    fx, model = load(name)
    inp, exp = fx["inputs"], fx["expected"]["full_teacher_input"]
    exp = exp["train_mode"] if mode == "train" else exp
    model.train(mode == "train")
    with torch.no_grad():
        out = model(inp["src_tokens"], target_tokens=fx["expected"]["full_teacher_input"]["target_tokens"],
                    src_lengths=inp["src_lengths"])
        ref_style = reference_style_targets(model, inp["src_tokens_orig"])
    mask = out["mask"]
    assert torch.equal(mask, fx["mask"]) and int(mask.sum()) == exp["sample_size"]
    assert (out["pred"][mask] - exp["pred"]).abs().max() <= TOL
    n0 = int(mask[0].sum())
    assert (out["target"][mask][:n0] - exp["targets"][:n0]).abs().max() <= TOL  # unpadded row: exact
    assert (ref_style[mask] - exp["targets"]).abs().max() <= TOL                  # all rows, reference stats
    loss = masked_regression_loss(out["pred"], ref_style, mask, out["loss_beta"], out["loss_scale"])
    assert abs(float(loss) - float(exp["loss"])) <= 1e-4 * max(1.0, abs(float(exp["loss"])))


@pytest.mark.parametrize("name", NAMES)
def test_teacher_sees_full_sentence_from_mlm_target_stream(name):
    """Bug B4 fixed: given the masked_lm target stream (pads at unmasked positions) the teacher still encodes
    the original sentence, and the plugin's targets do not depend on padding."""
    fx, model = load(name)
    inp = fx["inputs"]
    with torch.no_grad():
        full = model(inp["src_tokens"], target_tokens=inp["src_tokens_orig"])
        stream = model(inp["src_tokens"], target_tokens=inp["target_tokens"])
        row1 = model(inp["src_tokens"][1:, :9], target_tokens=inp["target_tokens"][1:, :9])
    assert torch.equal(full["target"], stream["target"])
    assert (stream["target"][1, :9] - row1["target"][0]).abs().max() <= TOL
    assert not torch.allclose(stream["target"][fx["mask"]], fx["expected"]["targets"], atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_selected_positions_default_regresses_every_selected_token(name):
    fx, model = load(name, regress="selected")
    inp = fx["inputs"]
    stream = inp["target_tokens"].clone()
    stream[0, 6] = inp["src_tokens_orig"][0, 6]  # an "unchanged" selected token
    with torch.no_grad():
        out = model(inp["src_tokens"], target_tokens=stream)
    expected = fx["mask"].clone()
    expected[0, 6] = True
    assert torch.equal(out["mask"], expected)
