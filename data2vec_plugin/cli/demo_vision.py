"""Vision part of `make demo`: procedural image folder -> data2vec_vision pretraining -> classifier fine-tuning.

Both stages run the stock ``fairseq-hydra-train`` with ``examples/vision/pretrain_tiny.yaml`` and
``examples/vision/finetune_tiny.yaml``; prints and returns the validation top-1 accuracy (4 classes, chance 25%).
About a minute on 2 CPU cores.
"""
import os
import re
from contextlib import contextmanager

from .demo_common import PLUGIN_DIR, REPO, first_last, run_logged
from .synthetic_images import make_image_folder

CONFIGS = REPO / "examples" / "vision"


@contextmanager
def _single_thread_default():
    """Tiny models on a shared 2-core machine: OpenMP spinning with 2 threads is far slower than 1 thread."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def valid_accuracies(log: str):
    """Top-1 accuracies (%) of every validation line in a fairseq simple-format log."""
    return [float(v) for v in re.findall(r"valid on '[^']+' subset .*?\| accuracy ([0-9.]+)", log)]


def run(out_dir: str) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    data = os.path.join(out_dir, "images")
    pre_ckpt, ft_ckpt = os.path.join(out_dir, "pretrain_ckpt"), os.path.join(out_dir, "finetune_ckpt")
    counts = make_image_folder(data, train_per_class=24, val_per_class=8, size=40)
    print(f"[vision] generated {data}: {counts['train']} train / {counts['val']} val images, "
          f"{counts['classes']} procedural classes")
    with _single_thread_default():
        print("[vision] pretraining examples/vision/pretrain_tiny.yaml with fairseq-hydra-train")
        log = run_logged(["fairseq-hydra-train", "--config-dir", CONFIGS, "--config-name", "pretrain_tiny",
                          f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", f"checkpoint.save_dir={pre_ckpt}",
                          f"hydra.run.dir={out_dir}/pretrain_hydra"], os.path.join(out_dir, "pretrain_stdout.log"))
        stats = first_last(log, ["loss", "target_var", "pred_var"])
        for k, (a, b) in stats.items():
            print(f"[vision] pretraining {k}: start {a:.4f} -> end {b:.4f}")
        print("[vision] fine-tuning a classifier: examples/vision/finetune_tiny.yaml")
        pretrained = os.path.join(pre_ckpt, "checkpoint_last.pt")
        log = run_logged(["fairseq-hydra-train", "--config-dir", CONFIGS, "--config-name", "finetune_tiny",
                          f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", f"model.model_path={pretrained}",
                          f"checkpoint.save_dir={ft_ckpt}", f"hydra.run.dir={out_dir}/finetune_hydra"],
                         os.path.join(out_dir, "finetune_stdout.log"))
    accs = valid_accuracies(log)
    if not accs:
        raise SystemExit(f"no validation accuracy found in {out_dir}/finetune_stdout.log")
    print(f"[vision] validation top-1 accuracy: {accs[-1]:.1f}% (chance 25%)")
    return {"valid_accuracy": accs[-1], "valid_accuracies": accs, "pretrain_stats": stats,
            "pretrain_checkpoint": pretrained, "finetune_checkpoint": os.path.join(ft_ckpt, "checkpoint_last.pt"),
            "data": data}


if __name__ == "__main__":
    import sys
    run(sys.argv[1] if len(sys.argv) > 1 else "demo_out/vision")
