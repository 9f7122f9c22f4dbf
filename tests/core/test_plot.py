import pytest

from data2vec_plugin.cli.plot import main, parse_log

SIMPLE = """[2026-01-01 00:00:01][train_inner][INFO] - epoch 001:      5 / 8 loss=6.5, sample_size=170, ema_decay=0.99, target_var=0.7, pred_var=0.29, num_updates=5, lr=0.0003
[2026-01-01 00:00:01][valid][INFO] - epoch 001 | valid on 'valid' subset | loss 6.1 | num_updates 5
[2026-01-01 00:00:02][train_inner][INFO] - epoch 002:      2 / 8 loss=4.5, sample_size=170, ema_decay=0.995, target_var=0.6, pred_var=0.05, num_updates=10, lr=0.0005
"""
JSON = ('{"epoch": 1, "update": 0.6, "loss": "3.0", "ema_decay": "0.999", "target_var": "0.5", "pred_var": "0.1", '
        '"num_updates": "15", "lr": "0.0001"}\n{"epoch": 1, "valid_loss": "2.0", "valid_num_updates": "15"}\n')


def test_parse_simple_and_json(tmp_path):
    (tmp_path / "a.log").write_text(SIMPLE)
    (tmp_path / "b.log").write_text(JSON)
    s = parse_log(str(tmp_path / "a.log"))
    assert s["loss"] == [(5, 6.5), (10, 4.5)] and s["pred_var"] == [(5, 0.29), (10, 0.05)]
    j = parse_log(str(tmp_path / "b.log"))
    assert j["loss"] == [(15, 3.0)] and j["lr"] == [(15, 0.0001)]


def test_cli_writes_png_and_rejects_bad_input(tmp_path, capsys):
    (tmp_path / "a.log").write_text(SIMPLE)
    out = tmp_path / "curves.png"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main([str(tmp_path / "missing.log")]) == 2
    (tmp_path / "empty.log").write_text("nothing here\n")
    assert main([str(tmp_path / "empty.log"), "--out", str(tmp_path / "x.png")]) == 1
    assert "no train_inner lines" in capsys.readouterr().err
