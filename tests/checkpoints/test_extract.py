"""load_pretrained / d2v-extract-features: reference features, layers, padded batches equal single inputs."""
import shutil

import numpy as np
import pytest
import torch

import data2vec_plugin  # noqa: F401
from data2vec_plugin import load_pretrained

from ..conftest import run_cli
from .helpers import ALL, REF, ref_features


def ckpt_dir(name, tmp_path):
    """The checkpoint with its dict.txt next to it (how users are told to keep text checkpoints)."""
    shutil.copy(REF / f"{name}.pt", tmp_path / f"{name}.pt")
    shutil.copy(REF / "text_dict.txt", tmp_path / "dict.txt")
    return tmp_path / f"{name}.pt"


def inputs_for(enc, name):
    exp = torch.load(REF / f"{name}.expected.pt", weights_only=True)["inputs"]
    if "source" in exp:
        w = exp["source"][0]
        return [w, w[:9000], w[3:12348], w[:8003]]
    if "img" in exp:
        return [exp["img"][0], exp["img"][0].flip(-1), 0.5 * exp["img"][0]]
    d = enc.task.source_dictionary
    return [" ".join(d[i] for i in range(4, 12)), f"{d[5]} {d[6]}", f"{d[7]} {d[4]} {d[9]} {d[9]} {d[10]}"]


@pytest.mark.parametrize("name", ALL)
def test_batched_equals_single_and_layers(name, tmp_path):
    enc, task_cfg = load_pretrained(ckpt_dir(name, tmp_path))
    assert task_cfg._name and enc.model is not None
    if hasattr(enc.task_cfg, "normalize"):
        enc.task_cfg.normalize = False  # compare on the raw reference input
    xs = inputs_for(enc, name)
    batched = enc.extract_features(xs, batch_size=4)
    single = [enc.extract_features([x], batch_size=1)[0] for x in xs]
    assert all(a.shape == b.shape for a, b in zip(batched, single))
    assert max(float(np.abs(a - b).max()) for a, b in zip(batched, single)) <= 1e-5
    if "audio" in name or "vision" in name or "image" in name:  # first input is the reference's input
        ours, expected = ref_features(enc.model, name)
        assert np.abs(batched[0] - expected[0].numpy()).max() <= 1e-5
    L = enc.num_layers()
    every = enc.extract_features(xs, layer="all", batch_size=4)
    one = enc.extract_features(xs[:2], layer=L, batch_size=1)
    assert every[0].shape == (L,) + batched[0].shape
    assert np.abs(every[1][L - 1] - one[1]).max() <= 1e-5
    with pytest.raises(ValueError, match="layer must be"):
        enc.extract_features(xs[:1], layer=L + 1)


def test_cli_audio_text_image(tmp_path):
    import soundfile as sf
    from PIL import Image
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", rng.standard_normal(12000).astype("float32") * 0.1, 16000)
    sf.write(tmp_path / "b.wav", rng.standard_normal(8800).astype("float32") * 0.1, 16000)
    audio = ckpt_dir("audio_ln_pc5", tmp_path)
    run_cli(["d2v-extract-features", audio, tmp_path / "a.wav", tmp_path / "b.wav", "--layer", "all",
             "--out", tmp_path / "fa"], tmp_path)
    a, b = np.load(tmp_path / "fa" / "a.npy"), np.load(tmp_path / "fa" / "b.npy")
    assert a.shape == (2, 599, 32) and b.shape == (2, 439, 32)  # (L, frames, D): 12000 samples -> 599 frames
    enc, _ = load_pretrained(audio)
    assert np.abs(enc.extract_features([str(tmp_path / "a.wav")], layer="all")[0] - a).max() <= 1e-5
    # text lines (dictionary words) and an image through the same entry point, in process
    from data2vec_plugin.cli.extract_features import main
    words = [ln.split()[0] for ln in (REF / "text_dict.txt").read_text().splitlines()[:6]]
    (tmp_path / "lines.txt").write_text(" ".join(words) + "\n" + words[0] + "\n")
    assert main([str(ckpt_dir("text_head1", tmp_path)), str(tmp_path / "lines.txt"), "--out", str(tmp_path / "ft")]) == 0
    assert np.load(tmp_path / "ft" / "lines.0.npy").shape == (8, 32) and np.load(tmp_path / "ft" / "lines.1.npy").shape == (3, 32)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    assert main([str(ckpt_dir("vision", tmp_path)), str(tmp_path / "im.png"), "--layer", "2", "--out", str(tmp_path / "fi")]) == 0
    assert np.load(tmp_path / "fi" / "im.npy").shape == (16, 32)
