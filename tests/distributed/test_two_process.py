"""Two CPU ranks (gloo): launcher, 2 x B == 1 x 2B for one update, teachers identical, variance all-reduce."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..conftest import PLUGIN_DIR, REPO, run_cli, train_log_values
from data2vec_plugin.cli.synthetic import make_audio_dataset


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    from fairseq.distributed import LegacyDistributedDataParallel
    from data2vec_plugin.modules.losses import feature_std, masked_regression_loss
    from ..audio.helpers import random_mask, tiny_model
    torch.manual_seed(0)  # same init on every rank, as fairseq does
    model = tiny_model(ema_decay=0.9, ema_end_decay=0.9)
    ddp = LegacyDistributedDataParallel(model, dist.group.WORLD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.set_num_updates(0)
    g = torch.Generator().manual_seed(100 + rank)  # different data per rank
    x = torch.randn(2, 3000, generator=g)
    out_ = ddp(x, mask_indices=random_mask(2, 149, seed=rank))
    loss = masked_regression_loss(out_["pred"], out_["target"], out_["mask"])
    loss.backward()
    ddp.all_reduce_grads()
    opt.step()
    model.ema_step(1)
    flat = torch.cat([p.detach().reshape(-1) for p in model.teacher.module.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    # variance statistics across ranks equal the statistics of the concatenated data
    y = torch.randn(5 + rank, 4, generator=g)
    ys = [torch.zeros(6, 4) for _ in range(2)]
    dist.all_gather(ys, torch.cat([y, torch.zeros(1 - rank, 4)]))
    both = torch.cat([ys[0][:5], ys[1][:6]])
    out[rank] = {"teacher_diff": (gathered[0] - gathered[1]).abs().max().item(),
                 "moved": (flat - torch.cat([p.detach().reshape(-1) for p in model.encoder.parameters()])).abs().max().item(),
                 "std": feature_std(y).item(), "std_expected": torch.sqrt(both.var(0) + 1e-6).mean().item()}
    dist.destroy_process_group()


def test_teachers_identical_across_ranks_and_variance_all_reduce():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_port(), out), nprocs=2, join=True)
    for rank in range(2):
        assert out[rank]["teacher_diff"] == 0.0
        assert out[rank]["moved"] > 0  # the teacher is a moving average, not a copy of the student
        assert out[rank]["std"] == pytest.approx(out[rank]["std_expected"], rel=1e-5)


def test_two_processes_batch_b_equal_one_process_batch_2b(tmp_path):
    data = tmp_path / "data"
    make_audio_dataset(str(data), n_train=16, n_valid=4, seconds=0.5, vary_length=False)
    common = ["--config-dir", REPO / "examples" / "audio", "--config-name", "pretrain_tiny",
              f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", "optimization.max_update=5",
              "checkpoint.save_interval_updates=1", "checkpoint.keep_interval_updates=-1", "common.log_interval=1",
              "+model.require_same_masks=false", "dataset.disable_validation=true"]
    two = run_cli(["d2v-launch", "--nproc", "2", "--", "fairseq-hydra-train"] + common
                  + [f"checkpoint.save_dir={tmp_path / 'two'}", f"hydra.run.dir={tmp_path / 'h2'}",
                     "dataset.batch_size=4"], tmp_path)
    one = run_cli(["fairseq-hydra-train"] + common + [f"checkpoint.save_dir={tmp_path / 'one'}",
                                                      f"hydra.run.dir={tmp_path / 'h1'}", "dataset.batch_size=8"],
                  tmp_path)
    log2, log1 = two.stdout + two.stderr, one.stdout + one.stderr
    assert train_log_values(log2, "nsentences")[0] == train_log_values(log1, "nsentences")[0] == 8
    assert train_log_values(log2, "sample_size")[0] == train_log_values(log1, "sample_size")[0]
    a = torch.load(tmp_path / "one" / "checkpoint_1_1.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoint_1_1.pt", weights_only=True)["model"]
    for k, v in a.items():
        if k == "_ema":
            for kk, vv in v.items():
                torch.testing.assert_close(vv, b["_ema"][kk], rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(v, b[k], rtol=1e-5, atol=1e-6)
    assert abs(train_log_values(log2, "loss")[0] - train_log_values(log1, "loss")[0]) < 1e-3


def _text_data(root):
    import numpy as np
    from data2vec_plugin.cli.prepare_text import prepare
    words = "the cat sat on a mat while dog ran to park with ball and red blue house".split()
    rng = np.random.default_rng(0)
    (root / "raw.txt").write_text("\n".join(" ".join(rng.choice(words, size=rng.integers(4, 14)))
                                            for _ in range(200)) + "\n")
    prepare(str(root / "raw.txt"), str(root / "pre"), vocab_size=40, valid_lines=20)
    return root / "pre", ["model.transformer.encoder.embed_dim=32", "model.transformer.encoder.ffn_embed_dim=64",
                          "dataset.batch_size=4", "lr_scheduler.phase_ratio=[0.5,0.0,0.5]"]


def _image_data(root):
    from data2vec_plugin.cli.synthetic_images import make_image_folder
    make_image_folder(str(root / "img"), train_per_class=4, val_per_class=2, size=36, seed=0)
    return root / "img", ["dataset.batch_size=4"]


@pytest.mark.parametrize("modality", ["text", "vision"])
def test_two_process_training_other_modalities(modality, tmp_path):
    data, extra = (_text_data if modality == "text" else _image_data)(tmp_path)
    proc = run_cli(["d2v-launch", "--nproc", "2", "--", "fairseq-hydra-train", "--config-dir",
                    REPO / "examples" / modality, "--config-name", "pretrain_tiny", f"common.user_dir={PLUGIN_DIR}",
                    f"task.data={data}", "optimization.max_update=2", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
                    f"hydra.run.dir={tmp_path / 'h'}", "common.log_interval=1", "dataset.disable_validation=true"]
                   + extra, tmp_path)
    log = proc.stdout + proc.stderr
    assert "distributed init (rank 1)" in log and "distributed init (rank 0)" in log
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2
