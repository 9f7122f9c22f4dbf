"""data2vec_multi behaviour: teacher once per sample, gradients, EMA, masks from ids, fine-tuning surgery."""
import pytest
import torch

from .helpers import dictionary_from_symbols, load_fixture, tiny_input, tiny_model

MODES = ["AUDIO", "IMAGE", "TEXT"]


def build(mode, **over):
    d = dictionary_from_symbols(load_fixture("v2_text")["dict_symbols"]) if mode == "TEXT" else None
    return tiny_model(mode, d, **over)


def total(out):
    return sum(v.float().sum() for v in out["losses"].values())


@pytest.mark.parametrize("mode", MODES)
def test_teacher_runs_once_per_sample_and_targets_repeat(mode):
    model = build(mode, clone_batch=3).train()
    calls = []
    for blk in model.teacher.module.modules():
        if type(blk).__name__ == "AltBlock":
            blk.register_forward_hook(lambda m, i, o: calls.append(i[0].size(0)))
    student_rows = []
    model.blocks[0].register_forward_hook(lambda m, i, o: student_rows.append(i[0].size(0)))
    out = model(tiny_input(mode, b=2), id=torch.tensor([4, 5]))
    n_teacher_blocks = sum(type(b).__name__ == "AltBlock" for b in model.teacher.module.modules())
    assert calls == [2] * n_teacher_blocks  # one teacher pass, B rows (not B * clones)
    assert student_rows == [6]
    assert out["sample_size"] == out["losses"][f"{mode}_regression"].size(0)


@pytest.mark.parametrize("mode", MODES)
def test_student_gets_gradients_teacher_none(mode):
    model = build(mode).train()
    total(model(tiny_input(mode), id=torch.tensor([0, 1]))).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing or all("decoder" not in n and "blocks" not in n for n in missing), missing
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.module.parameters())
    assert not any(p is q for p in model.parameters() for q in model.teacher.module.parameters())


def test_in_model_masks_follow_ids_and_update():
    model = build("AUDIO").eval()
    x = tiny_input("AUDIO")

    def mask(ids):
        return model(x, id=torch.tensor(ids), features_only=True, mask=True)["mask"].mask
    a, b, c = mask([1, 2]), mask([1, 2]), mask([3, 2])
    assert torch.equal(a, b) and not torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    model.set_num_updates(5)
    assert not torch.equal(mask([1, 2]), a)


def test_ema_step_once_per_update_and_decay():
    model = build("TEXT").train()
    t0 = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    with torch.no_grad():
        for p in model.blocks.parameters():
            p.add_(1.0)
    model.set_num_updates(0)
    model.ema_step(1)
    model.ema_step(1)  # repeated call for the same update is ignored
    d = model.ema_decay_at(1)
    for k, v in model.teacher.state_dict().items():
        s = dict(model.blocks.named_parameters())[k]
        torch.testing.assert_close(v, d * t0[k] + (1 - d) * s.detach())


def test_state_dict_roundtrip_and_remove_pretraining_modules():
    model = build("AUDIO")
    sd = model.state_dict()
    assert "_ema" in sd and "modality_encoders.AUDIO.alibi_scale" in sd["_ema"]
    other = build("AUDIO")
    other.load_state_dict(sd)
    for k, v in other.state_dict()["_ema"].items():
        assert torch.equal(v, sd["_ema"][k])
    other.remove_pretraining_modules(modality="audio")
    assert other.teacher is None and other.modality_encoders["AUDIO"].decoder is None
    other.load_state_dict(sd)  # decoder keys ignored, _ema dropped
    feats = other.extract_features(tiny_input("AUDIO"), mask=False)["x"]
    assert feats.shape[-1] == 32 and torch.isfinite(feats).all()


def test_half_student_keeps_fp32_teacher():
    model = build("IMAGE").half()
    assert all(p.dtype == torch.float32 for p in model.teacher.module.parameters())


def test_bad_precomputed_mask_shape_raises():
    model = build("IMAGE")
    with pytest.raises(ValueError, match="precomputed_mask"):
        model(tiny_input("IMAGE"), precomputed_mask=torch.zeros(2, 16, dtype=torch.bool))
