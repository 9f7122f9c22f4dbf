#!/usr/bin/env python
"""Produce parity fixtures from Meta's REFERENCE data2vec code (fairseq examples).

Run through scripts/make_parity_fixtures.sh (it sets PYTHONPATH to the runtime shim +
`examples` symlink). Writes tests/fixtures/parity/<name>.pt, each a torch.save of plain
containers only (loads with torch.load(weights_only=True)):

    model_cfg      reference model config, plain dict (resolve=True, enum_to_str=True), with "_name"
    state_dict     model.state_dict() as the reference writes it (teacher under "_ema" /
                   "encoder._ema" as a nested dict), tensors cloned
    inputs         dict of input tensors
    mask           bool mask used for the masked forward
    expected       dict of reference outputs (see "expected_doc")
    expected_doc   str: exactly which reference calls produced each entry
    notes          str: per-config notes
    (+ a few extras per modality, e.g. "dict_symbols" for text)

Everything runs on CPU in fp32 with every dropout / layerdrop / drop-path at 0.
The teacher is made different from the student by adding 0.01*randn to every float
entry of the teacher state (then refreshing ema.fp32_params), so that targets differ
from the student's own features.

NEVER import data2vec_plugin in this process.
"""
import argparse
import copy
import math
import os
import sys
import traceback

import torch  # noqa: F401  (import torch/fairseq before anything from examples)
import fairseq  # noqa: F401
import numpy as np
import torch.nn.functional as torchF
from omegaconf import OmegaConf

assert "data2vec_plugin" not in sys.modules, "never import the plugin next to the reference"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 1234

# ----------------------------------------------------------------------------- helpers


def plain(obj):
    """Recursively convert to plain containers; tensors are detached + cloned (CPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not a plain value: {type(obj)}")


def scalar(t):
    if isinstance(t, torch.Tensor):
        return float(t.detach().float().item())
    return float(t)


class FProxy:
    """Stands in for `torch.nn.functional` inside a reference module; records the
    (prediction, target) pairs handed to mse_loss / smooth_l1_loss."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(torchF, name)

    def mse_loss(self, input, target, *a, **kw):
        self.calls.append((input.detach().clone(), target.detach().clone()))
        return torchF.mse_loss(input, target, *a, **kw)

    def smooth_l1_loss(self, input, target, *a, **kw):
        self.calls.append((input.detach().clone(), target.detach().clone()))
        return torchF.smooth_l1_loss(input, target, *a, **kw)


class record_loss_inputs:
    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.orig = self.module.F
        self.proxy = FProxy()
        self.module.F = self.proxy
        return self.proxy

    def __exit__(self, *exc):
        self.module.F = self.orig
        return False


def build_cfg(dc_cls, overrides, root_extra=None):
    """Resolve a reference model config the way fairseq-hydra-train does:
    structured defaults + overrides under a root (so II("model.x") / II("optimization.x")
    resolve), to_container(resolve=True, enum_to_str=True), then merge back into the
    dataclass (fairseq.dataclass.utils.merge_with_parent)."""
    from fairseq.dataclass.utils import merge_with_parent

    root = {
        "common": {"seed": SEED, "tpu": False},
        "optimization": {"max_update": 100},
        "task": {"tokens_per_sample": 32},
    }
    if root_extra:
        root.update(root_extra)
    root = OmegaConf.create(root)
    model_node = OmegaConf.merge(OmegaConf.structured(dc_cls), OmegaConf.create(overrides))
    root.model = model_node
    plain_cfg = OmegaConf.to_container(root.model, resolve=True, enum_to_str=True)
    cfg = merge_with_parent(dc_cls(), OmegaConf.create(plain_cfg), remove_missing=False)
    return cfg, plain_cfg


def perturb_teacher(ema, gen, scale=0.01):
    """Make the teacher differ from the student: teacher_float_entry += scale*randn,
    for every float entry of the teacher state dict (params and float buffers, except
    the fairseq 'version' buffers), then refresh ema.fp32_params."""
    with torch.no_grad():
        sd = ema.model.state_dict()
        for k in sorted(sd.keys()):
            t = sd[k]
            if not torch.is_floating_point(t) or "version" in k:
                continue
            t.add_(scale * torch.randn(t.shape, generator=gen, dtype=t.dtype))
        ema.build_fp32_params()
        # fp32_params must now equal the teacher's state
        sd2 = ema.model.state_dict()
        for k, v in ema.fp32_params.items():
            assert torch.equal(v, sd2[k].float() if torch.is_floating_point(sd2[k]) else sd2[k]), k


