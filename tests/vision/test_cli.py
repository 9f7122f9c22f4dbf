"""End to end with the stock fairseq CLIs: hydra and argparse pretraining, resume, load_model_ensemble_and_task,
classification fine-tuning and reloading the fine-tuned checkpoint without the pretraining file."""
import os
import re
import shutil

import pytest
import torch

from tests.conftest import PLUGIN_DIR, REPO, hydra_train, run_cli, train_log_values

CONFIGS = REPO / "examples" / "vision"
TINY_OVERRIDES = ["model.depth=2", "model.embed_dim=32", "model.num_mask_patches=6", "dataset.batch_size=8",
                  "common.log_interval=2"]


@pytest.fixture(scope="module")
def pretrained(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        proc = hydra_train(CONFIGS, "pretrain_tiny", [f"task.data={image_folder}", f"checkpoint.save_dir={out}/ckpt",
                                                      "optimization.max_update=8", "model.ema_anneal_end_step=8",
                                                      "checkpoint.save_interval_updates=4"] + TINY_OVERRIDES, out)
    return out, proc.stdout + proc.stderr


def test_hydra_pretraining(pretrained):
    out, log = pretrained
    losses = train_log_values(log, "loss")
    assert losses and all(l == l and l > 0 for l in losses)
    assert train_log_values(log, "ema_decay") and train_log_values(log, "target_var")
    assert "num_updates 8" in log or "num_updates=8" in log
    state = torch.load(out / "ckpt" / "checkpoint_last.pt", weights_only=False)
    assert state["cfg"]["task"]["_name"] == "data2vec_image_pretraining"
    assert "_ema" in state["model"] and "encoder.rel_pos_bias.relative_position_index" in state["model"]
    assert state["optimizer_history"][-1]["num_updates"] == 8


def test_resume(pretrained, image_folder, tmp_path):
    out, _ = pretrained
    (tmp_path / "ckpt").mkdir()
    shutil.copy(out / "ckpt" / "checkpoint_last.pt", tmp_path / "ckpt" / "checkpoint_last.pt")
    before = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)["model"]["_ema"]
    proc = hydra_train(CONFIGS, "pretrain_tiny", [f"task.data={image_folder}", f"checkpoint.save_dir={tmp_path}/ckpt",
                                                  "optimization.max_update=12", "model.ema_anneal_end_step=8",
                                                  "checkpoint.save_interval_updates=4"] + TINY_OVERRIDES, tmp_path)
    log = proc.stdout + proc.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 8 updates\)", log), log[-3000:]
    after = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)
    assert after["optimizer_history"][-1]["num_updates"] == 12
    # the teacher continued from the saved _ema (constant decay 0.999 after step 8): it moved only slightly
    k = "blocks.0.attn.qkv.weight"
    assert not torch.equal(after["model"]["_ema"][k], before[k])
    assert (after["model"]["_ema"][k] - before[k]).abs().max() < 0.05


def test_argparse_pretraining(image_folder, tmp_path):
    proc = run_cli(["fairseq-train", image_folder, "--user-dir", PLUGIN_DIR, "--task", "data2vec_image_pretraining",
                    "--arch", "data2vec_vision", "--criterion", "data2vec_regression", "--optimizer", "adam",
                    "--lr", "0.001", "--max-update", "4", "--batch-size", "8", "--cpu", "--input-size", "32",
                    "--image-size", "32", "--patch-size", "8", "--depth", "2", "--embed-dim", "32", "--num-heads", "4",
                    "--num-mask-patches", "6", "--min-mask-patches-per-block", "2", "--average-top-k-layers", "2",
                    "--ema-anneal-end-step", "4", "--drop-path", "0", "--save-dir", tmp_path / "ckpt",
                    "--disable-validation", "--num-workers", "0", "--log-format", "simple", "--log-interval", "1",
                    "--no-epoch-checkpoints"], tmp_path)
    log = proc.stdout + proc.stderr
    assert train_log_values(log, "loss") and (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)
    assert state["cfg"]["model"]["depth"] == 2 and "_ema" in state["model"]


def test_load_model_ensemble_and_task(pretrained, image_folder):
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    out, _ = pretrained
    path = out / "ckpt" / "checkpoint_last.pt"
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    model = models[0].eval()
    saved = torch.load(path, weights_only=False)["model"]["_ema"]
    assert all(torch.equal(v, saved[k]) for k, v in model.teacher.state_dict().items())
    task.load_dataset("valid")
    ds = task.dataset("valid")
    batch = ds.collater([ds[i] for i in range(4)])
    with torch.no_grad():
        feats = model(batch["net_input"]["img"], mask=False)
        res = model(**batch["net_input"])
    assert feats.shape == (4, 16, 32) and torch.isfinite(feats).all()
    assert (res["mask"].sum(1) == 6).all() and res["target"].shape == (4, 16, 32)


def test_classification_finetuning(pretrained, image_folder, tmp_path):
    out, _ = pretrained
    pre = tmp_path / "pre.pt"
    shutil.copy(out / "ckpt" / "checkpoint_last.pt", pre)
    proc = hydra_train(CONFIGS, "finetune_tiny", [f"task.data={image_folder}", f"model.model_path={pre}",
                                                  f"checkpoint.save_dir={tmp_path}/ft", "optimization.max_update=12",
                                                  "dataset.validate_interval=2", "dataset.batch_size=8"], tmp_path)
    log = proc.stdout + proc.stderr
    accs = [float(a) for a in re.findall(r"valid on 'val' subset .*?\| accuracy ([0-9.]+)", log)]
    assert accs and all(0 <= a <= 100 for a in accs), log[-3000:]
    assert (tmp_path / "ft" / "checkpoint_best.pt").exists()
    os.remove(pre)  # the fine-tuned checkpoint embeds the pretrained config: reload without the file

    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ft" / "checkpoint_last.pt")])
    clf = models[0].eval()
    assert cfg.model.pretrained_model_args.model._name == "data2vec_vision"
    with torch.no_grad():
        logits = clf(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4)
