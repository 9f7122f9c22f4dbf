"""Reference data2vec 2.0 training checkpoints load through fairseq's load_model_ensemble_and_task.

Besides the base configs (v2_audio, v2_text, v2_image), three checkpoints were trained by the reference with the
2.0 options beyond them (scripts/ref_configs/v2_image_tdec.yaml, v2_image_encdec.yaml, v2_audio_learned_alibi.yaml;
the last one needs the runtime fix P6 of a reference bug, scripts/ref_shim_p6.py): the image self-attention
TransformerDecoder, the image EncDecTransformerDecoder, and an audio learned ALiBi table of 32 positions used on
799 frames (replicate-padded). Their decoders / tables must come back exactly, through a strict state-dict load.
"""
import copy
import shutil

import pytest
import torch
from fairseq import checkpoint_utils

import data2vec_plugin  # noqa: F401
from data2vec_plugin.models.data2vec_multi import Data2VecMultiModel

from .helpers import FIX

CKPT = FIX / "ref_ckpt"
BASE = ["v2_audio", "v2_text", "v2_image"]
OPTIONS = ["v2_image_tdec", "v2_image_encdec", "v2_audio_learned_alibi"]
DECODER_CLASS = {"v2_image_tdec": "TransformerDecoder", "v2_image_encdec": "EncDecTransformerDecoder",
                 "v2_audio_learned_alibi": "ConvDecoder", "v2_image": "ConvDecoder", "v2_audio": "ConvDecoder"}
TABLE = "modality_encoders.AUDIO.alibi_bias"


def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    shutil.copy(CKPT / "text_dict.txt", d / "dict.txt")
    return d


def load(path, tmp_path):
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)],
                                                                      arg_overrides={"data": str(data_dir(tmp_path))})
    return models[0].eval(), task


def saved(name):
    return torch.load(CKPT / f"{name}.pt", weights_only=True)


def source(name):
    exp = torch.load(CKPT / f"{name}.expected.pt", weights_only=True)
    inp = exp["inputs"]
    return inp.get("source", inp.get("src_tokens", inp.get("img"))), exp


@torch.no_grad()
def features(model, name, task=None):
    src, _ = source(name)
    pad = src.eq(task.source_dictionary.pad()) if name == "v2_text" else None
    return model.extract_features(src, padding_mask=pad, mask=False)["x"]


def flat(state, prefix=""):
    """A model state dict with the teacher's nested ``_ema`` dict flattened to ``_ema.<key>``."""
    out = {}
    for k, v in state.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def student_decoder(state_model):
    return {k: v for k, v in state_model.items() if ".decoder." in k and not k.startswith("_ema")}


@pytest.mark.parametrize("name", BASE + OPTIONS)
def test_reference_checkpoint_loads_with_teacher(name, tmp_path):
    model, task = load(CKPT / f"{name}.pt", tmp_path)
    assert isinstance(model, Data2VecMultiModel)
    _, exp = source(name)
    torch.testing.assert_close(features(model, name, task), exp["features"], atol=1e-5, rtol=0)
    ema = saved(name)["model"]["_ema"]
    ours = model.teacher.state_dict()
    assert set(ours) == set(ema) and len(ema) == exp["n_teacher_tensors"]
    for k, v in ema.items():
        torch.testing.assert_close(ours[k], v.float(), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["v2_audio", "v2_image"] + OPTIONS)
def test_decoder_weights_are_kept_and_load_strictly(name, tmp_path):
    """fairseq's loader (strict=True) restores every decoder tensor of the reference, nothing more or less; the
    same state dict loads again with strict=True (no missing / unexpected keys) and the decoders predict."""
    model, _ = load(CKPT / f"{name}.pt", tmp_path)
    state = saved(name)["model"]
    mode = "IMAGE" if "image" in name else "AUDIO"
    assert type(model.modality_encoders[mode].decoder).__name__ == DECODER_CLASS[name]
    ref_dec, our_dec = student_decoder(state), student_decoder(model.state_dict())
    assert ref_dec and set(our_dec) == set(ref_dec)
    for k, v in ref_dec.items():
        assert torch.equal(our_dec[k], v), k
    if name == "v2_image_encdec":
        assert any(".decoder.blocks.0.attn.kv_proj." in k for k in ref_dec)
    if name == "v2_image_tdec":
        assert any(".decoder.encoder.blocks.1.attn.qkv." in k for k in ref_dec)
    result = model.load_state_dict(copy.deepcopy(state), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    some = sorted(ref_dec)[-1]
    short = {k: v for k, v in copy.deepcopy(state).items() if k != some}
    with pytest.raises(RuntimeError, match="Missing key"):  # decoder keys are not optional
        model.load_state_dict(short, strict=True)
    extra = dict(copy.deepcopy(state), **{some.rsplit(".", 1)[0] + ".unknown": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(extra, strict=True)
    src, _ = source(name)
    model.train()
    out = model(torch.cat([src, src]), mode=mode)
    loss = sum(v.float().sum() for v in out["losses"].values())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.modality_encoders[mode].decoder.parameters())


def test_learned_alibi_table_of_32_positions_on_799_frames(tmp_path):
    """Student and EMA tables come back as trained (1, H, 32, 32), and the bias the encoder derives from them for
    T positions (cropped for T < 32, replicate-padded for 49 and the 799 training frames) is the reference's."""
    from data2vec_plugin.modules.v2_blocks import alibi_table
    name = "v2_audio_learned_alibi"
    model, _ = load(CKPT / f"{name}.pt", tmp_path)
    state = saved(name)["model"]
    enc = model.modality_encoders["AUDIO"]
    assert enc.alibi_bias.shape == (1, 4, 32, 32) and enc.alibi_bias.requires_grad
    assert torch.equal(enc.alibi_bias.data, state[TABLE])
    assert torch.equal(model.teacher.state_dict()[TABLE], state["_ema"][TABLE])
    assert (state[TABLE][0] - alibi_table(32, 4)).abs().max() > 1e-4  # trained away from the fixed ALiBi table
    _, exp = source(name)
    ref = exp["learned_alibi_bias"]
    with torch.no_grad():
        for t, sub in ((24, slice(None)), (49, slice(None)), (799, slice(None, None, 17))):
            ours = enc._alibi(t, 1, None, torch.device("cpu"))
            torch.testing.assert_close(ours[..., sub, sub], ref[f"T{t}"], atol=0, rtol=0)
    assert features(model, name).shape[1] == 799


@pytest.mark.parametrize("name", OPTIONS)
def test_reload_after_save_and_without_teacher(name, tmp_path):
    """Our state dict saved back (teacher, decoders, table) reloads identically; without `_ema` and optimizer
    state the student (decoders included) still loads strictly and gives the reference features."""
    model, _ = load(CKPT / f"{name}.pt", tmp_path)
    st = saved(name)
    st["model"] = model.state_dict()
    torch.save(st, tmp_path / "again.pt")
    again, _ = load(tmp_path / "again.pt", tmp_path)
    a, b, ref = flat(model.state_dict()), flat(again.state_dict()), flat(saved(name)["model"])
    assert set(a) == set(b) == set(ref) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], ref[k].to(a[k].dtype)) for k in a)
    st = saved(name)
    del st["model"]["_ema"]
    for k in ("optimizer_history", "last_optimizer_state", "extra_state", "criterion"):
        st.pop(k, None)
    torch.save(st, tmp_path / "stripped.pt")
    stripped, _ = load(tmp_path / "stripped.pt", tmp_path)
    _, exp = source(name)
    torch.testing.assert_close(features(stripped, name), exp["features"], atol=1e-5, rtol=0)
    assert set(student_decoder(stripped.state_dict())) == set(student_decoder(saved(name)["model"]))


