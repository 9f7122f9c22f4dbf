import os

import numpy as np
import pytest
import soundfile as sf
import torch

from data2vec_plugin.data.audio_dataset import AudioInputError, MaskSpec, RawAudioMaskDataset
from data2vec_plugin.modules.audio import parse_conv_spec

SPEC = MaskSpec(parse_conv_spec("[(32, 10, 5)] + [(32, 3, 2)] * 2"), 0.65, 5)


def write_set(tmp_path, files):
    """files: name -> (array or bytes, sample_rate, manifest_samples or None)."""
    root = tmp_path / "wav"
    root.mkdir(exist_ok=True)
    lines = [str(root)]
    for name, (data, sr, n) in files.items():
        path = root / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif data is not None:
            sf.write(path, data, sr)
        lines.append(f"{name}\t{n if n is not None else len(data)}")
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "train.tsv")


def noise(n, ch=1, seed=0):
    a = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, ch) if ch > 1 else n).astype(np.float32)
    return a


def make(tmp_path, files, **kw):
    return RawAudioMaskDataset(write_set(tmp_path, files), 16000, SPEC, seed=3, **kw)


def test_collater_masks_deterministic_and_epoch_dependent(tmp_path):
    ds = make(tmp_path, {f"a{i}.wav": (noise(3000 + 100 * i, seed=i), 16000, None) for i in range(4)})
    batch = lambda: ds.collater([ds[i] for i in range(4)])
    b1, b2 = batch(), batch()
    assert torch.equal(b1["net_input"]["mask_indices"], b2["net_input"]["mask_indices"])
    assert torch.equal(b1["net_input"]["source"], b2["net_input"]["source"])
    assert b1["net_input"]["source"].shape == (4, 3000)  # cropped to the shortest
    counts = b1["net_input"]["mask_indices"].sum(1)
    assert len(set(counts.tolist())) == 1
    ds.set_epoch(2)
    assert not torch.equal(batch()["net_input"]["mask_indices"], b1["net_input"]["mask_indices"])


def test_padding_mode_never_masks_padding(tmp_path):
    ds = make(tmp_path, {"a.wav": (noise(4000), 16000, None), "b.wav": (noise(2000, seed=1), 16000, None)},
              pad=True)
    b = ds.collater([ds[0], ds[1]])
    pad = b["net_input"]["padding_mask"]
    assert pad[1, 2000:].all() and not pad[0].any()
    m = b["net_input"]["mask_indices"]
    from data2vec_plugin.modules.audio import frames_per_sample
    valid = frames_per_sample([2000], SPEC.conv_spec)[0]
    assert not m[1, valid:].any() and m[1, :valid].any()


@pytest.mark.parametrize("case,expect", [
    ("missing", "file not found"),
    ("garbage", "unreadable or truncated"),
    ("rate", "sample rate 8000"),
    ("stereo", "2 channels"),
    ("truncated", "truncated file or stale manifest"),
])
def test_bad_audio_errors_name_line_and_file(tmp_path, case, expect):
    good = {"ok.wav": (noise(3000), 16000, None)}
    bad = {
        "missing": {"gone.wav": (None, 16000, 3000)},
        "garbage": {"gone.wav": (b"RIFF....not a wav at all" * 10, 16000, 3000)},
        "rate": {"gone.wav": (noise(3000), 8000, None)},
        "stereo": {"gone.wav": (noise(3000, ch=2), 16000, None)},
        "truncated": {"gone.wav": (noise(3000), 16000, 6000)},
    }[case]
    ds = make(tmp_path, {**good, **bad})
    with pytest.raises(AudioInputError) as e:
        ds[1]
    msg = str(e.value)
    assert expect in msg and "train.tsv:3" in msg and "gone.wav" in msg
    skipping = make(tmp_path, {**good, **bad}, skip_invalid=True)
    assert sum(skipping.skipped.values()) == 1 or skipping[len(skipping) - 1]["source"] is None
    batch = skipping.collater([skipping[i] for i in range(len(skipping))])
    assert torch.isfinite(batch["net_input"]["source"]).all()


def test_empty_and_too_short_entries(tmp_path):
    files = {"ok.wav": (noise(3000), 16000, None), "empty.wav": (np.zeros(0, np.float32), 16000, None),
             "short.wav": (noise(30), 16000, None)}
    with pytest.raises(AudioInputError, match=r"train.tsv:3 .*empty.wav.*receptive field"):
        make(tmp_path, files)
    ds = make(tmp_path, files, skip_invalid=True)
    assert len(ds) == 1 and ds.skipped == {"shorter than the CNN receptive field": 2}


def test_nan_audio_rejected(tmp_path):
    a = noise(3000)
    a[5] = np.nan
    root = tmp_path / "wav"
    root.mkdir()
    sf.write(root / "nan.wav", a, 16000, subtype="FLOAT")
    (tmp_path / "train.tsv").write_text(f"{root}\nnan.wav\t3000\n")
    ds = RawAudioMaskDataset(str(tmp_path / "train.tsv"), 16000, SPEC, 1)
    with pytest.raises(AudioInputError, match=r"train.tsv:2 .*nan.wav.*NaN"):
        ds[0]


def test_malformed_manifest_line(tmp_path):
    (tmp_path / "train.tsv").write_text("/root\nfile.wav\tnot_a_number\n")
    with pytest.raises(AudioInputError, match=r"train.tsv:2"):
        RawAudioMaskDataset(str(tmp_path / "train.tsv"), 16000, SPEC, 1)
