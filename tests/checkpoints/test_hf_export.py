"""d2v-export-hf: transformers' Data2Vec{Audio,Text,Vision}Model reproduce the plugin's final hidden states."""
import shutil

import pytest
import torch

import data2vec_plugin  # noqa: F401
from data2vec_plugin import load_pretrained

from .helpers import REF

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install -e .[hf]")
pytest.importorskip("safetensors", reason="safetensors not installed: pip install -e .[hf]")


@pytest.mark.parametrize("name,cls", [("audio_ln_pc5", "Data2VecAudioModel"), ("text_head2", "Data2VecTextModel"),
                                      ("vision", "Data2VecVisionModel")])
def test_export_matches_plugin(name, cls, tmp_path):
    from data2vec_plugin.cli.export_hf import main
    shutil.copy(REF / f"{name}.pt", tmp_path / "m.pt")
    shutil.copy(REF / "text_dict.txt", tmp_path / "dict.txt")
    assert main([str(tmp_path / "m.pt"), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "config.json").exists() and (tmp_path / "hf" / "model.safetensors").exists()
    hf = getattr(transformers, cls).from_pretrained(tmp_path / "hf").eval()
    enc, _ = load_pretrained(tmp_path / "m.pt")
    inp = torch.load(REF / f"{name}.expected.pt", weights_only=True)["inputs"]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if name.startswith("audio"):
            x = torch.cat([inp["source"], torch.randn(1, 16000, generator=g)])
            ours, theirs = enc.model.extract_features(x, None)["x"], hf(x).last_hidden_state
        elif name.startswith("text"):
            x = torch.cat([inp["src_tokens"], torch.randint(4, 48, (1, 9), generator=g)])
            ours, theirs = enc.model(x, features_only=True)[0], hf(x).last_hidden_state
        else:
            x = torch.cat([inp["img"], torch.randn(1, 3, 32, 32, generator=g)])
            ours, theirs = enc.model(x, mask=False), hf(x).last_hidden_state[:, 1:]  # BEiT keeps cls first
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= 1e-4


def test_unsupported_layout_is_refused_with_reason(tmp_path, capsys):
    from data2vec_plugin.cli.export_hf import main
    assert main([str(REF / "audio_default_pc1.pt"), str(tmp_path / "hf")]) == 2
    assert "extractor_mode=layer_norm" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    assert main([str(REF / "v2_image.pt"), str(tmp_path / "hf2")]) == 2
