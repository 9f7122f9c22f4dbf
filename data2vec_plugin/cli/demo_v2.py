"""data2vec 2.0 part of `make demo`: tiny ``data2vec_multi`` pretraining for audio, images and text on generated
data (examples/v2/*_tiny.yaml via fairseq-hydra-train), then each checkpoint is loaded and encodes one input.
``run(out_dir)`` prints and returns the numbers (about a minute per modality on 2 CPU cores)."""
import os
import random
from typing import Dict, List

from .demo_common import PLUGIN_DIR, REPO, first_last, run_logged

CONFIGS = REPO / "examples" / "v2"
WORDS = ("the model predicts contextualized targets of the teacher from a masked view of the input while the "
         "teacher sees everything and moves slowly towards the student").split()


def make_text_dataset(dest: str, n_train: int = 400, n_valid: int = 40, seed: int = 0) -> str:
    """Binarized fairseq text (dict.txt, {train,valid}.{bin,idx}) of random sentences over a tiny vocabulary."""
    import torch
    from fairseq.data import Dictionary, indexed_dataset
    rng = random.Random(seed)
    os.makedirs(dest, exist_ok=True)
    d = Dictionary()
    for w in WORDS:
        d.add_symbol(w)
    d.finalize(padding_factor=1)
    d.save(os.path.join(dest, "dict.txt"))
    for split, n in (("train", n_train), ("valid", n_valid)):
        prefix = os.path.join(dest, split)
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(d))
        for _ in range(n):
            start = rng.randrange(len(WORDS) - 8)
            words = WORDS[start:start + rng.randint(5, 12)]
            builder.add_item(torch.IntTensor([d.index(w) for w in words] + [d.eos()]))
        builder.finalize(prefix + ".idx")
    return dest


def make_data(kind: str, dest: str) -> str:
    if kind == "audio":
        from .synthetic import make_audio_dataset
        return make_audio_dataset(dest, n_train=24, n_valid=4, seconds=1.0)
    if kind == "image":
        from .synthetic_images import make_image_folder
        make_image_folder(dest, train_per_class=12, val_per_class=2, size=40)
        return dest
    return make_text_dataset(dest)


def train_cmd(kind: str, data: str, out_dir: str, extra: List[str] = ()) -> List[str]:
    return ["fairseq-hydra-train", "--config-dir", CONFIGS, "--config-name", f"{kind}_tiny",
            f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", f"checkpoint.save_dir={out_dir}/{kind}_ckpt",
            f"hydra.run.dir={out_dir}/{kind}_hydra", f"common.log_file={out_dir}/{kind}_train.log"] + list(extra)


def encode_one(kind: str, ckpt: str, data: str):
    """Load the checkpoint with fairseq and return the features of one generated input."""
    import torch
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data})
    model = models[0].eval()
    g = torch.Generator().manual_seed(0)
    src = {"audio": lambda: torch.randn(1, 8000, generator=g),
           "image": lambda: torch.randn(1, 3, 32, 32, generator=g),
           "text": lambda: torch.randint(4, len(task.source_dictionary), (1, 16), generator=g)}[kind]()
    with torch.no_grad():
        return model.extract_features(src, mask=False)["x"]


def run(out_dir: str, kinds=("audio", "image", "text"), max_update: int = 40) -> Dict[str, dict]:
    results = {}
    for kind in kinds:
        data = make_data(kind, os.path.join(out_dir, f"{kind}_data"))
        print(f"[v2 {kind}] pretraining examples/v2/{kind}_tiny.yaml (data2vec_multi) for {max_update} updates")
        log = run_logged(train_cmd(kind, data, out_dir, [f"optimization.max_update={max_update}"]),
                         os.path.join(out_dir, f"{kind}_stdout.log"))
        stats = first_last(log, ["loss", "target_var", "pred_var"])
        for k, (a, b) in stats.items():
            print(f"[v2 {kind}] {k}: start {a:.4f} -> end {b:.4f}")
        feats = encode_one(kind, os.path.join(out_dir, f"{kind}_ckpt", "checkpoint_last.pt"), data)
        print(f"[v2 {kind}] reloaded checkpoint_last.pt; features {tuple(feats.shape)}")
        results[kind] = {"stats": stats, "feature_shape": tuple(feats.shape)}
    return results
