"""d2v-prepare-text: round trip raw text -> binarized -> decoded text; messy input; labelled layout."""
import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from data2vec_plugin.cli.prepare_text import PrepareTextError, main, prepare

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def corpus(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(n)]


def test_round_trip_with_messy_lines(tmp_path):
    lines = corpus()
    raw = tmp_path / "raw.txt"
    body = "\n".join(lines[:50]) + "\n\n   \n" + "\n".join(lines[50:])
    raw.write_bytes(body.encode() + b"\nbad \xff bytes alpha\n" + (("beta " * 40).strip()).encode() + b"\n")
    counts = prepare(str(raw), str(tmp_path / "out"), vocab_size=40, valid_lines=10, max_line_chars=120)
    assert counts["empty"] == 2 and counts["invalid_utf8"] == 1 and counts["long"] == 1
    assert counts["train"] + counts["valid"] == 120 + 1 + 2 and counts["valid"] == 10
    d = Dictionary.load(str(tmp_path / "out" / "dict.txt"))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "spm.model"))
    train = data_utils.load_indexed_dataset(str(tmp_path / "out" / "train"), d)
    assert len(train) == counts["train"]
    for i in (0, 7, 49, 50):
        pieces = d.string(train[i][:-1]).split()   # drop </s>
        assert sp.decode(pieces) == lines[i]
    assert (tmp_path / "out" / "valid.bin").exists()


def test_reencode_with_existing_model_and_labels(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(corpus()) + "\n")
    prepare(str(raw), str(tmp_path / "pre"), vocab_size=40, valid_lines=10)
    sents = corpus(30, seed=1)
    (tmp_path / "s.txt").write_text("\n".join(sents) + "\n")
    (tmp_path / "l.txt").write_text("\n".join("a" if "alpha" in s else "b" for s in sents) + "\n")
    prepare(str(tmp_path / "s.txt"), str(tmp_path / "cls"), valid_lines=5,
            spm_model=str(tmp_path / "pre" / "spm.model"), labels=str(tmp_path / "l.txt"))
    assert (tmp_path / "cls" / "input0" / "dict.txt").read_text() == (tmp_path / "pre" / "dict.txt").read_text()
    label_syms = {ln.split()[0] for ln in (tmp_path / "cls" / "label" / "dict.txt").read_text().splitlines()}
    assert {s for s in label_syms if not s.startswith("madeupword")} == {"a", "b"}
    (tmp_path / "r.txt").write_text("\n".join(str(i / 10) for i in range(30)) + "\n")
    prepare(str(tmp_path / "s.txt"), str(tmp_path / "reg"), valid_lines=5,
            spm_model=str(tmp_path / "pre" / "spm.model"), labels=str(tmp_path / "r.txt"), regression=True)
    assert (tmp_path / "reg" / "label" / "valid.label").read_text().split() == ["2.5", "2.6", "2.7", "2.8", "2.9"]


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main([str(empty), str(tmp_path / "o")]) == 2
    assert "empty" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line here\nbroken \xc3\x28 line\n")
    with pytest.raises(PrepareTextError, match=r"bad.txt:2: invalid UTF-8"):
        prepare(str(bad), str(tmp_path / "o2"), invalid_utf8="error")
    with pytest.raises(PrepareTextError, match="labels for 2 text lines"):
        (tmp_path / "l.txt").write_text("x\n")
        prepare(str(bad), str(tmp_path / "o3"), labels=str(tmp_path / "l.txt"))
