"""Subprocess runs of stock fairseq CLIs on tiny generated audio (the real user path)."""
import os
import shutil

import pytest
import torch

from ..conftest import PLUGIN_DIR, REPO, hydra_train, run_cli, train_log_values
from data2vec_plugin.cli.synthetic import make_audio_dataset

CONFIG_DIR = REPO / "examples" / "audio"
FAST = ["optimization.max_update=6", "checkpoint.save_interval_updates=2", "checkpoint.keep_interval_updates=-1",
        "dataset.validate_interval_updates=2", "common.log_interval=1", "model.ema_anneal_end_step=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    make_audio_dataset(str(d / "data"), n_train=12, n_valid=4, seconds=0.6)
    return d


@pytest.fixture(scope="module")
def straight(data):
    out = data / "straight"
    proc = hydra_train(CONFIG_DIR, "pretrain_tiny", [f"task.data={data / 'data'}", f"checkpoint.save_dir={out}"]
                       + FAST, data)
    return out, proc.stdout + proc.stderr


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_hydra_pretraining_logs_and_checkpoint(straight):
    out, log = straight
    assert (out / "checkpoint_last.pt").exists()
    losses = train_log_values(log, "loss")
    assert len(losses) >= 4 and all(l == l for l in losses)
    assert train_log_values(log, "target_var") and train_log_values(log, "ema_decay")
    state = _load(out / "checkpoint_last.pt")  # plain containers: weights_only works
    assert state["optimizer_history"][-1]["num_updates"] == 6
    assert "_ema" in state["model"] and state["cfg"]["model"]["_name"] == "data2vec_audio"


def test_resume_is_bit_identical(data, straight):
    """Resume from the mid-epoch update-4 checkpoint of the straight run (3 updates per epoch): updates 5-6
    must reproduce the straight run bit for bit (weights, teacher, optimizer-driven lr, masks, data order)."""
    out_straight, _ = straight
    out = data / "resumed"
    out.mkdir()
    mid = [p for p in out_straight.glob("checkpoint_*_4.pt")]
    assert len(mid) == 1
    shutil.copy(mid[0], out / "checkpoint_last.pt")
    assert _load(out / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 4
    proc = hydra_train(CONFIG_DIR, "pretrain_tiny", [f"task.data={data / 'data'}", f"checkpoint.save_dir={out}"]
                       + FAST, data)
    assert "loaded checkpoint" in (proc.stdout + proc.stderr).lower()
    a, b = _load(out_straight / "checkpoint_last.pt"), _load(out / "checkpoint_last.pt")
    assert b["optimizer_history"][-1]["num_updates"] == 6
    for k, v in a["model"].items():
        if k == "_ema":
            for kk, vv in v.items():
                assert torch.equal(vv, b["model"]["_ema"][kk]), kk
        else:
            assert torch.equal(v, b["model"][k]), k


def test_load_model_ensemble_and_extract(straight, data):
    out, _ = straight
    import data2vec_plugin  # noqa: F401  registers the plugin in this process
    from fairseq import checkpoint_utils
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(out / "checkpoint_last.pt")], arg_overrides={"data": str(data / "data")})
    m = models[0].eval()
    assert type(m).__name__ == "Data2VecAudioModel"
    ref = _load(out / "checkpoint_last.pt")["model"]
    for k, v in m.teacher.state_dict().items():
        assert torch.equal(v, ref["_ema"][k])
    x = torch.randn(1, 8000)
    feats = m.extract_features(x, None)["x"]
    from data2vec_plugin.modules.audio import conv_output_lengths
    frames = conv_output_lengths(torch.tensor([8000]), m.conv_spec).item()
    assert feats.shape == (1, frames, 64) and torch.isfinite(feats).all()


