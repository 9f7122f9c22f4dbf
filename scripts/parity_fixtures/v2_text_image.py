"""data2vec 2.0 text and image fixtures (v2_text, v2_image, v2_image_tdec, v2_image_encdec)."""
import torch

from .common import SEED
from .text_v1 import _TaskStub, make_dictionary, text_inputs
from .v2_core import v2_common, v2_fixed_mask, v2_run

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
