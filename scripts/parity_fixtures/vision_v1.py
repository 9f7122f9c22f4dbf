"""data2vec 1.0 vision fixtures (vision_eob, vision_ffn)."""
import torch
import numpy as np

from .common import (SEED, build_cfg, check_state_dict_reload, perturb_teacher, plain, recompute_loss,
                     record_loss_inputs, save_fixture)

def make_vision(name, end_of_block_targets, out_dir):
    from examples.data2vec.models import data2vec_vision as ref
    from examples.data2vec.models.data2vec_vision import Data2VecVisionConfig, Data2VecVisionModel

    overrides = dict(
        _name="data2vec_vision",
        image_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=4,
        mlp_ratio=2,
        layer_scale_init_value=0.1,
        average_top_k_layers=2,
        num_mask_patches=6,
        min_mask_patches_per_block=2,
        instance_norm_target_layer=True,
        loss_beta=2.0,
        drop_path=0.0,
        attention_dropout=0.0,
        end_of_block_targets=end_of_block_targets,
        ema_decay=0.999,
        ema_end_decay=0.9999,
        ema_anneal_end_step=100,
    )
    cfg, plain_cfg = build_cfg(Data2VecVisionConfig, overrides)

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = Data2VecVisionModel.build_model(cfg)
    with torch.no_grad():
        # the shared relative position bias table is zero-initialised: give it values so parity exercises it
        tbl = model.encoder.rel_pos_bias.relative_position_bias_table
        tbl.copy_(0.1 * torch.randn(tbl.shape, generator=torch.Generator().manual_seed(SEED + 5)))
    model.set_num_updates(1)  # creates the EMA teacher (of model.encoder)
    assert model.ema is not None
    gen = torch.Generator().manual_seed(SEED + 1)
    perturb_teacher(model.ema, gen)
    model.eval()

    g = torch.Generator().manual_seed(SEED + 2)
    img = torch.randn(2, 3, 32, 32, generator=g)
    grid = torch.zeros(2, 4, 4, dtype=torch.long)
    grid[0, 0:2, 0:3] = 1  # 6 patches
    grid[1, 1:4, 2:4] = 1  # 6 patches
    mask = grid.view(2, -1).bool()

    fixed = grid.clone()

    def fixed_make_mask(bsz, num_masks, min_masks, max_masks):
        assert bsz == fixed.size(0)
        return fixed.clone()

    model.make_mask = fixed_make_mask  # instance attribute shadows the method

    with torch.no_grad():
        feats = model(img, mask=False)
        layer_feats = model(img, mask=False, layer_results=True)

    def masked_forward():
        with record_loss_inputs(ref) as rec, torch.no_grad():
            out = model(img, mask=True)
        assert len(rec.calls) == 1
        pred, target = rec.calls[0]
        return out, pred, target

    out, pred, target = masked_forward()
    re = recompute_loss(pred, target, cfg.loss_beta, model.loss_scale)
    assert torch.allclose(re, out["losses"]["regression"], rtol=1e-5, atol=1e-6), (re, out)
    model.train()
    out_t, pred_t, target_t = masked_forward()
    with torch.no_grad():
        feats_t = model(img, mask=False)
    model.eval()

    expected = {
        "features": feats,
        "layer_results": layer_feats,
        "targets": target,
        "pred": pred,
        "loss": out["losses"]["regression"],
        "sample_size": int(out["sample_size"]),
        "target_var": out["target_var"],
        "pred_var": out["pred_var"],
        "ema_decay": float(out["ema_decay"]),
        "train_mode": {
            "features": feats_t,
            "targets": target_t,
            "pred": pred_t,
            "loss": out_t["losses"]["regression"],
            "sample_size": int(out_t["sample_size"]),
        },
    }
    doc = (
        "model = Data2VecVisionModel.build_model(cfg); encoder.rel_pos_bias.relative_position_bias_table filled with 0.1*randn "
        "(zero-init otherwise); model.set_num_updates(1) (creates the EMA teacher of model.encoder); teacher perturbed (every "
        "float entry of model.ema.model.state_dict() += 0.01*randn, then build_fp32_params()); model.eval(). "
        "features = model(inputs['img'], mask=False) -> (B, num_patches, D): student encoder output after the final norm, "
        "cls token dropped (the teacher branch also runs inside this call but its result is discarded). "
        "layer_results = model(img, mask=False, layer_results=True) -> list per block of (B, num_patches, D) "
        "(block output if end_of_block_targets else the FFN branch gamma_2*mlp(norm2(x)); cls dropped; no final norm). "
        "Masked forward: model.make_mask replaced by a function returning the fixed (B,4,4) grid (mask = grid.view(B,-1)); "
        "out = model(img, mask=True) in eval mode; loss = out['losses']['regression'], sample_size = out['sample_size']; "
        "targets/pred = (target, input) pair passed to F.mse_loss/F.smooth_l1_loss (rows ordered like x[mask]); pred = "
        "encoder output at masked patches (no final_proj, it is unused by the reference); loss already multiplied by "
        "loss_scale (default 1/sqrt(D)) per position. train_mode = same after model.train()."
    )
    notes = (
        f"{name}: end_of_block_targets={end_of_block_targets}; image 32x32, patch 8 -> 4x4 grid = 16 patches; "
        "mask fixed by monkeypatching the instance's make_mask: row0 rows 0-1 x cols 0-2, row1 rows 1-3 x cols 2-3 "
        "(6 patches each). layer_scale_init_value=0.1 (not 1e-4) so blocks contribute measurably. "
        "Teacher input = student's patch embeddings + cls (ema_transformer_only=True)."
    )
    fixture = {
        "name": name,
        "model_cfg": plain_cfg,
        "state_dict": {k: (dict(v) if isinstance(v, dict) else v) for k, v in model.state_dict().items()},
        "inputs": {"img": img},
        "mask": mask,
        "expected": expected,
        "expected_doc": doc,
        "notes": notes,
    }

    def factory():
        torch.manual_seed(0)
        return Data2VecVisionModel.build_model(cfg)

    m2 = check_state_dict_reload(factory, plain(fixture["state_dict"]), prepare=lambda m: m.set_num_updates(1))
    m2.eval()
    m2.make_mask = fixed_make_mask
    with torch.no_grad():
        f2 = m2(img, mask=False)
        o2 = m2(img, mask=True)
    assert torch.allclose(f2, feats, atol=1e-6)
    assert torch.allclose(o2["losses"]["regression"], expected["loss"], rtol=1e-6, atol=1e-6)
    return save_fixture(out_dir, name, fixture)
