"""data2vec 2.0 image transformer decoders (``transformer_decoder`` / ``enc_dec_transformer``): shapes, reference
state-dict layout, decoder inputs, training, and fine-tuning surgery. Numerical parity with the reference is in
test_parity.py (fixtures ``v2_image_tdec`` / ``v2_image_encdec``)."""
import copy

import pytest
import torch
from omegaconf import OmegaConf

from data2vec_plugin.models.data2vec_multi_classification_backbone import build_backbone, load_backbone
from data2vec_plugin.modules.v2_blocks import AltBlock, BlockEncoder
from data2vec_plugin.modules.v2_modality import make_mask_info
from data2vec_plugin.modules.v2_transformer_decoders import (EncDecAttention, EncDecTransformerDecoder,
                                                             TransformerDecoder)

from .helpers import FakeTask, load_fixture, make_cfg, model_from_fixture, tiny_input, tiny_raw

KINDS = {"tdec": (True, False), "encdec": (True, True)}
FIXTURES = {"tdec": "v2_image_tdec", "encdec": "v2_image_encdec"}


def raw_cfg(kind: str, **image):
    tdec, enc_dec = KINDS[kind]
    raw = tiny_raw("IMAGE", clone_batch=2)
    img = raw["modalities"]["image"]
    img.update(transformer_decoder=tdec, enc_dec_transformer=enc_dec, **image)
    img["decoder"] = dict(img["decoder"], add_positions_all=enc_dec, add_positions_masked=not enc_dec)
    return raw


def tiny(kind: str, **image):
    from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel
    return Data2VecMultiModel.build_model(make_cfg(raw_cfg(kind, **image)), FakeTask())


