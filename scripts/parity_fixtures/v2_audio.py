"""data2vec 2.0 audio fixtures (v2_audio, v2_audio_learned_alibi)."""
import copy

import torch

from .audio_v1 import AUDIO_PAD_AFTER, AUDIO_T_SAMPLES
from .common import SEED
from .v2_core import v2_common, v2_run

DECODER = dict(decoder_dim=16, decoder_groups=4, decoder_kernel=3, decoder_layers=2, input_dropout=0.0)


def audio_overrides(**audio):
    """v2 config of the audio fixtures: the shared v2 model with a tiny audio modality (``audio`` overrides)."""
    overrides = v2_common()
    overrides.update(supported_modality="AUDIO", loss_beta=0.0, loss_scale=None, ema_encoder_only=False,
                     norm_eps=1e-5)
    base = dict(feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 2", extractor_mode="layer_norm",
                conv_pos_depth=2, conv_pos_width=12, conv_pos_groups=4, prenet_depth=0, mask_prob=0.5,
                mask_length=5, mask_noise_std=0.0, ema_local_encoder=False, use_alibi_encoder=True,
                learned_alibi_scale=True, learned_alibi_scale_per_head=True, decoder=dict(DECODER))
    base.update(audio)
    overrides["modalities"] = dict(audio=base)
    return overrides


def audio_inputs():
    """2 x 4000 samples (row 1 padded after 3000: 199 frames, 149 valid) and 4 x 199 masks (2 clones), 60 masked
    frames per row within the first 149 -> (model inputs, expected inputs, mask)."""
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


def make_v2_audio(out_dir, name="v2_audio", audio_extra=None, notes_extra="", extra=None, check=None):
    overrides = audio_overrides(inverse_mask=False, prenet_layerdrop=0.0, prenet_dropout=0.0, **(audio_extra or {}))

    def make_inputs(model):
        inputs = audio_inputs()
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
    overrides = audio_overrides(prenet_depth=1, learned_alibi=True, alibi_max_pos=100,
                                learned_alibi_scale_per_head=False, learned_alibi_scale_per_layer=True)

    def make_inputs(model):
        # v2_run has no hook for the student's parameters: perturb the learned table here (called after the
        # build and the teacher perturbation, before any forward and before the state dict is saved)
        with torch.no_grad():
            table = model.modality_encoders["AUDIO"].alibi_bias
            gp = torch.Generator().manual_seed(SEED + 5)
            table.add_(0.05 * torch.randn(table.shape, generator=gp))
        return audio_inputs()

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