def check_state_dict_reload(model_factory, state_dict, prepare=None):
    """Reload the saved state dict into a freshly built reference model (strict)."""
    m = model_factory()
    if prepare is not None:
        prepare(m)
    sd = copy.deepcopy(state_dict)
    m.load_state_dict(sd, strict=True)
    return m


def recompute_loss(pred, target, loss_beta, scale):
    if loss_beta == 0:
        l = torchF.mse_loss(pred.float(), target.float(), reduction="none").sum(-1)
    else:
        l = torchF.smooth_l1_loss(pred.float(), target.float(), reduction="none", beta=loss_beta).sum(-1)
    return l.sum() * scale


def save_fixture(out_dir, name, obj):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.pt")
    obj = plain(obj)
    torch.save(obj, path)
    back = torch.load(path, weights_only=True)
    assert set(back.keys()) == set(obj.keys())
    print(f"[ok] wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB)", file=sys.stderr)
    return path


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


# ----------------------------------------------------------------------------- text v1

TEXT_WORDS = 36


def make_dictionary():
    from fairseq.data import Dictionary

    d = Dictionary()
    for i in range(TEXT_WORDS):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


class _TaskStub:
    def __init__(self, dictionary):
        self.source_dictionary = dictionary
        self.target_dictionary = dictionary
        self.dictionary = dictionary

        class C:
            data = ""

        self.cfg = C()


def text_inputs(d):
    g = torch.Generator().manual_seed(SEED + 3)
    B, T = 2, 12
    lengths = [12, 9]
    nspecial = d.nspecial
    orig = torch.full((B, T), d.pad(), dtype=torch.long)
    for b, L in enumerate(lengths):
        words = torch.randint(nspecial, nspecial + TEXT_WORDS, (L - 2,), generator=g)
        orig[b, 0] = d.bos()
        orig[b, 1 : L - 1] = words
        orig[b, L - 1] = d.eos()
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, pos in enumerate([[2, 3, 4, 8], [1, 5, 6]]):
        mask[b, pos] = True
    mask_idx = d.index("<mask>")
    src_tokens = orig.masked_fill(mask, mask_idx)
    # masked_lm target stream (fairseq MaskTokensDataset): original token at masked positions, pad elsewhere
    target_stream = torch.full_like(orig, d.pad()).masked_scatter(mask, orig[mask])
    src_lengths = torch.tensor(lengths)
    return orig, src_tokens, target_stream, mask, src_lengths