def test_fairseq_train_argparse_path(data):
    out = data / "argparse"
    proc = run_cli(["fairseq-train", data / "data", "--user-dir", PLUGIN_DIR, "--task", "data2vec_audio_pretraining",
                    "--arch", "data2vec_audio", "--criterion", "data2vec_regression", "--cpu", "--normalize",
                    "--max-sample-size", "16000", "--batch-size", "4", "--required-batch-size-multiple", "1",
                    "--optimizer", "adam", "--lr", "0.0005", "--max-update", "3", "--encoder-layers", "2",
                    "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4",
                    "--conv-pos", "16", "--conv-pos-groups", "4", "--average-top-k-layers", "2",
                    "--instance-norm-target-layer", "--ema-decay", "0.999", "--conv-feature-layers",
                    "[(32, 10, 5)] + [(32, 3, 2)] * 4", "--save-dir", out, "--log-format", "simple",
                    "--log-interval", "1", "--num-workers", "0"], data)
    assert len(train_log_values(proc.stdout + proc.stderr, "loss")) >= 2
    cfg = _load(out / "checkpoint_last.pt")["cfg"]["model"]
    assert cfg["ema_decay"] == 0.999 and cfg["instance_norm_target_layer"] is True


def test_wav2vec_ctc_finetuning_from_our_checkpoint(data, straight):
    out, _ = straight
    d = data / "data"
    for split in ("train", "valid"):
        n = len((d / f"{split}.tsv").read_text().splitlines()) - 1
        (d / f"{split}.ltr").write_text("A B | C D |\n" * n)
    (d / "dict.ltr.txt").write_text("| 10\nA 5\nB 5\nC 5\nD 5\n")
    ft = data / "ctc"
    run_cli(["fairseq-train", d, "--user-dir", PLUGIN_DIR, "--task", "audio_finetuning", "--labels", "ltr",
             "--normalize", "--arch", "wav2vec_ctc", "--w2v-path", out / "checkpoint_last.pt", "--criterion", "ctc",
             "--cpu", "--max-sample-size", "16000", "--batch-size", "4", "--required-batch-size-multiple", "1",
             "--optimizer", "adam", "--lr", "0.0001", "--max-update", "2", "--save-dir", ft, "--log-format",
             "simple", "--num-workers", "0", "--mask-prob", "0.3", "--mask-channel-prob", "0.1",
             "--mask-channel-length", "4"], data)
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ft / "checkpoint_last.pt")],
                                                                 arg_overrides={"data": str(d)})
    m = models[0].eval()
    enc = m.w2v_encoder.w2v_model
    assert type(enc).__name__ == "Data2VecAudioModel" and enc.teacher is None
    logits = m(source=torch.randn(1, 8000), padding_mask=None)["encoder_out"]
    assert logits.shape[-1] == 9 and torch.isfinite(logits).all()  # 4 specials + | A B C D


def test_missing_audio_file_error_reaches_the_user(data, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(data / "data", d)
    lines = (d / "train.tsv").read_text().splitlines()
    lines[0] = str(d / "wav")  # point the copy's manifest at the copied files (the shared data stays intact)
    (d / "train.tsv").write_text("\n".join(lines) + "\n")
    os.remove(os.path.join(lines[0], lines[2].split("\t")[0]))
    proc = hydra_train(CONFIG_DIR, "pretrain_tiny", [f"task.data={d}", f"checkpoint.save_dir={tmp_path / 'c'}"]
                       + FAST, tmp_path, check=False)
    assert proc.returncode != 0
    assert "train.tsv:3" in proc.stdout + proc.stderr and "file not found" in proc.stdout + proc.stderr


def test_bf16_training_on_cpu(data, tmp_path):
    """common.bf16 casts the student; the teacher (fp32 master outside the module tree) keeps training it."""
    proc = hydra_train(CONFIG_DIR, "pretrain_tiny", [f"task.data={data / 'data'}", f"checkpoint.save_dir={tmp_path}",
                                                     "optimization.max_update=3", "common.bf16=true",
                                                     "common.on_cpu_convert_precision=true", "common.log_interval=1",
                                                     "dataset.disable_validation=true"], tmp_path)
    losses = train_log_values(proc.stdout + proc.stderr, "loss")
    assert len(losses) >= 2 and all(l == l and l < 1e4 for l in losses)
    inner = "\n".join(l for l in (proc.stdout + proc.stderr).splitlines() if "train_inner" in l)
    decays = train_log_values(inner, "ema_decay")
    assert decays == sorted(decays) and decays[-1] > decays[0]  # schedule advanced once per update
