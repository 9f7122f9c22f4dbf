"""data2vec 2.0 (data2vec_multi) fixture runner shared by every v2 fixture."""
import math

import torch
import numpy as np

from .common import (SEED, build_cfg, check_state_dict_reload, perturb_teacher, plain, recompute_loss,
                     record_loss_inputs, save_fixture)

def v2_common(clone_batch=2):
    return dict(
        _name="data2vec_multi",
        depth=2,
        embed_dim=32,
        num_heads=4,
        mlp_ratio=2.0,
        clone_batch=clone_batch,
        average_top_k_layers=2,
        instance_norm_target_layer=True,
        encoder_dropout=0.0,
        post_mlp_drop=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        dropout_input=0.0,
        layerdrop=0.0,
        ema_decay=0.999,
        ema_end_decay=0.9999,
        ema_anneal_end_step=100,
        max_update=100,
        seed=SEED,
    )


def v2_run(name, modality, overrides, make_inputs, task, out_dir, doc_inputs, notes_extra, prepare=None, extra=None):
    from examples.data2vec.models import data2vec2 as ref
    from examples.data2vec.models.data2vec2 import Data2VecMultiConfig, Data2VecMultiModel

    cfg, plain_cfg = build_cfg(Data2VecMultiConfig, overrides)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = Data2VecMultiModel.build_model(cfg, task)  # v2 builds its teacher in __init__
    assert model.ema is not None
    if prepare is not None:  # e.g. larger decoder attention weights (student-only modules)
        prepare(model)
    gen = torch.Generator().manual_seed(SEED + 1)
    perturb_teacher(model.ema, gen)
    model.eval()

    inputs, fwd_kwargs, precomputed_mask = make_inputs(model)

    with torch.no_grad():
        feat = model.extract_features(mode=None, mask=False, **fwd_kwargs)

    def masked_forward():
        with record_loss_inputs(ref) as rec, torch.no_grad():
            out = model(**fwd_kwargs, mask=True, precomputed_mask=precomputed_mask.clone())
        # d2v_loss call order in the reference: [cls (if cls_loss>0)], regression
        assert len(rec.calls) == (2 if cfg.cls_loss > 0 else 1), len(rec.calls)
        pred, target = rec.calls[-1]
        masked_forward.cls = rec.calls[0] if cfg.cls_loss > 0 else None
        return out, pred, target

    out, pred, target = masked_forward()
    cls_pair = masked_forward.cls
    loss_key = f"{modality}_regression"
    total = sum(v.float().sum() for v in out["losses"].values())
    scale = cfg.loss_scale if cfg.loss_scale is not None else 1 / math.sqrt(cfg.embed_dim)
    re = recompute_loss(pred, target, cfg.loss_beta, scale)
    assert torch.allclose(re, out["losses"][loss_key].sum(), rtol=1e-5, atol=1e-6), (re, out["losses"])
    assert int(out["sample_size"]) == int(precomputed_mask.sum())
    model.train()
    out_t, pred_t, target_t = masked_forward()
    with torch.no_grad():
        feat_t = model.extract_features(mode=None, mask=False, **fwd_kwargs)
    model.eval()

    expected = {
        "features": feat["x"],
        "features_padding_mask": feat["padding_mask"],
        "layer_results": feat["layer_results"],
        "targets": target,
        "pred": pred,
        "losses": {k: v for k, v in out["losses"].items()},
        "loss": total,
        "sample_size": int(out["sample_size"]),
        "masked_pct": float(out["masked_pct"]),
        "ema_decay": float(out["ema_decay"]),
        "train_mode": {
            "features": feat_t["x"],
            "targets": target_t,
            "pred": pred_t,
            "loss": sum(v.float().sum() for v in out_t["losses"].values()),
            "sample_size": int(out_t["sample_size"]),
        },
    }
    if cls_pair is not None:
        expected["cls_pred"], expected["cls_target"] = cls_pair
    for k, v in out.items():
        if k.startswith("pred_var") or k.startswith("target_var"):
            expected[k] = v
    doc = (
        f"model = Data2VecMultiModel.build_model(cfg, task) (teacher built in __init__); teacher perturbed (every float entry of "
        "model.ema.model.state_dict() += 0.01*randn, then build_fp32_params()); model.eval(). "
        f"features = model.extract_features({doc_inputs}, mode=None, mask=False)['x'] (extra tokens removed); "
        "features_padding_mask / layer_results = same call ['padding_mask'] / ['layer_results'] (per block: FFN output before "
        "residual+norm2 when end_of_block_targets=False, incl. extra tokens). "
        f"Masked forward: out = model({doc_inputs}, mask=True, precomputed_mask=mask) in eval mode, mask shape (B*clone_batch, T), "
        "rows ordered sample-major (repeat_interleave: sample0-clone0, sample0-clone1, sample1-clone0, ...). "
        f"losses = out['losses'] (unreduced, '{loss_key}' has shape (#masked, D), already * loss_scale * d2v_loss); "
        "loss = sum over all loss tensors (what ModelCriterion does); sample_size = out['sample_size'] = mask.sum(); "
        "targets/pred = (target, input) pair passed to F.mse_loss/F.smooth_l1_loss in d2v_loss: pred = decoder output at "
        "masked positions, targets = teacher targets repeated per clone at masked positions. If cls_loss>0: cls_pred/cls_target = "
        "the (input, target) of the first d2v_loss call (student encoder output at the last extra token / time-mean of the "
        "teacher targets repeated per clone); losses['cls'] = d2v_loss(cls_pred, cls_target) * cls_loss * sample_size. "
        "train_mode = same after model.train()."
    )
    notes = (
        f"{name}: clone_batch={cfg.clone_batch}; mask fixed via forward(precomputed_mask=...) with the same number of masked "
        "tokens per row (required by make_maskinfo). mask_noise_std=0 so the decoder's mask tokens (normal_(0, std)) are exactly "
        "zero and the decoder output is deterministic; decoder input_dropout=0. " + notes_extra
    )
    fixture = {
        "name": name,
        "model_cfg": plain_cfg,
        "state_dict": {k: (dict(v) if isinstance(v, dict) else v) for k, v in model.state_dict().items()},
        "inputs": inputs,
        "mask": precomputed_mask.bool(),
        "expected": expected,
        "expected_doc": doc,
        "notes": notes,
    }
    fixture.update(extra or {})  # e.g. "channel_mask"

    def factory():
        torch.manual_seed(0)
        return Data2VecMultiModel.build_model(cfg, task)

    m2 = check_state_dict_reload(factory, plain(fixture["state_dict"]))
    m2.eval()
    with torch.no_grad():
        f2 = m2.extract_features(mode=None, mask=False, **fwd_kwargs)["x"]
        o2 = m2(**fwd_kwargs, mask=True, precomputed_mask=precomputed_mask.clone())
    assert torch.allclose(f2, feat["x"], atol=1e-6)
    t2 = sum(v.float().sum() for v in o2["losses"].values())
    assert torch.allclose(t2, total, rtol=1e-6, atol=1e-6)
    return save_fixture(out_dir, name, fixture)


def v2_fixed_mask(B, T, clone, n_masked, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(B * clone, T, dtype=torch.bool)
    for r in range(B * clone):
        idx = torch.randperm(T, generator=g)[:n_masked]
        m[r, idx] = True
    return m