def make_text(name, head_layers, extra, out_dir):
    from examples.data2vec.models import data2vec_text as ref
    from examples.data2vec.models.data2vec_text import Data2VecTextConfig, Data2VecTextModel

    D = 32
    overrides = dict(
        _name="data2vec_text",
        max_positions=32,
        head_layers=head_layers,
        average_top_k_layers=2,
        instance_norm_target_layer=True,
        ema_decay=0.999,
        ema_end_decay=0.9999,
        ema_anneal_end_step=100,
        ema_transformer_layers_only=True,
        transformer=dict(
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            layernorm_embedding=True,
            activation_fn="gelu",
            no_scale_embedding=True,
            max_source_positions=32,
            encoder=dict(
                embed_dim=D,
                ffn_embed_dim=64,
                layers=2,
                attention_heads=4,
                normalize_before=False,
                learned_pos=True,
                layerdrop=0.0,
            ),
            # the nested TransformerConfig interpolation ${model.decoder.embed_dim} cannot resolve
            # under model.transformer: set explicitly (spec B7)
            decoder=dict(input_dim=D, output_dim=D),
        ),
    )
    overrides.update(extra)
    cfg, plain_cfg = build_cfg(Data2VecTextConfig, overrides)

    d = make_dictionary()
    task = _TaskStub(d)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = Data2VecTextModel.build_model(cfg, task)
    model.set_num_updates(1)  # creates the EMA teacher
    assert model.encoder.ema is not None
    gen = torch.Generator().manual_seed(SEED + 1)
    perturb_teacher(model.encoder.ema, gen)
    model.eval()

    orig, src_tokens, target_stream, mask, src_lengths = text_inputs(d)

    with torch.no_grad():
        feats, extra_out = model(orig, features_only=True, return_all_hiddens=True)
        feats_masked, _ = model(src_tokens, features_only=True)

    def masked_forward(target_tokens):
        with record_loss_inputs(ref) as rec, torch.no_grad():
            out = model(src_tokens, target_tokens=target_tokens, src_lengths=src_lengths)
        assert len(rec.calls) == 1
        pred, target = rec.calls[0]
        return out, pred, target

    loss_scale = cfg.loss_scale
    scale = 1 / math.sqrt(D) if loss_scale <= 0 else loss_scale

    results = {}
    for key, tt in (("ref_target_stream", target_stream), ("full_teacher_input", orig)):
        out, pred, target = masked_forward(tt)
        re = recompute_loss(pred, target, cfg.loss_beta, scale)
        assert torch.allclose(re, out["losses"]["main"], rtol=1e-5, atol=1e-6), (re, out)
        model.train()
        out_t, pred_t, target_t = masked_forward(tt)
        model.eval()
        results[key] = {
            "target_tokens": tt,
            "targets": target,
            "pred": pred,
            "loss": out["losses"]["main"],
            "sample_size": int(out["sample_size"]),
            "ema_decay": float(out["logs"]["ema_decay"]),
            "train_mode": {
                "targets": target_t,
                "pred": pred_t,
                "loss": out_t["losses"]["main"],
                "sample_size": int(out_t["sample_size"]),
            },
        }
    assert not torch.allclose(results["ref_target_stream"]["targets"], results["full_teacher_input"]["targets"])

    expected = {
        "features": feats,
        "inner_states": extra_out["inner_states"],
        "features_masked_input": feats_masked,
    }
    # default masked-forward entries = the reference behaviour (teacher sees the masked_lm target stream)
    for k in ("targets", "pred", "loss", "sample_size", "ema_decay", "train_mode"):
        expected[k] = results["ref_target_stream"][k]
    expected["full_teacher_input"] = results["full_teacher_input"]

    doc = (
        "model = Data2VecTextModel.build_model(cfg, task) (task stub: source_dictionary from dict_symbols, cfg.data=''); "
        "model.set_num_updates(1) (creates the EMA teacher of encoder.sentence_encoder); teacher perturbed (every float entry "
        "of model.encoder.ema.model.state_dict() except 'version' += 0.01*randn, then build_fp32_params()); model.eval(). "
        "features = model(inputs['src_tokens_orig'], features_only=True, return_all_hiddens=True)[0] (B,T,D) on the UNMASKED "
        "tokens; inner_states = same call [1]['inner_states'] (list of T,B,C: embeddings output then each layer); "
        "features_masked_input = model(inputs['src_tokens'], features_only=True)[0]. NOTE: pad positions of row 1 hold "
        "whatever the reference computes there; compare at non-pad positions. "
        "Masked forward: out = model(inputs['src_tokens'], target_tokens=T, src_lengths=inputs['src_lengths']) in eval mode; "
        "loss = out['losses']['main'], sample_size = out['sample_size'] (= mask.sum()); targets/pred = (target, input) "
        "pair passed to F.mse_loss/F.smooth_l1_loss inside the reference (rows ordered like x[mask]); "
        "pred = regression_head(x[mask]). Top-level targets/pred/loss use T = inputs['target_tokens'] (the masked_lm target "
        "stream: original token at masked positions, pad elsewhere = REFERENCE behaviour, upstream bug B4). "
        "expected['full_teacher_input'] holds the same with T = inputs['src_tokens_orig'] (teacher sees the full original "
        "sentence = the plugin's fixed behaviour). train_mode = same after model.train()."
    )
    notes = (
        f"{name}: dictionary = fairseq Dictionary() (<s>=0,<pad>=1,</s>=2,<unk>=3) + w0..w{TEXT_WORDS - 1} + <mask> "
        f"(index {d.index('<mask>')}, len {len(d)}); symbols in 'dict_symbols'. Inputs B=2, T=12, row 1 has 9 real tokens "
        "(<s> ... </s>) then 3 pads. Mask fixed by constructing src_tokens with <mask> at mask positions (row0 [2,3,4,8], "
        "row1 [1,5,6]); the reference selects masked positions as src_tokens == <mask>. "
        f"loss_beta={cfg.loss_beta}, loss_scale={cfg.loss_scale} (reference: loss_scale<=0 -> 1/sqrt(D); None crashes)."
    )
    fixture = {
        "name": name,
        "model_cfg": plain_cfg,
        "state_dict": {k: (dict(v) if isinstance(v, dict) else v) for k, v in model.state_dict().items()},
        "dict_symbols": list(d.symbols),
        "inputs": {
            "src_tokens_orig": orig,
            "src_tokens": src_tokens,
            "target_tokens": target_stream,
            "src_lengths": src_lengths,
        },
        "mask": mask,
        "expected": expected,
        "expected_doc": doc,
        "notes": notes,
    }

    def factory():
        torch.manual_seed(0)
        return Data2VecTextModel.build_model(cfg, task)

    m2 = check_state_dict_reload(factory, plain(fixture["state_dict"]), prepare=lambda m: m.set_num_updates(1))
    m2.eval()
    with torch.no_grad():
        f2 = m2(orig, features_only=True)[0]
        o2 = m2(src_tokens, target_tokens=target_stream)
    assert torch.allclose(f2, feats, atol=1e-6)
    assert torch.allclose(o2["losses"]["main"], expected["loss"], rtol=1e-6, atol=1e-6)
    return save_fixture(out_dir, name, fixture)


