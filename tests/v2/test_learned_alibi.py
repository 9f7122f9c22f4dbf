"""data2vec 2.0 ``learned_alibi``: a learned (1, H, P, P) ALiBi table per modality encoder (``alibi_max_pos`` = P).

Reference facts (examples/data2vec/models/modalities/base.py): the table starts as the fixed ALiBi for P positions,
longer inputs replicate-pad it by ceil((T - P) / 2) on every side and crop to [:T, :T], and the teacher keeps its
own EMA copy when it mirrors the modality encoders (``ema_encoder_only=False``). Parity with the reference is in
test_parity.py (fixture ``v2_audio_learned_alibi``).
"""
import logging
import math

import pytest
import torch

from data2vec_plugin.modules.v2_blocks import alibi_table
from data2vec_plugin.modules.v2_modality import learned_alibi_bias

from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel

from .helpers import FakeTask, dictionary_from_symbols, load_fixture, make_cfg, tiny_input, tiny_raw

HEADS = 4        # tiny_raw: num_heads=4, num_alibi_heads defaults to it
MAX_POS = 20     # tiny audio input: 2000 samples -> 99 frames, so the table is padded
KEY = "modality_encoders.{}.alibi_bias"


def build(raw: dict, dictionary=None) -> Data2VecMultiModel:
    return Data2VecMultiModel.build_model(make_cfg(raw), FakeTask(dictionary))


def learned(mode: str = "AUDIO", max_pos=MAX_POS, dictionary=None, **over) -> Data2VecMultiModel:
    """Tiny model whose ``mode`` encoder uses a learned ALiBi table of ``max_pos`` positions."""
    raw = tiny_raw(mode, **over)
    raw["modalities"][mode.lower()].update(use_alibi_encoder=True, learned_alibi=True, alibi_max_pos=max_pos)
    return build(raw, dictionary)


def total(out) -> torch.Tensor:
    return sum(v.float().sum() for v in out["losses"].values())


def test_parameter_key_shape_and_teacher_copy():
    model = learned(ema_encoder_only=False)
    sd = model.state_dict()
    assert sd[KEY.format("AUDIO")].shape == (1, HEADS, MAX_POS, MAX_POS)
    assert sd["_ema"][KEY.format("AUDIO")].shape == (1, HEADS, MAX_POS, MAX_POS)
    enc = model.modality_encoders["AUDIO"]
    assert enc.alibi_bias.requires_grad and any(p is enc.alibi_bias for p in model.parameters())


def test_teacher_of_blocks_only_has_no_table():
    model = learned(ema_encoder_only=True)
    assert KEY.format("AUDIO") in model.state_dict()
    assert not any("alibi_bias" in k for k in model.state_dict()["_ema"])


def test_table_starts_as_fixed_alibi():
    enc = learned().modality_encoders["AUDIO"]
    torch.testing.assert_close(enc.alibi_bias.detach()[0], alibi_table(MAX_POS, HEADS), rtol=0, atol=0)


def test_short_sequences_crop_the_table():
    table = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(learned_alibi_bias(table, 4), table[0, :, :4, :4])
    torch.testing.assert_close(learned_alibi_bias(table, 6), table[0])


@pytest.mark.parametrize("positions", [7, 9, 10])
def test_long_sequences_replicate_pad_the_table(positions):
    p = 6
    table = torch.randn(1, 2, p, p)
    pad = math.ceil((positions - p) / 2)
    idx = (torch.arange(positions) - pad).clamp(0, p - 1)  # replicate padding = clamped source index
    expected = table[0][:, idx][:, :, idx]
    torch.testing.assert_close(learned_alibi_bias(table, positions), expected, rtol=0, atol=0)