def fixed_mask(rows: int, t: int = 16, masked: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(rows, t, dtype=torch.bool)
    for r in range(rows):
        m[r, torch.randperm(t, generator=g)[:masked]] = True
    return m


# ------------------------------------------------------------------------------------------------ modules
def test_transformer_decoder_shapes():
    blocks = torch.nn.ModuleList(AltBlock(16, 8, 2.0) for _ in range(2))
    dec = TransformerDecoder(32, 16, BlockEncoder(blocks, None, False, 0.0, 0.0))
    assert dec(torch.randn(3, 16, 32)).shape == (3, 16, 32)


def test_enc_dec_decoder_shapes_and_first_block_without_residual():
    dec = EncDecTransformerDecoder(32, 16, 3)
    assert [b.first_residual for b in dec.blocks] == [False, True, True]
    assert dec(torch.randn(3, 5, 32), torch.randn(3, 7, 32)).shape == (3, 5, 32)


def test_enc_dec_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = EncDecAttention(16, 32, 8)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 32)
    qh = attn.q_proj(q).view(2, 5, 8, 2).transpose(1, 2) * 2 ** -0.5
    k, v = attn.kv_proj(kv).view(2, 7, 2, 8, 2).permute(2, 0, 3, 1, 4)
    ref = ((qh @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attn(q, kv), attn.proj(ref), atol=1e-6, rtol=0)


def test_decoder_dim_must_split_into_8_heads():
    with pytest.raises(ValueError, match="divisible"):
        EncDecTransformerDecoder(32, 12, 1)


# ------------------------------------------------------------------------------------------- model wiring
@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_keys_and_shapes_equal_reference(kind):
    fx = load_fixture(FIXTURES[kind])
    from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel
    model = Data2VecMultiModel.build_model(make_cfg(fx["model_cfg"]), FakeTask())
    ours, ref = model.state_dict(), fx["state_dict"]
    assert set(ours) == set(ref)
    for k, v in ref.items():
        if k != "_ema":
            assert ours[k].shape == v.shape, k
    dec_keys = {k for k in ref if ".decoder." in k}
    expected = {"encdec": "modality_encoders.IMAGE.decoder.blocks.1.attn.kv_proj.weight",
                "tdec": "modality_encoders.IMAGE.decoder.encoder.blocks.1.attn.qkv.weight"}[kind]
    assert expected in dec_keys and "modality_encoders.IMAGE.decoder.input_proj.weight" in dec_keys
    assert not any("decoder" in k for k in ref["_ema"]) and not any("decoder" in k for k in ours["_ema"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_decoder_init_is_bert(kind):
    dec = tiny(kind).modality_encoders["IMAGE"].decoder
    w = torch.cat([m.weight.flatten() for m in dec.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(w.std().item() - 0.02) < 0.003
    assert all(m.bias.abs().max() == 0 for m in dec.modules() if isinstance(m, torch.nn.Linear))


def test_enc_dec_input_is_masked_positions_and_kept_tokens():
    model = tiny("encdec").eval()
    enc = model.modality_encoders["IMAGE"]
    mask = fixed_mask(4)
    info = make_mask_info(mask)
    x = torch.randn(4, 1 + 4, 32)
    q, kv = enc.enc_dec_input(x, info)
    pos = enc.fixed_positional_encoder.positions.expand(4, -1, -1)
    torch.testing.assert_close(q, pos[mask].view(4, 12, 32))  # reference: pos[mask] (row-major)
    torch.testing.assert_close(kv, x[:, 1:] + pos[~mask].view(4, 4, 32))


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_prediction_row_per_masked_patch(kind):
    model = tiny(kind).eval()
    enc = model.modality_encoders["IMAGE"]
    rows = []
    enc.decoder.register_forward_hook(lambda m, i, o: rows.append(o.shape))
    mask = fixed_mask(4)
    with torch.no_grad():
        out = model(tiny_input("IMAGE"), mask=True, precomputed_mask=mask)
    assert out["losses"]["IMAGE_regression"].shape == (int(mask.sum()), 32) == (48, 32)
    assert out["sample_size"] == 48
    assert rows == [(4, 12, 32) if kind == "encdec" else (4, 16, 32)]


def test_enc_dec_needs_fixed_positions():
    with pytest.raises(ValueError, match="fixed_positions"):
        tiny("encdec", fixed_positions=False)


def test_enc_dec_without_transformer_decoder_keeps_conv_decoder():
    raw = raw_cfg("encdec")
    raw["modalities"]["image"]["transformer_decoder"] = False
    from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel
    model = Data2VecMultiModel.build_model(make_cfg(raw), FakeTask())
    assert type(model.modality_encoders["IMAGE"].decoder).__name__ == "ConvDecoder"


@pytest.mark.parametrize("kind", list(KINDS))
def test_training_steps_reduce_the_loss(kind):
    torch.manual_seed(0)
    model = tiny(kind).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    x, mask = tiny_input("IMAGE"), fixed_mask(4)
    losses = []
    for _ in range(6):
        out = model(x, mask=True, precomputed_mask=mask)
        loss = sum(v.sum() for v in out["losses"].values()) / out["sample_size"]
        opt.zero_grad()
        loss.backward()
        dec_grads = [p.grad for p in model.modality_encoders["IMAGE"].decoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in dec_grads)
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


# ---------------------------------------------------------------------------------------------- fine-tuning
@pytest.mark.parametrize("kind", list(KINDS))
def test_remove_pretraining_modules_drops_the_decoder(kind):
    fx = load_fixture(FIXTURES[kind])
    model = model_from_fixture(fx).eval()
    with torch.no_grad():
        before = model.extract_features(fx["inputs"]["source"], mask=False)["x"]
    model.remove_pretraining_modules(modality="image")
    assert model.teacher is None and model.modality_encoders["IMAGE"].decoder is None
    model.load_state_dict(copy.deepcopy(fx["state_dict"]))  # decoder keys ignored, _ema dropped
    assert not any(".decoder." in k for k in model.state_dict())
    with torch.no_grad():
        after = model.extract_features(fx["inputs"]["source"], mask=False)["x"]
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("kind", list(KINDS))
def test_image_finetuning_backbone_from_transformer_decoder_checkpoint(kind):
    fx = load_fixture(FIXTURES[kind])
    args = OmegaConf.create({"model": fx["model_cfg"]})
    backbone = build_backbone(args, "IMAGE")
    assert backbone.modality_encoders["IMAGE"].decoder is None
    load_backbone(backbone, {"model": copy.deepcopy(fx["state_dict"])}, "IMAGE")  # strict, decoder keys dropped
    with torch.no_grad():
        x = backbone.eval().extract_features(fx["inputs"]["source"], mask=False)["x"]
    torch.testing.assert_close(x, fx["expected"]["features"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_image_classifier_from_transformer_decoder_checkpoint(kind, tmp_path):
    from data2vec_plugin.models.data2vec_multi_image_classification import (
        Data2VecMultiImageClassificationConfig, Data2VecMultiImageClassifier)
    fx = load_fixture(FIXTURES[kind])
    ckpt = {"cfg": {"model": fx["model_cfg"]}, "model": fx["state_dict"], "args": None,
            "optimizer_history": [{"criterion_name": "model", "optimizer_name": "adam", "lr_scheduler_state": {},
                                   "num_updates": 0}], "extra_state": {"train_iterator": None}}
    torch.save(ckpt, tmp_path / "pre.pt")
    clf = Data2VecMultiImageClassifier(OmegaConf.structured(Data2VecMultiImageClassificationConfig(
        model_path=str(tmp_path / "pre.pt"), num_classes=4)))
    assert clf.model.modality_encoders["IMAGE"].decoder is None
    assert not any("decoder" in k for k in clf.state_dict())
    assert clf.eval().logits(fx["inputs"]["source"]).shape == (2, 4)
