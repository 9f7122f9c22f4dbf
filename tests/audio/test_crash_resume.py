"""SIGKILL during training / during checkpoint writes: resume from the last complete checkpoint, never a partial
file, and the resumed run still reproduces an uninterrupted one bit for bit."""
import os
import signal
import subprocess
import time

import pytest
import torch

from ..conftest import BIN, PLUGIN_DIR, REPO, cli_env, hydra_train
from data2vec_plugin.atomic_checkpoints import atomic_copy
from data2vec_plugin.cli.synthetic import make_audio_dataset

ARGS = ["optimization.max_update=8", "checkpoint.save_interval_updates=1", "checkpoint.keep_interval_updates=2",
        "dataset.disable_validation=true", "common.log_interval=1"]


def _cmd(data, save, hydra_dir):
    return [str(BIN / "fairseq-hydra-train"), "--config-dir", str(REPO / "examples" / "audio"), "--config-name",
            "pretrain_tiny", f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", f"checkpoint.save_dir={save}",
            f"hydra.run.dir={hydra_dir}"] + ARGS


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_atomic_copy_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    src, dst = tmp_path / "new.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"n" * 10_000_000)
    dst.write_bytes(b"old complete checkpoint")

    def crash(*a, **k):
        raise KeyboardInterrupt("killed mid-copy")
    monkeypatch.setattr("shutil.copyfileobj", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == b"old complete checkpoint"
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    make_audio_dataset(str(data), n_train=12, n_valid=2, seconds=0.5)
    hydra_train(REPO / "examples" / "audio", "pretrain_tiny",
                [f"task.data={data}", f"checkpoint.save_dir={tmp_path / 'straight'}"] + ARGS, tmp_path)
    save = tmp_path / "killed"
    progress = []
    for delay in (0.2, 0.6):  # two kills at different moments of training / checkpoint writing
        proc = subprocess.Popen(_cmd(data, save, tmp_path / "h"), env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (save / "checkpoint_last.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for ckpt in save.glob("checkpoint*.pt"):  # every visible checkpoint is complete
            _state(ckpt)
        progress.append(_state(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"])
    assert progress[0] < 8  # the first kill really interrupted training
    done = hydra_train(REPO / "examples" / "audio", "pretrain_tiny",
                       [f"task.data={data}", f"checkpoint.save_dir={save}"] + ARGS, tmp_path)
    assert "loaded checkpoint" in (done.stdout + done.stderr).lower()
    a, b = _state(tmp_path / "straight" / "checkpoint_last.pt"), _state(save / "checkpoint_last.pt")
    assert b["optimizer_history"][-1]["num_updates"] == 8
    for k, v in a["model"].items():
        if k == "_ema":
            assert all(torch.equal(vv, b["model"]["_ema"][kk]) for kk, vv in v.items())
        else:
            assert torch.equal(v, b["model"][k]), k
