"""data2vec 1.0 audio fixtures (audio_default_pc1, audio_ln_pc5)."""
import copy
import math

import torch
import numpy as np

from .common import (SEED, build_cfg, check_state_dict_reload, perturb_teacher, plain, recompute_loss,
                     record_loss_inputs, save_fixture)

def common_dropout_off_v1_audio():
    return dict(
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        dropout_input=0.0,
        dropout_features=0.0,
    )


# ----------------------------------------------------------------------------- audio v1


def weight_norm_deepcopy_workaround(model):
    """Reference quirk on torch 2.14: with pos_conv_depth=1 the pos_conv uses torch.nn.utils.weight_norm,
    whose computed `weight` attribute is a non-leaf tensor right after construction, so EMAModule's
    copy.deepcopy (inside set_num_updates -> make_ema_teacher) raises
    'RuntimeError: Only Tensors created explicitly by the user (graph leaves) support the deepcopy protocol
    at the moment ...'. Re-materialise those weights detached (what one no_grad forward does); the
    forward pre-hook recomputes them from weight_g/weight_v on every forward, so nothing changes numerically."""
    from torch.nn.utils.weight_norm import WeightNorm

    for mod in model.modules():
        for hook in list(mod._forward_pre_hooks.values()):
            if isinstance(hook, WeightNorm):
                w = getattr(mod, hook.name)
                if isinstance(w, torch.Tensor) and w.grad_fn is not None:
                    setattr(mod, hook.name, w.detach())

AUDIO_T_SAMPLES = 4000
AUDIO_PAD_AFTER = 3000


def audio_mask(T, valid):
    """Fixed span mask on the frame axis: spans of 10 frames, same count per row,
    never on padded frames."""
    m = torch.zeros(len(valid), T, dtype=torch.bool)
    starts = {0: [3, 40, 90, 150], 1: [5, 45, 80, 120]}
    for b, v in enumerate(valid):
        for s in starts[b]:
            assert s + 10 <= v
            m[b, s : s + 10] = True
    return m