# ----------------------------------------------------------------------------- vision v1


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


# ----------------------------------------------------------------------------- v2 (data2vec_multi)


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


def make_v2_audio(out_dir, name="v2_audio", audio_extra=None, notes_extra="", extra=None, check=None):
    dec = dict(
        decoder_dim=16,
        decoder_groups=4,
        decoder_kernel=3,
        decoder_layers=2,
        input_dropout=0.0,
    )
    overrides = v2_common()
    overrides.update(
        supported_modality="AUDIO",
        loss_beta=0.0,
        loss_scale=None,
        ema_encoder_only=False,
        norm_eps=1e-5,
        modalities=dict(
            audio=dict(
                feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 2",
                extractor_mode="layer_norm",
                conv_pos_depth=2,
                conv_pos_width=12,
                conv_pos_groups=4,
                prenet_depth=0,
                mask_prob=0.5,
                mask_length=5,
                mask_noise_std=0.0,
                inverse_mask=False,
                ema_local_encoder=False,
                use_alibi_encoder=True,
                learned_alibi_scale=True,
                learned_alibi_scale_per_head=True,
                prenet_layerdrop=0.0,
                prenet_dropout=0.0,
                decoder=dec,
            )
        ),
    )
    overrides["modalities"]["audio"].update(audio_extra or {})

    def make_inputs(model):
        g = torch.Generator().manual_seed(SEED + 2)
        source = torch.randn(2, AUDIO_T_SAMPLES, generator=g)
        source[1, AUDIO_PAD_AFTER:] = 0.0
        padding_mask = torch.zeros(2, AUDIO_T_SAMPLES, dtype=torch.bool)
        padding_mask[1, AUDIO_PAD_AFTER:] = True
        T = 199
        # masked positions restricted to the valid frames of every row (row 1 has 149 valid frames)
        m = torch.zeros(4, T, dtype=torch.bool)
        g2 = torch.Generator().manual_seed(SEED + 7)
        for r in range(4):
            idx = torch.randperm(149, generator=g2)[:60]
            m[r, idx] = True
        inputs = (
            {"source": source, "padding_mask": padding_mask},
            {"source": source, "padding_mask": padding_mask},
            m,
        )
        if check is not None:  # runs on a copy of the model: nothing of the fixture depends on it
            check(copy.deepcopy(model), *inputs[1:])
        return inputs

    return v2_run(
        name,
        "AUDIO",
        overrides,
        make_inputs,
        None,
        out_dir,
        "inputs['source'], padding_mask=inputs['padding_mask']",
        "Audio: 2 x 4000 samples, row 1 padded after 3000 (199 frames, 149 valid); 60 masked frames per row, all within "
        "the first 149 frames. ALiBi with learned per-head scale, conv pos depth 2 width 12 (k=6), prenet_depth 0, "
        "ema_encoder_only=False, ema_local_encoder=False (teacher = blocks + pos-conv/alibi_scale/context_encoder on the "
        "student's local features)." + notes_extra,
        extra=extra,
    )


