"""data2vec_vision model contract, EMA teacher, switches, fine-tuning surgery; the classifier wrapper."""
import dataclasses
import logging

import pytest
import torch
from omegaconf import OmegaConf

from tests.vision.conftest import TINY, tiny_cfg, tiny_model

REFERENCE_FIELDS = {
    "layer_scale_init_value", "num_mask_patches", "min_mask_patches_per_block", "max_mask_patches_per_block",
    "image_size", "patch_size", "in_channels", "shared_rel_pos_bias", "drop_path", "attention_dropout", "depth",
    "embed_dim", "num_heads", "mlp_ratio", "loss_beta", "loss_scale", "average_top_k_layers", "end_of_block_targets",
    "layer_norm_target_layer", "instance_norm_target_layer", "batch_norm_target_layer", "instance_norm_targets",
    "layer_norm_targets", "ema_decay", "ema_end_decay", "ema_anneal_end_step", "ema_transformer_only"}


def batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, 3, 32, 32, generator=g)
    mask = torch.zeros(b, 16, dtype=torch.bool)
    for i in range(b):
        mask[i, torch.randperm(16, generator=g)[:6]] = True
    return img, mask


def test_config_has_every_reference_field_with_help():
    from data2vec_plugin.models.data2vec_image_classification import Data2VecImageClassificationConfig
    from data2vec_plugin.models.data2vec_vision import Data2VecVisionConfig
    names = {f.name for f in dataclasses.fields(Data2VecVisionConfig)}
    assert REFERENCE_FIELDS <= names
    for dc in (Data2VecVisionConfig, Data2VecImageClassificationConfig):
        for f in dataclasses.fields(dc):
            assert f.name == "_name" or f.metadata.get("help"), f"{dc.__name__}.{f.name} has no help"


def test_forward_contract_and_gradients():
    from data2vec_plugin.criterions.regression import Data2VecRegressionCriterion, Data2VecRegressionConfig
    model = tiny_model().train()
    img, mask = batch()
    out = model(img, mask_indices=mask)
    assert out["pred"].shape == out["target"].shape == (4, 16, 32)
    assert out["target"].dtype == torch.float32 and not out["target"].requires_grad
    assert out["mask"].dtype == torch.bool and torch.equal(out["mask"], mask)
    assert out["loss_beta"] == 0 and out["loss_scale"] is None and abs(out["ema_decay"] - 0.9) < 1e-9
    crit = Data2VecRegressionCriterion(Data2VecRegressionConfig(), None)
    loss, sample_size, log = crit(model, {"id": torch.arange(4), "net_input": {"img": img, "mask_indices": mask}})
    assert sample_size == 24 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("final_proj"):
            assert not p.requires_grad and p.grad is None  # unused by the objective (reference B10): frozen
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is None for p in model.teacher.module.parameters())
    assert not any(p is t for p in model.parameters() for t in model.teacher.module.parameters())


def test_in_model_masks_when_batch_has_none():
    model = tiny_model()
    torch.manual_seed(3)
    a = model(batch()[0])["mask"]
    torch.manual_seed(3)
    assert torch.equal(a, model(batch()[0])["mask"]) and (a.sum(1) == 6).all()


def test_ema_step_formula_and_update_guard():
    model = tiny_model()
    teacher0 = {k: v.clone() for k, v in model.teacher.module.state_dict().items()}
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.5)
    model.set_num_updates(0)
    assert model.ema_step(1)
    assert not model.ema_step(1)  # once per optimizer update
    d = model.ema_decay_at(1)
    student = model.encoder.state_dict()
    for k, t in model.teacher.module.state_dict().items():
        if t.is_floating_point():
            assert torch.allclose(t, d * teacher0[k] + (1 - d) * student[k], atol=1e-6), k
        else:
            assert torch.equal(t, student[k])  # relative_position_index buffer copied


def test_half_keeps_teacher_fp32():
    model = tiny_model().half()
    assert model.patch_embed.conv.weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in model.teacher.module.parameters())
    assert all(v.dtype == torch.float32 for k, v in model.state_dict()["_ema"].items() if "index" not in k)
    img, mask = batch(2)
    out = model.train()(img.half(), mask_indices=mask)  # teacher runs under autocast, targets stay fp32
    assert out["pred"].dtype == torch.float16 and out["target"].dtype == torch.float32
    assert torch.isfinite(out["target"]).all()
    (out["pred"].float() - out["target"]).pow(2).mean().backward()
    model.set_num_updates(0)
    assert model.ema_step(1) and all(p.dtype == torch.float32 for p in model.teacher.module.parameters())