def test_encoder_uses_the_padded_learned_table():
    enc = learned().modality_encoders["AUDIO"]
    with torch.no_grad():
        enc.alibi_bias.add_(torch.randn_like(enc.alibi_bias))
    t = 99
    g = torch.Generator().manual_seed(0)
    keep = torch.stack([torch.randperm(t, generator=g)[:40].sort().values for _ in range(2)])  # (B, K) kept
    got = enc._alibi(t, 2, keep, torch.device("cpu"))
    full = learned_alibi_bias(enc.alibi_bias.detach(), t)
    for b in range(2):
        torch.testing.assert_close(got[b], full[:, keep[b]][:, :, keep[b]])


def test_gradients_flow_into_the_table():
    model = learned().train()
    total(model(tiny_input("AUDIO"), id=torch.tensor([0, 1]))).backward()
    grad = model.modality_encoders["AUDIO"].alibi_bias.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.module.parameters())


def test_teacher_table_follows_ema():
    model = learned(ema_encoder_only=False).train()
    key = KEY.format("AUDIO")
    t0 = model.teacher.state_dict()[key].clone()
    student = model.modality_encoders["AUDIO"].alibi_bias
    with torch.no_grad():
        student.add_(1.0)
    model.set_num_updates(0)
    model.ema_step(1)
    d = model.ema_decay_at(1)
    torch.testing.assert_close(model.teacher.state_dict()[key], d * t0 + (1 - d) * student.detach())


def test_reload_keeps_student_and_teacher_tables():
    model = learned(ema_encoder_only=False)
    with torch.no_grad():
        model.modality_encoders["AUDIO"].alibi_bias.mul_(2.0)
    other = learned(ema_encoder_only=False)
    other.load_state_dict(model.state_dict())
    for a, b in ((other.state_dict(), model.state_dict()), (other.state_dict()["_ema"], model.state_dict()["_ema"])):
        assert torch.equal(a[KEY.format("AUDIO")], b[KEY.format("AUDIO")])


def test_bf16_model_casts_the_table():
    model = learned(ema_encoder_only=False).to(torch.bfloat16).train()
    enc = model.modality_encoders["AUDIO"]
    assert enc.alibi_bias.dtype == torch.bfloat16
    assert enc._alibi(99, 1, None, torch.device("cpu")).dtype == torch.float32
    loss = total(model(tiny_input("AUDIO").to(torch.bfloat16), id=torch.tensor([0, 1])))
    loss.backward()
    assert torch.isfinite(loss) and enc.alibi_bias.grad.dtype == torch.bfloat16


def test_missing_alibi_max_pos_is_a_clear_error():
    with pytest.raises(ValueError, match=r"modalities\.audio\.alibi_max_pos"):
        learned(max_pos=None)


def test_image_2d_table_and_square_check():
    model = learned("IMAGE", max_pos=9)  # 3 x 3 table for the 4 x 4 patch grid: padded
    enc = model.modality_encoders["IMAGE"]
    torch.testing.assert_close(enc.alibi_bias.detach()[0], alibi_table(9, HEADS, 2, "manhattan"))
    total(model.train()(tiny_input("IMAGE"), id=torch.tensor([0, 1]))).backward()
    assert enc.alibi_bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"modalities\.image\.alibi_max_pos must be a square"):
        learned("IMAGE", max_pos=10)


def test_text_learned_table():
    d = dictionary_from_symbols(load_fixture("v2_text")["dict_symbols"])
    model = learned("TEXT", max_pos=8, dictionary=d).train()
    total(model(tiny_input("TEXT"), id=torch.tensor([0, 1]))).backward()
    assert model.modality_encoders["TEXT"].alibi_bias.grad.abs().sum() > 0


def test_without_alibi_encoder_only_a_warning(caplog):
    raw = tiny_raw("AUDIO")
    raw["modalities"]["audio"].update(use_alibi_encoder=False, learned_alibi=True)
    with caplog.at_level(logging.WARNING):
        model = build(raw)
    assert "learned_alibi has no effect" in caplog.text
    assert model.modality_encoders["AUDIO"].alibi_bias is None