@pytest.mark.parametrize("name", OPTIONS)
def test_load_pretrained_extract_features(name, tmp_path):
    from data2vec_plugin import load_pretrained
    shutil.copy(CKPT / f"{name}.pt", tmp_path / f"{name}.pt")
    enc, _ = load_pretrained(tmp_path / f"{name}.pt")
    if hasattr(enc.task_cfg, "normalize"):
        enc.task_cfg.normalize = False  # compare on the raw reference input
    src, exp = source(name)
    x = src[0]
    xs = [x, x[:9000], x[3:12348]] if "audio" in name else [x, x.flip(-1)]
    batched = enc.extract_features(xs, batch_size=4)
    single = [enc.extract_features([v], batch_size=1)[0] for v in xs]
    assert max(float(abs(a - b).max()) for a, b in zip(batched, single)) <= 1e-5
    assert float(abs(batched[0] - exp["features"][0].numpy()).max()) <= 1e-5


def test_wav2vec_ctc_from_reference_learned_alibi_checkpoint(tmp_path):
    """fairseq's wav2vec_ctc (Wav2VecEncoder: remove_pretraining_modules + strict load) keeps the learned table;
    the fine-tuning encoder's features are the reference's."""
    from fairseq.data import Dictionary
    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
    from omegaconf import OmegaConf

    class Task:
        target_dictionary = Dictionary()

    for s in "ABCD|":
        Task.target_dictionary.add_symbol(s)
    name = "v2_audio_learned_alibi"
    root = OmegaConf.create({"distributed_training": {"ddp_backend": "legacy_ddp"}})
    root.model = OmegaConf.structured(Wav2Vec2CtcConfig(w2v_path=str(CKPT / f"{name}.pt"), normalize=True,
                                                        data=str(data_dir(tmp_path))))
    cfg = root.model
    m = Wav2VecCtc.build_model(cfg, Task()).eval()
    enc = m.w2v_encoder.w2v_model
    assert type(enc).__name__ == "Data2VecMultiModel" and enc.teacher is None
    assert enc.modality_encoders["AUDIO"].decoder is None
    assert torch.equal(enc.modality_encoders["AUDIO"].alibi_bias.data, saved(name)["model"][TABLE])
    src, exp = source(name)
    with torch.no_grad():
        x = enc.extract_features(src, mode="AUDIO", padding_mask=None, mask=False)["x"]
        logits = m(source=src, padding_mask=None)["encoder_out"]
    torch.testing.assert_close(x, exp["features"], atol=1e-5, rtol=0)
    assert logits.shape[-1] == len(Task.target_dictionary) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["v2_image_tdec", "v2_image_encdec"])
def test_image_classifier_from_reference_transformer_decoder_checkpoint(name):
    """data2vec_multi_image_classification drops the transformer decoders and loads the student strictly."""
    from omegaconf import OmegaConf

    from data2vec_plugin.models.data2vec_multi_image_classification import (
        Data2VecMultiImageClassificationConfig, Data2VecMultiImageClassifier)
    clf = Data2VecMultiImageClassifier(OmegaConf.structured(Data2VecMultiImageClassificationConfig(
        model_path=str(CKPT / f"{name}.pt"), num_classes=4)))
    assert clf.model.modality_encoders["IMAGE"].decoder is None
    assert not any(".decoder." in k for k in clf.state_dict())
    src, exp = source(name)
    with torch.no_grad():
        x = clf.model.eval().extract_features(src, mask=False)["x"]
    torch.testing.assert_close(x, exp["features"], atol=1e-5, rtol=0)
    assert clf.eval().logits(src).shape == (1, 4)