@pytest.mark.parametrize("overrides,key", [
    ({"shared_rel_pos_bias": False}, "encoder.blocks.1.attn.relative_position_bias_table"),
    ({"ema_transformer_only": False}, None), ({"layer_scale_init_value": 0.0}, None),
    ({"drop_path": 0.2, "attention_dropout": 0.1}, None)])
def test_variants_train(overrides, key):
    model = tiny_model(**overrides).train()
    sd = model.state_dict()
    if key:
        assert key in sd and "encoder.rel_pos_bias.relative_position_bias_table" not in sd
    if overrides.get("ema_transformer_only") is False:
        assert "patch_embed.conv.weight" in sd["_ema"] and "cls_emb" in sd["_ema"]
    if overrides.get("layer_scale_init_value") == 0.0:
        assert not any("gamma" in k for k in sd)
    img, mask = batch()
    out = model(img, mask_indices=mask)
    (out["pred"] - out["target"]).pow(2).mean().backward()
    assert torch.isfinite(out["target"]).all()
    model.ema_step(1)


def test_target_switches():
    img, mask = batch()
    torch.manual_seed(0)
    base = tiny_model()
    sd = base.state_dict()

    def targets(**kw):
        m = tiny_model(**kw)
        m.load_state_dict(sd)
        return m.eval()(img, mask_indices=mask)["target"]

    inst = targets()
    assert inst.mean(1).abs().max() < 1e-4  # per-layer instance norm (default) -> zero mean over patches
    ln = targets(instance_norm_target_layer=False, layer_norm_targets=True)
    assert ln.mean(-1).abs().max() < 1e-4 and (ln.std(-1, unbiased=False) - 1).abs().max() < 1e-2
    assert not torch.allclose(targets(end_of_block_targets=False), inst)
    assert not torch.allclose(targets(average_top_k_layers=1), inst)


def test_validation_errors_and_warnings(caplog):
    with pytest.raises(ValueError, match="average_top_k_layers"):
        tiny_model(average_top_k_layers=3)
    with pytest.raises(ValueError, match="num_mask_patches"):
        tiny_model(num_mask_patches=17)
    with pytest.raises(ValueError, match="ema_anneal_end_step"):
        from data2vec_plugin.models.data2vec_vision import Data2VecVisionConfig, Data2VecVisionModel
        Data2VecVisionModel(Data2VecVisionConfig(**{k: v for k, v in TINY.items() if k != "ema_anneal_end_step"}))
    with pytest.raises(ValueError, match="input_size"):
        tiny_model()(torch.randn(1, 3, 48, 48), mask=False)
    with caplog.at_level(logging.WARNING):
        model = tiny_model(mlp_ratio=2)
    assert "mlp_ratio=2 is ignored" in caplog.text
    assert model.encoder.blocks[0].mlp[0].out_features == 4 * 32  # like the reference


def test_remove_pretraining_modules_reloads_strictly():
    model = tiny_model()
    sd = model.state_dict()
    ft = tiny_model()
    ft.remove_pretraining_modules()
    ft.load_state_dict(sd, strict=True)  # _ema dropped, final_proj slot ignored, mask_emb / norm kept
    assert ft.teacher is None and ft.final_proj is None
    img, _ = batch()
    with torch.no_grad():
        unnormed = model.encoder.blocks[1](model.encoder.blocks[0](model.embed(img),
                                                                   model.encoder.rel_pos_bias())[0],
                                           model.encoder.rel_pos_bias())[0][:, 1:]
        assert torch.allclose(ft(img, mask=False), unnormed, atol=1e-6)
    ft.load_state_dict(ft.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="teacher was removed"):
        ft(img)


# ------------------------------------------------------------------------------------------------ classifier
@pytest.fixture()
def pretrained_ckpt(tmp_path):
    model = tiny_model()
    cfg = {"model": OmegaConf.to_container(tiny_cfg(_name="data2vec_vision")),
           "task": {"_name": "data2vec_image_pretraining", "data": "unused", "input_size": 32},
           "criterion": {"_name": "data2vec_regression"}}
    path = tmp_path / "pre.pt"
    torch.save({"cfg": cfg, "model": model.state_dict(), "args": None,
                "optimizer_history": [{"num_updates": 3, "optimizer_name": "Adam", "lr_scheduler_state": {},
                                       "criterion_name": "Data2VecRegressionCriterion"}],
                "extra_state": {}, "task_state": {}}, path)
    return path, model