def make_audio(name, extra_overrides, out_dir):
    from examples.data2vec.models import data2vec_audio as ref
    from examples.data2vec.models.data2vec_audio import Data2VecAudioConfig, Data2VecAudioModel

    overrides = dict(
        _name="data2vec_audio",
        extractor_mode="default",
        conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2",
        conv_pos=16,
        conv_pos_groups=4,
        pos_conv_depth=1,
        encoder_layers=2,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=4,
        average_top_k_layers=2,
        instance_norm_target_layer=True,
        loss_beta=0.0,
        ema_decay=0.999,
        ema_end_decay=0.9999,
        ema_anneal_end_step=100,
        max_update=100,
        mask_prob=0.65,
        mask_length=10,
        **common_dropout_off_v1_audio(),
    )
    overrides.update(extra_overrides)
    cfg, plain_cfg = build_cfg(Data2VecAudioConfig, overrides)

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = Data2VecAudioModel.build_model(cfg)
    weight_norm_deepcopy_workaround(model)
    model.set_num_updates(1)  # creates the EMA teacher (v1: lazily, because final_proj exists)
    assert model.ema is not None
    gen = torch.Generator().manual_seed(SEED + 1)
    perturb_teacher(model.ema, gen)
    model.eval()

    g = torch.Generator().manual_seed(SEED + 2)
    source = torch.randn(2, AUDIO_T_SAMPLES, generator=g)
    source[1, AUDIO_PAD_AFTER:] = 0.0
    padding_mask = torch.zeros(2, AUDIO_T_SAMPLES, dtype=torch.bool)
    padding_mask[1, AUDIO_PAD_AFTER:] = True

    with torch.no_grad():
        feat = model.extract_features(source, padding_mask, mask=False)
        T = feat["x"].shape[1]
        frame_pad = feat["padding_mask"]
        valid = [T, int((~frame_pad[1]).sum())] if frame_pad is not None else [T, T]
        single = model.extract_features(source[:1], None, mask=False)

    mask = audio_mask(T, valid)

    def masked_forward():
        with record_loss_inputs(ref) as rec, torch.no_grad():
            out = model(source, padding_mask=padding_mask, mask=True, mask_indices=mask.clone())
        assert len(rec.calls) == 1
        pred, target = rec.calls[0]
        return out, pred, target

    out, pred, target = masked_forward()
    scale = cfg.loss_scale if cfg.loss_scale is not None else 1 / math.sqrt(cfg.encoder_embed_dim)
    re = recompute_loss(pred, target, cfg.loss_beta, scale)
    assert torch.allclose(re, out["losses"]["regression"], rtol=1e-5, atol=1e-6), (re, out["losses"])
    assert target.shape == (int(mask.sum()), cfg.encoder_embed_dim)

    model.train()
    out_t, pred_t, target_t = masked_forward()
    with torch.no_grad():
        feat_t = model.extract_features(source, padding_mask, mask=False)
    model.eval()

    # masked-student features (the encoder output before final_proj) for the masked forward
    with torch.no_grad():
        masked_feat = model(source, padding_mask=padding_mask, mask=True, features_only=True, mask_indices=mask.clone())

    expected = {
        "features": feat["x"],
        "frame_padding_mask": frame_pad,
        "layer_results": {
            "x": [lr[0] for lr in feat["layer_results"]],
            "ffn": [lr[2] for lr in feat["layer_results"]],
        },
        "features_single_unpadded": single["x"],
        "masked_student_features": masked_feat["x"],
        "targets": target,
        "pred": pred,
        "loss": out["losses"]["regression"],
        "sample_size": int(out["sample_size"]),
        "target_var": out["target_var"],
        "pred_var": out["pred_var"],
        "ema_decay": float(out["ema_decay"]),
        "train_mode": {
            "features": feat_t["x"],
            "targets": target_t,
            "pred": pred_t,
            "loss": out_t["losses"]["regression"],
            "sample_size": int(out_t["sample_size"]),
        },
    }
    doc = (
        "model = Data2VecAudioModel.build_model(cfg); model.set_num_updates(1) (creates the EMA teacher); "
        "teacher perturbed (every float entry of model.ema.model.state_dict() += 0.01*randn, then ema.build_fp32_params()); "
        "model.eval(). "
        "features = model.extract_features(inputs['source'], inputs['padding_mask'], mask=False)['x'] (B,T,D); "
        "frame_padding_mask = same call ['padding_mask'] (B,T) bool; "
        "layer_results.x[i] / .ffn[i] = same call ['layer_results'][i][0] / [2] (T,B,C: layer output / FFN output before residual+LN = target source); "
        "features_single_unpadded = model.extract_features(inputs['source'][:1], None, mask=False)['x']; "
        "masked_student_features = model(source, padding_mask=padding_mask, mask=True, features_only=True, mask_indices=mask)['x']; "
        "out = model(source, padding_mask=padding_mask, mask=True, mask_indices=mask) (eval mode); "
        "loss = out['losses']['regression'] (scalar sum), sample_size = out['sample_size'] (= mask.sum()); "
        "targets / pred = the (target, input) pair passed to F.mse_loss / F.smooth_l1_loss inside the reference forward "
        "(rows ordered like x[mask], i.e. batch-major then time); pred = final_proj(x[mask]). "
        "train_mode.* = the same after model.train() (dropouts are 0 so it must equal eval; no set_num_updates call, so no EMA step)."
    )
    notes = (
        f"{name}: conv frames T={T}, valid frames per row {valid}; second row padded after {AUDIO_PAD_AFTER} samples "
        "(padding_mask True there, source zeroed there). mask fixed via the reference's forward(mask_indices=...) argument: "
        "4 spans of 10 frames per row (starts row0 [3,40,90,150], row1 [5,45,80,120]). "
        "Teacher = EMA of the encoder (ema_transformer_only=True, ema_layers_only=True); its pos_conv is a teacher copy (skip_keys, "
        "copied from the student at each EMA step) but here it is perturbed too, like every teacher entry. "
        "required_seq_len_multiple=2 pads T internally (reference behaviour)."
    )
    fixture = {
        "name": name,
        "model_cfg": plain_cfg,
        "state_dict": {k: (dict(v) if isinstance(v, dict) else v) for k, v in model.state_dict().items()},
        "inputs": {"source": source, "padding_mask": padding_mask},
        "mask": mask,
        "expected": expected,
        "expected_doc": doc,
        "notes": notes,
    }

    # reload check: a fresh reference model + set_num_updates(1) + strict load reproduces features and loss
    def factory():
        torch.manual_seed(0)
        return Data2VecAudioModel.build_model(cfg)

    def prepare(m):
        weight_norm_deepcopy_workaround(m)
        m.set_num_updates(1)

    m2 = check_state_dict_reload(factory, plain(fixture["state_dict"]), prepare=prepare)
    m2.eval()
    with torch.no_grad():
        f2 = m2.extract_features(source, padding_mask, mask=False)["x"]
        o2 = m2(source, padding_mask=padding_mask, mask=True, mask_indices=mask.clone())
    assert torch.allclose(f2, feat["x"], atol=1e-6)
    assert torch.allclose(o2["losses"]["regression"], out["losses"]["regression"], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(target, ref_targets_if_student_teacher(model, source, padding_mask, mask), atol=1e-4)

    return save_fixture(out_dir, name, fixture)


def ref_targets_if_student_teacher(model, source, padding_mask, mask):
    """Targets that an unperturbed teacher (== student) would give, to prove the perturbation matters."""
    from examples.data2vec.models import data2vec_audio as ref

    m = copy.deepcopy(model)
    m.ema.model.load_state_dict(m.encoder.state_dict())
    m.ema.build_fp32_params()
    with record_loss_inputs(ref) as rec, torch.no_grad():
        m(source, padding_mask=padding_mask, mask=True, mask_indices=mask.clone())
    return rec.calls[0][1]
