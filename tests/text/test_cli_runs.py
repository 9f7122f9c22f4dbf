"""Subprocess runs of stock fairseq CLIs with the plugin: hydra pretraining (tiny), resume, argparse
fairseq-train, load_model_ensemble_and_task, and sentence_prediction fine-tuning (classification, regression)."""
import re

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils

from data2vec_plugin.cli.prepare_text import prepare

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PLUGIN_DIR, REPO, hydra_train, run_cli, train_log_values  # noqa: E402

EX = REPO / "examples" / "text"
WORDS = "the cat dog sat ran on mat log red blue big small fast slow".split()
TINY = ["model.max_positions=64", "model.transformer.max_source_positions=64",
        "model.transformer.encoder.embed_dim=64", "model.transformer.encoder.ffn_embed_dim=128",
        "model.transformer.encoder.layers=2", "model.transformer.encoder.attention_heads=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(0)
    sents = [" ".join(rng.choice(WORDS, size=rng.integers(4, 14))) for _ in range(300)]
    (root / "raw.txt").write_text("\n".join(sents) + "\n")
    prepare(str(root / "raw.txt"), str(root / "pre"), vocab_size=40, valid_lines=30)
    (root / "lab.txt").write_text("\n".join("pos" if "cat" in s else "neg" for s in sents) + "\n")
    (root / "reg.txt").write_text("\n".join(str(s.count("dog") / 3) for s in sents) + "\n")
    spm = str(root / "pre" / "spm.model")
    prepare(str(root / "raw.txt"), str(root / "cls"), valid_lines=30, spm_model=spm, labels=str(root / "lab.txt"))
    prepare(str(root / "raw.txt"), str(root / "reg"), valid_lines=30, spm_model=spm, labels=str(root / "reg.txt"),
            regression=True)
    return root


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain")
    args = [f"task.data={data / 'pre'}", f"checkpoint.save_dir={run / 'ckpt'}", "checkpoint.save_interval_updates=10",
            "dataset.batch_size=4"]
    first = hydra_train(EX, "pretrain_tiny", args + ["optimization.max_update=10"], run)
    second = hydra_train(EX, "pretrain_tiny", args + ["optimization.max_update=16"], run)
    return run / "ckpt" / "checkpoint_last.pt", first.stdout + first.stderr, second.stdout + second.stderr


def test_hydra_pretrain_and_resume(pretrained):
    ckpt, first, second = pretrained
    assert "num_updates 10" in first and np.isfinite(train_log_values(first, "loss")).all()
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 10 updates\)", second)
    state = torch.load(ckpt, weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 16
    assert "encoder._ema" in state["model"] and "encoder.regression_head.2.weight" in state["model"]
    decays = train_log_values(second, "ema_decay")
    assert decays and 0.996 < max(decays) < 0.999  # tau(15) = 0.99675: the schedule continues after resume


def test_load_model_ensemble_and_task(pretrained, data):
    ckpt = pretrained[0]
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                     arg_overrides={"data": str(data / "pre")})
    model = models[0].eval()
    saved = torch.load(ckpt, weights_only=False)["model"]["encoder._ema"]
    assert all(torch.equal(model.state_dict()["encoder._ema"][k], v) for k, v in saved.items())
    tokens = torch.tensor([[0, 5, 6, 7, 2]])
    feats, _ = model(tokens, features_only=True)
    assert feats.shape == (1, 5, 64) and cfg.task._name == "data2vec_masked_lm"


def test_argparse_fairseq_train(data, tmp_path):
    proc = run_cli(["fairseq-train", data / "pre", "--user-dir", PLUGIN_DIR, "--task", "data2vec_masked_lm",
                    "--arch", "data2vec_text", "--criterion", "data2vec_regression", "--tokens-per-sample", "32",
                    "--embed-dim", "32", "--ffn-embed-dim", "64", "--layers", "2", "--attention-heads", "4",
                    "--average-top-k-layers", "2", "--max-source-positions", "32", "--layernorm-embedding",
                    "--no-scale-embedding", "--learned-pos", "--ema-decay", "0.99", "--ema-end-decay", "0.999",
                    "--ema-anneal-end-step", "10", "--optimizer", "adam", "--lr", "0.0005", "--lr-scheduler",
                    "fixed", "--batch-size", "4", "--max-update", "3", "--cpu", "--num-workers", "0",
                    "--save-dir", tmp_path / "ckpt", "--log-format", "simple", "--log-interval", "1",
                    "--disable-validation"], tmp_path)
    cfg = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)["cfg"]["model"]
    assert cfg["transformer"]["encoder"]["layers"] == 2 and cfg["transformer"]["encoder"]["embed_dim"] == 32
    decays = train_log_values(proc.stdout + proc.stderr, "ema_decay")
    assert decays[0] == pytest.approx(0.99 + 0.009 * 0 / 10, abs=2e-3) and decays[-1] > decays[0]


@pytest.mark.parametrize("kind", ["cls", "reg"])
def test_sentence_prediction_finetune(pretrained, data, tmp_path, kind):
    reg = kind == "reg"
    args = TINY + [f"task.data={data / kind}", f"checkpoint.restore_file={pretrained[0]}",
                   f"checkpoint.save_dir={tmp_path / 'ckpt'}", "task.max_positions=64", "common.fp16=false",
                   "common.cpu=true", "common.log_format=simple", "common.log_interval=1", "optimization.max_update=4",
                   "lr_scheduler.warmup_updates=1", "+lr_scheduler.total_num_update=4", "dataset.batch_size=8",
                   "dataset.num_workers=0", "optimization.lr=[0.0005]"]
    if reg:
        args += ["task.num_classes=1", "criterion.regression_target=true", "checkpoint.best_checkpoint_metric=loss",
                 "checkpoint.maximize_best_checkpoint_metric=false"]
    proc = hydra_train(EX, "finetune_sentence_prediction", args, tmp_path)
    log = proc.stdout + proc.stderr
    assert "Loaded checkpoint" in log and "num_updates 4" in log
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)["model"]
    assert "encoder._ema" not in state and not any(k.startswith("encoder.regression_head") for k in state)
    head = state["classification_heads.sentence_classification_head.out_proj.weight"]
    assert head.shape[0] == (1 if reg else 2)
    pre = torch.load(pretrained[0], weights_only=False)["model"]
    k = "encoder.sentence_encoder.embed_tokens.weight"
    assert not torch.equal(state[k], pre[k]) and (state[k] - pre[k]).abs().max() < 0.05  # restored, then trained