def classifier(path, **kw):
    from data2vec_plugin.models.data2vec_image_classification import (Data2VecImageClassificationConfig,
                                                                       Data2VecImageClassifier)
    cfg = OmegaConf.structured(Data2VecImageClassificationConfig(model_path=str(path), num_classes=5, **kw))
    return Data2VecImageClassifier(cfg)


def test_classifier_mean_pools_all_patches(pretrained_ckpt):
    path, pre = pretrained_ckpt
    clf = classifier(path, mixup=0, cutmix=0).eval()
    assert torch.equal(clf.model.patch_embed.conv.weight, pre.patch_embed.conv.weight)
    assert clf.model.teacher is None and clf.model.final_proj is None
    img, _ = batch(3)
    label = torch.tensor([0, 1, 4])
    with torch.no_grad():
        feats = clf.model(img, mask=False)
        out = clf(img, label)
        logits = clf(img)
    assert torch.allclose(logits, clf.head(clf.fc_norm(feats.mean(1))), atol=1e-6)
    assert not torch.allclose(logits, clf.head(clf.fc_norm(feats[:, 1:].mean(1))), atol=1e-4)
    assert out["sample_size"] == 3 and out["correct"] == (logits.argmax(-1) == label).sum()
    assert torch.allclose(out["losses"]["ce"], torch.nn.functional.cross_entropy(logits, label, reduction="none"))
    args = clf.cfg.pretrained_model_args
    assert args.model._name == "data2vec_vision" and "criterion" not in args
    rebuilt = classifier("/nonexistent.pt", pretrained_model_args=args)  # fine-tuned checkpoints: no model_path
    rebuilt.load_state_dict(clf.state_dict(), strict=True)


def test_classifier_training_losses(pretrained_ckpt):
    clf = classifier(pretrained_ckpt[0], mixup=0.8, cutmix=1.0, label_smoothing=0.1, drop_path=0.1).train()
    assert clf.model.cfg.drop_path == 0.1
    img, _ = batch(4)
    label = torch.tensor([0, 1, 2, 3])
    out = clf(img, label)
    assert out["losses"]["ce"].shape == (4,) and "correct" not in out
    out["losses"]["ce"].sum().backward()
    assert clf.head.weight.grad is not None and clf.model.patch_embed.conv.weight.grad is not None
    assert clf.model.encoder.norm.weight.grad is None and clf.model.mask_emb.grad is None
    odd = clf(img[:3], label[:3])  # timm mixup needs even batches: odd ones stay unmixed
    plain = clf.loss(clf.logits(img[:3]), label[:3], None)
    assert odd["losses"]["ce"].shape == plain.shape == (3,)


def test_layer_decay_tags_and_optimizer_check(pretrained_ckpt):
    from data2vec_plugin.tasks.image_classification import (Data2VecImageClassificationTask,
                                                            Data2VecImageClassificationTaskConfig)
    clf = classifier(pretrained_ckpt[0], layer_decay=0.5)
    scale = {n: p.optim_overrides["optimizer"]["lr_scale"] for n, p in clf.named_parameters()}
    assert scale["head.weight"] == 1.0 and scale["model.encoder.blocks.1.attn.qkv.weight"] == 0.5
    assert scale["model.encoder.blocks.0.attn.qkv.weight"] == 0.25 and scale["model.patch_embed.conv.weight"] == 0.125
    task = Data2VecImageClassificationTask(Data2VecImageClassificationTaskConfig(data="unused"))
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="composite"):
        task.optimizer_step(opt, clf, 0)


def test_token_init_intended_and_reference_variant():
    """Default: BEiT's std 0.02. reference_token_init: the reference's actual trunc_normal_(x, 0.02), i.e. mean
    0.02 / std 1 truncated at +-2 (bench/RESULTS.md explains why this changes the loss curve)."""
    import torch
    torch.manual_seed(0)
    m = tiny_model(embed_dim=256, num_heads=4)
    assert m.mask_emb.std().item() < 0.03 and m.cls_emb.std().item() < 0.03
    r = tiny_model(embed_dim=256, num_heads=4, reference_token_init=True)
    assert 0.7 < r.mask_emb.std().item() < 1.0 and r.mask_emb.abs().max().item() <= 2.0
