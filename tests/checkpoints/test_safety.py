"""Safe loading: weights-only everywhere, legacy checkpoints refused with a pointer to d2v-convert and converted
faithfully, code-executing pickles refused by every loading path (the marker file is never created)."""
import subprocess
import sys

import pytest
import torch
from fairseq import checkpoint_utils

import data2vec_plugin  # noqa: F401
from data2vec_plugin import load_pretrained
from data2vec_plugin.checkpoints.convert import convert_checkpoint
from data2vec_plugin.checkpoints.formats import CheckpointError, classify

from ..conftest import cli_env, run_cli
from .helpers import data_dir, legacy, malicious, ref_features, ref_state, teacher_key


def fairseq_load(path, tmp_path):
    return checkpoint_utils.load_model_ensemble_and_task([str(path)],
                                                         arg_overrides={"data": str(data_dir(tmp_path))})[0][0]


@pytest.mark.parametrize("name", ["audio_ln_pc5", "text_head2", "vision"])
def test_legacy_refused_then_converted_round_trip(name, tmp_path):
    src = legacy(name, tmp_path / "legacy.pt")
    assert classify(str(src))[0] == "legacy"
    with pytest.raises(CheckpointError, match="d2v-convert"):
        fairseq_load(src, tmp_path)
    with pytest.raises(CheckpointError, match="--trust-source"):
        convert_checkpoint(src, tmp_path / "out.pt")  # needs the user's explicit trust
    info = convert_checkpoint(src, tmp_path / "out.pt", trust_source=True)
    assert info["input_format"] == "legacy" and info["converted_args"] == (name != "text_head2")
    out = torch.load(tmp_path / "out.pt", weights_only=True)  # plain containers only
    assert out["args"] is None and isinstance(out["cfg"], dict) and out["cfg"]["model"]["_name"].startswith("data2vec")
    assert out["extra_state"]["best_loss"] == 1.25 and type(out["optimizer_history"][-1]["num_updates"]) is int
    ref = ref_state(name)["model"]
    tk = teacher_key(ref_state(name))
    assert all(torch.equal(out["model"][tk][k], v) for k, v in ref[tk].items())  # teacher kept
    m = fairseq_load(tmp_path / "out.pt", tmp_path)
    ours, expected = ref_features(m, name)
    assert (ours - expected).abs().max() <= 1e-5


def test_convert_cli_and_load_pretrained_refusal(tmp_path):
    src = legacy("audio_default_pc1", tmp_path / "legacy.pt")
    with pytest.raises(CheckpointError, match="d2v-convert"):
        load_pretrained(src)
    proc = run_cli(["d2v-convert", src, tmp_path / "out.pt"], tmp_path, check=False)
    assert proc.returncode == 2 and "--trust-source" in proc.stderr
    run_cli(["d2v-convert", src, tmp_path / "out.pt", "--trust-source"], tmp_path)
    enc, task_cfg = load_pretrained(tmp_path / "out.pt")
    assert task_cfg._name == "audio_pretraining"
    ours, expected = ref_features(enc.model, "audio_default_pc1")
    assert (ours - expected).abs().max() <= 1e-5


def test_our_outputs_are_weights_only(tmp_path):
    convert_checkpoint(__import__("tests.checkpoints.helpers", fromlist=["REF"]).REF / "v2_text.pt", tmp_path / "o.pt")
    torch.load(tmp_path / "o.pt", weights_only=True)


def test_malicious_pickle_refused_everywhere(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    bad = malicious("audio_ln_pc5", tmp_path / "bad.pt", marker)
    kind, names = classify(str(bad))
    assert kind == "unsafe" and any("system" in n for n in names)
    with pytest.raises(CheckpointError, match="could execute code"):
        fairseq_load(bad, tmp_path)
    with pytest.raises(CheckpointError):
        load_pretrained(bad)
    with pytest.raises(CheckpointError):
        convert_checkpoint(bad, tmp_path / "o.pt", trust_source=True)
    wav = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf
    sf.write(wav, np.zeros(8000, dtype="float32"), 16000)
    from data2vec_plugin.cli import convert, export_hf, extract_features
    for main, argv in ((convert.main, [bad, tmp_path / "o.pt", "--trust-source"]),  # the console scripts' mains
                       (extract_features.main, [bad, wav, "--out", tmp_path / "f"]),
                       (export_hf.main, [bad, tmp_path / "hf"])):
        assert main([str(a) for a in argv]) == 2
        assert "could execute code" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "o.pt").exists()
    # the crafted file is real: full unpickling (what the plugin never does) would run the payload
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(bad)!r}, weights_only=False)"],
                   env=cli_env(), check=True, capture_output=True, timeout=120)
    assert marker.exists()
