import pytest
import torch

from .helpers import random_mask, tiny_cfg, tiny_model
from data2vec_plugin.models._audio_config import Data2VecAudioConfig
from data2vec_plugin.models.data2vec_audio import Data2VecAudioModel
from data2vec_plugin.modules.audio import conv_output_lengths, parse_conv_spec, receptive_field
from omegaconf import OmegaConf


def test_base_config_matches_reference_layout():
    cfg = OmegaConf.structured(Data2VecAudioConfig(extractor_mode="layer_norm", pos_conv_depth=5, conv_pos=95,
                                                   ema_anneal_end_step=10, max_update=10))
    sd = Data2VecAudioModel(cfg).state_dict()
    # data2vec_spec.md 4.1: 233 entries, 204 teacher tensors, 93.75M parameters
    assert len(sd) == 233 and len(sd["_ema"]) == 204
    assert sd["encoder.pos_conv.0.0.weight"].shape == (768, 48, 19)
    assert sd["feature_extractor.conv_layers.0.2.1.weight"].shape == (512,)
    assert set(sd["_ema"]) == {k[len("encoder."):] for k in sd if k.startswith("encoder.")}


def test_default_extractor_and_weight_norm_pos_conv_keys():
    sd = tiny_model(extractor_mode="default", pos_conv_depth=1).state_dict()
    assert "feature_extractor.conv_layers.0.2.weight" in sd  # GroupNorm on layer 0 only
    assert "feature_extractor.conv_layers.1.2.weight" not in sd
    assert sd["encoder.pos_conv.0.weight_g"].shape == (1, 1, 16)
    assert "encoder.pos_conv.0.weight_v" in sd


def test_conv_spec_parsing_and_lengths():
    spec = parse_conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]")
    assert len(spec) == 7
    assert conv_output_lengths(torch.tensor([16000]), spec).item() == 49
    assert receptive_field(spec) == 400
    with pytest.raises(ValueError, match="conv_feature_layers"):
        parse_conv_spec("__import__('os').system('true')")


def test_forward_shapes_and_gradients():
    m = tiny_model()
    x = torch.randn(2, 3000)
    t = conv_output_lengths(torch.tensor([3000]), m.conv_spec).item()
    out = m(x, mask_indices=random_mask(2, t))
    assert out["pred"].shape == out["target"].shape == (2, t, 32)
    assert out["target"].dtype == torch.float32 and not out["target"].requires_grad
    ((out["pred"] - out["target"]) ** 2)[out["mask"]].sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == []
    assert all(p.grad is None for p in m.teacher.module.parameters())
    teacher_ids = {id(p) for p in m.teacher.module.parameters()}
    assert not teacher_ids & {id(p) for p in m.parameters()}


def test_unmasked_positions_do_not_change_targets_and_teacher_sees_unmasked_input():
    m = tiny_model().eval()
    x = torch.randn(1, 3000)
    t = conv_output_lengths(torch.tensor([3000]), m.conv_spec).item()
    a = m(x, mask_indices=random_mask(1, t, 0))["target"]
    b = m(x, mask_indices=random_mask(1, t, 1))["target"]
    torch.testing.assert_close(a, b)  # targets depend on the full input only


def test_ema_update_freq_two_steps_once_per_update():
    m = tiny_model(ema_decay=0.5, ema_end_decay=0.5)
    m.set_num_updates(0)
    snap = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    with torch.no_grad():
        m.encoder.layers[0].fc1.weight.add_(1.0)
    m.ema_step(1)
    m.set_num_updates(1)  # second micro-batch / trainer call for the same update
    m.set_num_updates(1)
    w = m.teacher.module.layers[0].fc1.weight
    torch.testing.assert_close(w, 0.5 * snap["layers.0.fc1.weight"] + 0.5 * m.encoder.layers[0].fc1.weight)
    # positional conv is copied, not averaged (ema_layers_only)
    torch.testing.assert_close(m.teacher.module.pos_conv[0].bias, m.encoder.pos_conv[0].bias)


def test_foreign_task_path_steps_from_set_num_updates():
    m = tiny_model(ema_decay=0.5, ema_end_decay=0.5)
    m.set_num_updates(0)
    with torch.no_grad():
        m.encoder.layers[0].fc1.weight.add_(1.0)
    m.set_num_updates(1)
    assert m._ema_updates == 1
    assert not torch.equal(m.teacher.module.layers[0].fc1.weight, m.encoder.layers[0].fc1.weight)


def test_half_keeps_teacher_fp32_and_whole_model_teacher():
    m = tiny_model().half()
    assert m.teacher.module.layers[0].fc1.weight.dtype == torch.float32
    whole = tiny_model(ema_transformer_only=False, ema_layers_only=False)
    assert "mask_emb" in whole.state_dict()["_ema"]
    x = torch.randn(1, 3000)
    t = conv_output_lengths(torch.tensor([3000]), whole.conv_spec).item()
    assert whole(x, mask_indices=random_mask(1, t))["target"].shape == (1, t, 32)


def test_remove_pretraining_modules_then_strict_load():
    m = tiny_model()
    sd = m.state_dict()
    m2 = tiny_model()
    m2.remove_pretraining_modules()
    sd = {k: v for k, v in sd.items()}
    m2.load_state_dict(sd, strict=True)  # final_proj.* ignored (slot is None), _ema dropped
    assert m2.teacher is None and "_ema" not in m2.state_dict()
    x = torch.randn(1, 2000)
    torch.testing.assert_close(m2.eval().extract_features(x, None)["x"], m.eval().extract_features(x, None)["x"])


def test_in_model_masking_for_finetuning_and_padding():
    m = tiny_model(mask_prob=0.5, mask_length=3, mask_channel_prob=0.3, mask_channel_length=4)
    src = torch.randn(2, 3000)
    pad = torch.zeros(2, 3000, dtype=torch.bool)
    pad[1, 2000:] = True
    res = m.extract_features(src, pad, mask=True)
    assert res["padding_mask"].shape == res["x"].shape[:2]
    frames = conv_output_lengths(torch.tensor([2000]), m.conv_spec).item()
    assert res["padding_mask"][1].sum().item() == res["x"].shape[1] - frames


def test_layer_argument_stops_early():
    m = tiny_model().eval()
    x = torch.randn(1, 2000)
    full = m.extract_features(x, None)
    first = m.extract_features(x, None, layer=0)
    assert len(full["layer_results"]) == 2 and len(first["layer_results"]) == 1




def test_wav2vec2_only_fields_warn_only_when_changed(caplog):
    import logging
    with caplog.at_level(logging.WARNING):
        tiny_model()
    assert "only affect wav2vec 2.0" not in caplog.text  # defaults (incl. the latent_temp list) are silent
    with caplog.at_level(logging.WARNING):
        tiny_model(quantize_targets=True)
    assert "['quantize_targets'] only affect wav2vec 2.0" in caplog.text


def test_conformer_layer_type_is_a_clear_error():
    with pytest.raises(ValueError, match="layer_type=conformer is not supported"):
        tiny_model(layer_type="conformer")
