"""data2vec 1.0 text fixtures (text_head1, text_head2) and the tiny dictionary / task stub shared with v2 text."""
import math

import torch
import numpy as np

from .common import (SEED, build_cfg, check_state_dict_reload, perturb_teacher, plain, recompute_loss,
                     record_loss_inputs, save_fixture)

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