def make_v2_text(out_dir):
    d = make_dictionary()
    task = _TaskStub(d)
    dec = dict(
        decoder_dim=32,
        decoder_groups=1,
        decoder_kernel=3,
        decoder_layers=2,
        decoder_residual=False,
        projection_layers=2,
        projection_ratio=2.0,
        input_dropout=0.0,
    )
    overrides = v2_common()
    overrides.update(
        supported_modality="TEXT",
        loss_beta=0.0,
        loss_scale=1.0,
        ema_encoder_only=True,
        norm_eps=1e-5,
        modalities=dict(
            text=dict(
                mask_prob=0.48,
                mask_length=1,
                mask_noise_std=0.0,
                prenet_depth=0,
                max_source_positions=32,
                dropout=0.0,
                decoder=dec,
            )
        ),
    )

    def make_inputs(model):
        orig, _, _, _, _ = text_inputs(d)
        padding_mask = orig.eq(d.pad())
        m = v2_fixed_mask(2, orig.size(1), 2, 4, SEED + 7)
        # keep masks off padding for readability (the reference's own random masking ignores padding, B19)
        for r in range(4):
            b = r // 2
            if padding_mask[b].any():
                valid = (~padding_mask[b]).nonzero().view(-1)
                g = torch.Generator().manual_seed(SEED + 11 + r)
                idx = valid[torch.randperm(len(valid), generator=g)[:4]]
                m[r] = False
                m[r, idx] = True
        return (
            {"source": orig, "padding_mask": padding_mask},
            {"source": orig, "padding_mask": padding_mask},
            m,
        )

    fix = v2_run(
        "v2_text",
        "TEXT",
        overrides,
        make_inputs,
        task,
        out_dir,
        "inputs['source'], padding_mask=inputs['padding_mask']",
        "Text: same dictionary/tokens as text_head* (dict_symbols stored), B=2, T=12, row 1 padded after 9 tokens; "
        "4 masked tokens per row (never pads). ema_encoder_only=True (teacher = blocks only, fed the student's own "
        "unmasked contextualized features).",
    )
    obj = torch.load(fix, weights_only=True)
    obj["dict_symbols"] = list(d.symbols)
    torch.save(obj, fix)
    return fix


def make_v2_image(out_dir, name="v2_image", image_extra=None, dec_extra=None, notes_extra="", prepare=None):
    dec = dict(
        decoder_dim=16,
        decoder_groups=4,
        decoder_kernel=3,
        decoder_layers=2,
        input_dropout=0.0,
    )
    dec.update(dec_extra or {})
    overrides = v2_common()
    overrides.update(
        supported_modality="IMAGE",
        loss_beta=0.0,
        loss_scale=None,
        ema_encoder_only=False,
        norm_eps=1e-6,
        layer_norm_targets=True,
        end_of_block_targets=False,
        min_target_var=0.0,
        min_pred_var=0.0,
        cls_loss=0.01,
        modalities=dict(
            image=dict(
                input_size=32,
                patch_size=8,
                embed_dim=32,
                inverse_mask=True,
                mask_prob=0.8,
                mask_prob_adjust=0.07,
                mask_length=3,
                mask_noise_std=0.0,
                prenet_depth=1,
                ema_local_encoder=True,
                num_extra_tokens=1,
                init_extra_token_zero=False,
                use_alibi_encoder=False,
                decoder=dec,
            )
        ),
    )
    overrides["modalities"]["image"].update(image_extra or {})

    def make_inputs(model):
        g = torch.Generator().manual_seed(SEED + 2)
        img = torch.randn(2, 3, 32, 32, generator=g)
        m = v2_fixed_mask(2, 16, 2, 12, SEED + 7)
        return ({"source": img}, {"source": img}, m)

    return v2_run(
        name,
        "IMAGE",
        overrides,
        make_inputs,
        None,
        out_dir,
        "inputs['source']",
        "Image: 2 x 3 x 32 x 32, patch 8 -> 16 patches; 12 masked patches per row (random per row, fixed). "
        "1 extra (cls) token, cls_loss=0.01 (losses also contain 'cls'), prenet_depth 1, ema_local_encoder=True "
        "(teacher has its own patch embed + prenet and sees the raw image), layer_norm_targets=True, fixed sin-cos positions."
        + notes_extra,
        prepare=prepare,
    )


