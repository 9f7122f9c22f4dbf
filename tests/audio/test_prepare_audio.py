import numpy as np
import soundfile as sf

from data2vec_plugin.cli.prepare_audio import main


def test_prepare_audio_writes_manifests(tmp_path, capsys):
    src = tmp_path / "corpus"
    (src / "spk1").mkdir(parents=True)
    (src / "spk2").mkdir()
    lengths = {}
    for i in range(10):
        rel = f"spk{1 + i % 2}/u{i}.flac"
        n = 1600 + 10 * i
        sf.write(src / rel, np.zeros(n, np.float32), 16000)
        lengths[rel] = n
    (src / "spk1" / "broken.flac").write_bytes(b"not audio")
    (src / "notes.txt").write_text("ignored")
    assert main([str(src), str(tmp_path / "out"), "--valid-percent", "20", "--ext", "flac"]) == 0
    rows = {}
    for split in ("train", "valid"):
        lines = (tmp_path / "out" / f"{split}.tsv").read_text().splitlines()
        assert lines[0] == str(src.resolve())
        for line in lines[1:]:
            rel, n = line.split("\t")
            rows[rel] = int(n)
    assert rows == lengths  # every readable file once, with its exact sample count
    assert len((tmp_path / "out" / "valid.tsv").read_text().splitlines()) == 1 + 2
    assert "broken.flac" in capsys.readouterr().err


def test_prepare_audio_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "no readable .wav files" in capsys.readouterr().err
