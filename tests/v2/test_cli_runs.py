"""Subprocess pretraining runs of the tiny data2vec 2.0 configs (fairseq-hydra-train) for every modality."""
import pytest
import torch

from data2vec_plugin.cli.demo_common import logged_values
from data2vec_plugin.cli.demo_v2 import encode_one, make_data, train_cmd

from ..conftest import run_cli


@pytest.mark.parametrize("kind", ["audio", "image", "text"])
def test_tiny_pretraining_run_and_reload(kind, tmp_path):
    data = make_data(kind, str(tmp_path / "data"))
    proc = run_cli(train_cmd(kind, data, str(tmp_path), ["optimization.max_update=12", "common.log_interval=4",
                                                         "checkpoint.save_interval_updates=12"]), tmp_path)
    log = proc.stdout + proc.stderr
    losses = logged_values(log, "loss")
    assert len(losses) >= 2 and all(v == v for v in losses)  # logged and finite
    assert logged_values(log, "ema_decay") and logged_values(log, "target_var")
    assert "done training" in log
    ckpt = tmp_path / f"{kind}_ckpt" / "checkpoint_last.pt"
    state = torch.load(ckpt, weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 12 and "_ema" in state["model"]
    feats = encode_one(kind, str(ckpt), data)
    assert feats.shape[-1] == 32 and torch.isfinite(feats).all()


@pytest.mark.parametrize("kind,extra", [
    ("image", ["+model.modalities.image.transformer_decoder=true"]),
    ("image", ["+model.modalities.image.transformer_decoder=true", "+model.modalities.image.enc_dec_transformer=true"]),
    ("audio", ["+model.modalities.audio.learned_alibi=true", "+model.modalities.audio.alibi_max_pos=16"]),
], ids=["image_transformer_decoder", "image_enc_dec_decoder", "audio_learned_alibi"])
def test_reference_options_train_and_reload(kind, extra, tmp_path):
    """data2vec 2.0 options beyond the base configs train through fairseq-hydra-train and reload with fairseq."""
    data = make_data(kind, str(tmp_path / "data"))
    proc = run_cli(train_cmd(kind, data, str(tmp_path), ["optimization.max_update=6", "common.log_interval=2",
                                                         "checkpoint.save_interval_updates=6"] + extra), tmp_path)
    log = proc.stdout + proc.stderr
    losses = logged_values(log, "loss")
    assert len(losses) >= 2 and all(v == v for v in losses), log[-3000:]
    state = torch.load(tmp_path / f"{kind}_ckpt" / "checkpoint_last.pt", weights_only=False)
    keys = state["model"].keys()
    if kind == "image":
        assert any(k.startswith("modality_encoders.IMAGE.decoder.proj") for k in keys)
        assert any(".decoder.blocks.0.attn.kv_proj" in k for k in keys) == ("+model.modalities.image."
                                                                              "enc_dec_transformer=true" in extra)
    else:
        assert state["model"]["modality_encoders.AUDIO.alibi_bias"].shape[-1] == 16
        assert "modality_encoders.AUDIO.alibi_bias" in state["model"]["_ema"]
    feats = encode_one(kind, str(tmp_path / f"{kind}_ckpt" / "checkpoint_last.pt"), data)
    assert torch.isfinite(feats).all()