def sharpen_decoder_attention(model, std=0.5):
    """Re-draw the image decoder's attention input projections with a larger std so attention is far from
    uniform (BERT init's 0.02 makes it nearly uniform, hiding key/position misalignments in the fixture)."""
    g = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        for n, p in model.modality_encoders["IMAGE"].decoder.named_parameters():
            if n.endswith(("attn.qkv.weight", "attn.q_proj.weight", "attn.kv_proj.weight")):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def make_v2_image_tdec(out_dir):
    return make_v2_image(
        out_dir,
        "v2_image_tdec",
        dict(transformer_decoder=True, enc_dec_transformer=False),
        dict(decoder_dim=16, decoder_layers=2, add_positions_masked=True),
        " Decoder: reference TransformerDecoder (transformer_decoder=true, enc_dec_transformer=false): input_proj "
        "32->16, 2 self-attention AltBlocks (dim 16, 8 heads, post-LN, mlp_ratio 2), proj 16->32, over the full "
        "sequence (mask tokens + add_positions_masked); predictions selected at the masked positions. "
        "Decoder attn.qkv weights re-drawn N(0, 0.5^2) after init (sharper attention).",
        prepare=sharpen_decoder_attention,
    )


def make_v2_image_encdec(out_dir):
    return make_v2_image(
        out_dir,
        "v2_image_encdec",
        dict(transformer_decoder=True, enc_dec_transformer=True),
        dict(decoder_dim=16, decoder_layers=2, add_positions_all=True),
        " Decoder: reference EncDecTransformerDecoder (transformer_decoder=true, enc_dec_transformer=true): queries "
        "= fixed positions of the masked patches (pos[mask]), keys/values = encoder output without the cls token + "
        "positions of the kept patches (add_positions_all=true); input_proj 32->16, 2 cross-attention blocks "
        "(8 heads, qkv bias, post-LN, no attention residual in block 0), proj 16->32; output = masked rows only. "
        "Decoder attn.q_proj/kv_proj weights re-drawn N(0, 0.5^2) after init (sharper attention).",
        prepare=sharpen_decoder_attention,
    )


class reference_learned_alibi_fix:
    """Scoped fix of the released reference so that `learned_alibi: true` builds and runs at all.

    As released, ModalitySpecificEncoder.__init__ calls the fixed-table function with `scale=1.0`, which
    `get_alibi_bias` does not accept (TypeError at build), and contextualized_features calls the learned
    replacement `_learned_alibi_bias` without its required `scale` (TypeError at forward). Inside this
    context: the audio module's `get_alibi_bias` accepts `scale` (multiplies by it; 1.0 at init) and
    `_learned_alibi_bias` defaults `scale` to 1.0 (the ALiBi scale parameter is applied afterwards, as for the
    fixed table). Nothing else of the reference changes; everything is restored on exit.
    """

    def __enter__(self):
        from examples.data2vec.models.modalities import audio, base

        self.saved = (audio.get_alibi_bias, base._learned_alibi_bias)
        fixed, learned = self.saved

        def get_alibi_bias(*args, scale=1.0, **kwargs):
            bias = fixed(*args, **kwargs)
            return bias if scale == 1.0 else bias * scale

        def learned_alibi_bias(alibi_bias, batch_size, time_steps, heads, dtype, device, scale=1.0):
            return learned(alibi_bias, batch_size, time_steps, heads, scale, dtype, device)

        audio.get_alibi_bias, base._learned_alibi_bias = get_alibi_bias, learned_alibi_bias
        return self

    def __exit__(self, *exc):
        from examples.data2vec.models.modalities import audio, base

        audio.get_alibi_bias, base._learned_alibi_bias = self.saved
        return False


def make_v2_audio_learned_alibi(out_dir):
    """v2 audio with `learned_alibi: true`, alibi_max_pos=100 < 199 frames (replicate-padding path)."""
    dec = dict(decoder_dim=16, decoder_groups=4, decoder_kernel=3, decoder_layers=2, input_dropout=0.0)
    overrides = v2_common()
    overrides.update(
        supported_modality="AUDIO",
        loss_beta=0.0,
        loss_scale=None,
        ema_encoder_only=False,
        norm_eps=1e-5,
        modalities=dict(
            audio=dict(
                feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 2",
                extractor_mode="layer_norm",
                conv_pos_depth=2,
                conv_pos_width=12,
                conv_pos_groups=4,
                prenet_depth=1,
                mask_prob=0.5,
                mask_length=5,
                mask_noise_std=0.0,
                ema_local_encoder=False,
                use_alibi_encoder=True,
                learned_alibi=True,
                alibi_max_pos=100,
                learned_alibi_scale=True,
                learned_alibi_scale_per_layer=True,
                decoder=dec,
            )
        ),
    )

    def make_inputs(model):
        # v2_run has no hook for the student's parameters: perturb the learned table here (called after the
        # build and the teacher perturbation, before any forward and before the state dict is saved)
        with torch.no_grad():
            table = model.modality_encoders["AUDIO"].alibi_bias
            gp = torch.Generator().manual_seed(SEED + 5)
            table.add_(0.05 * torch.randn(table.shape, generator=gp))
        g = torch.Generator().manual_seed(SEED + 2)
        source = torch.randn(2, AUDIO_T_SAMPLES, generator=g)
        source[1, AUDIO_PAD_AFTER:] = 0.0
        padding_mask = torch.zeros(2, AUDIO_T_SAMPLES, dtype=torch.bool)
        padding_mask[1, AUDIO_PAD_AFTER:] = True
        m = torch.zeros(4, 199, dtype=torch.bool)
        g2 = torch.Generator().manual_seed(SEED + 7)
        for r in range(4):
            m[r, torch.randperm(149, generator=g2)[:60]] = True
        inputs = {"source": source, "padding_mask": padding_mask}
        return inputs, dict(inputs), m

    with reference_learned_alibi_fix():
        return v2_run(
            "v2_audio_learned_alibi",
            "AUDIO",
            overrides,
            make_inputs,
            None,
            out_dir,
            "inputs['source'], padding_mask=inputs['padding_mask']",
            "Audio as v2_audio (2 x 4000 samples, 199 frames, row 1 has 149 valid; 60 masked frames per row) with "
            "learned_alibi=True, alibi_max_pos=100 (< 199: the (1, 4, 100, 100) table is replicate-padded by 50 on "
            "every side and cropped to 199), prenet_depth 1, per-layer learned ALiBi scales, ema_encoder_only=False. "
            "The student's alibi_bias got += 0.05*randn (seed SEED+5) after the build so it differs from the fixed "
            "table (the teacher's copy got the usual 0.01*randn). The reference needs reference_learned_alibi_fix "
            "(two call-signature bugs: `scale` passed to get_alibi_bias, missing in the forward call).",
        )


V2_CHANNEL_PROB = 0.3
V2_CHANNEL_LENGTH = 4


def v2_channel_mask(rows, channels, seed=SEED + 13):
    """(rows, channels) bool channel mask drawn once with the reference's own compute_mask_indices. Its RNG is
    np.random.default_rng(seed_i) per row, fresh OS entropy unless seed/epoch/indices are all given (the reference's
    channel call gives none): pass them so the fixture is reproducible (seed_i = hash((seed, 1, row)) % 1e6)."""
    from fairseq.data.data_utils import compute_mask_indices

    m = compute_mask_indices((rows, channels), None, V2_CHANNEL_PROB, V2_CHANNEL_LENGTH,
                             seed=seed, epoch=1, indices=torch.arange(rows))
    m = torch.from_numpy(m).bool()
    assert m.any(1).all() and not m.all(1).any() and not (m == m[:1]).all(), m
    return m


class reference_fixed_channel_mask:
    """Inside: the reference's `compute_mask_indices` as imported in modalities/base.py returns `mask` (as numpy) for
    the channel-mask call of ModalitySpecificEncoder.apply_mask (padding_mask None, shape (B', embed_dim)); every
    other call goes to the original. Counts the replaced calls; restored on exit."""

    def __init__(self, mask):
        self.mask = mask
        self.calls = 0

    def __enter__(self):
        from examples.data2vec.models.modalities import base

        self.orig = orig = base.compute_mask_indices

        def compute_mask_indices(shape, padding_mask, *args, **kwargs):
            if padding_mask is None and tuple(shape) == tuple(self.mask.shape):
                self.calls += 1
                return self.mask.numpy().copy()
            return orig(shape, padding_mask, *args, **kwargs)

        base.compute_mask_indices = compute_mask_indices
        return self

    def __exit__(self, *exc):
        from examples.data2vec.models.modalities import base

        base.compute_mask_indices = self.orig
        return False


def check_channel_mask_matters(model, fwd_kwargs, mask):
    """The fixed channel mask must change the student's predictions (it only reaches them through the pos conv)."""
    enc_cfg = model.modality_encoders["AUDIO"].modality_cfg
    preds = []
    for prob in (V2_CHANNEL_PROB, 0.0):
        enc_cfg.mask_channel_prob = prob
        with record_loss_inputs(sys.modules["examples.data2vec.models.data2vec2"]) as rec, torch.no_grad():
            model(**fwd_kwargs, mask=True, precomputed_mask=mask.clone())
        preds.append(rec.calls[-1][0])
    assert not torch.allclose(preds[0], preds[1], atol=1e-4), "channel mask has no effect"


def make_v2_audio_channel(out_dir):
    """v2 audio with mask_channel_prob > 0; the reference's random channel mask is replaced by a fixed one."""
    cm = v2_channel_mask(4, 32)  # (B * clone_batch, embed_dim)
    with reference_fixed_channel_mask(cm) as fixed:
        path = make_v2_audio(
            out_dir,
            "v2_audio_channel",
            dict(mask_channel_prob=V2_CHANNEL_PROB, mask_channel_length=V2_CHANNEL_LENGTH),
            f" Channel masking: mask_channel_prob={V2_CHANNEL_PROB}, mask_channel_length={V2_CHANNEL_LENGTH}; the "
            "reference draws the (B*clone_batch, embed_dim) channel mask in ModalitySpecificEncoder.apply_mask with "
            "compute_mask_indices((B', C), None, p, len), unseeded (np.random.default_rng(None) per row): that call "
            "was patched (modalities/base.py's compute_mask_indices) to return the fixed mask stored in 'channel_mask' (True = channel zeroed, "
            "rows ordered like the mask rows), drawn once by compute_mask_indices(seed=SEED+13, epoch=1, indices=rows). "
            "The reference zeroes those channels (every time step) of the masked full sequence that feeds the relative positional "
            "conv; the kept tokens come from the unmasked features. Pass it as forward(channel_mask=...).",
            extra={"channel_mask": cm},
            check=check_channel_mask_matters,
        )
    # eval + train masked forwards, the reload check and the 2 forwards of check_channel_mask_matters (1 with prob 0)
    assert fixed.calls == 4, fixed.calls
    return path


# ----------------------------------------------------------------------------- main


def quiet(fn, *args):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


ALL = {
    "audio_default_pc1": lambda out: make_audio("audio_default_pc1", {}, out),
    "audio_ln_pc5": lambda out: make_audio(
        "audio_ln_pc5",
        dict(
            extractor_mode="layer_norm",
            pos_conv_depth=5,
            conv_pos=20,
            layer_norm_target_layer=True,
            loss_beta=0.25,
            loss_scale=0.5,
        ),
        out,
    ),
    "text_head1": lambda out: make_text("text_head1", 1, dict(loss_beta=0.0, loss_scale=0.0), out),
    "text_head2": lambda out: make_text(
        "text_head2", 2, dict(loss_beta=4.0, loss_scale=1.0, layer_norm_target_layer=True), out
    ),
    # the reference vision code print()s tensors/shapes on every forward (spec B9): silence stdout
    "vision_eob": lambda out: quiet(make_vision, "vision_eob", True, out),
    "vision_ffn": lambda out: quiet(make_vision, "vision_ffn", False, out),
    "v2_audio": make_v2_audio,
    "v2_text": make_v2_text,
    "v2_image": make_v2_image,
    "v2_image_tdec": make_v2_image_tdec,
    "v2_image_encdec": make_v2_image_encdec,
    "v2_audio_learned_alibi": make_v2_audio_learned_alibi,
    "v2_audio_channel": make_v2_audio_channel,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma list of fixture names")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "parity"))
    args = ap.parse_args()

    torch.set_num_threads(1)  # deterministic reductions
    names = [n for n in args.only.split(",") if n] or list(ALL)
    failed = []
    for n in names:
        try:
            ALL[n](args.out)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failed.append(n)
    assert "data2vec_plugin" not in sys.modules
    if failed:
        print("FAILED:", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
