"""Text demo: stdlib docstrings -> d2v-prepare-text -> tiny data2vec_text pretraining -> load -> fine-tune.

Everything runs on CPU in a few minutes without downloads: the corpus is the docstrings of the Python standard
library installed with the interpreter; the labelled set asks whether a docstring line starts with "Return".
``run(out_dir)`` prints and returns the numbers.
"""
import ast
import logging
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List

import torch

logger = logging.getLogger(__name__)
PLUGIN = Path(__file__).resolve().parents[1]
EXAMPLES = PLUGIN.parent / "examples" / "text"
TINY_ARCH = ["model.max_positions=64", "model.transformer.max_source_positions=64",
             "model.transformer.encoder.embed_dim=64", "model.transformer.encoder.ffn_embed_dim=128",
             "model.transformer.encoder.layers=2", "model.transformer.encoder.attention_heads=4",
             "model.transformer.dropout=0", "model.transformer.attention_dropout=0"]


def stdlib_docstring_lines(max_lines: int = 4000, max_files: int = 150) -> List[str]:
    """First paragraphs of module/class/function docstrings of the installed standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    lines: List[str] = []
    for path in sorted(root.glob("*.py"))[:max_files]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    lines += [" ".join(x.split()) for x in doc.split("\n\n")[0].split("\n") if len(x.split()) > 2]
        if len(lines) >= max_lines:
            break
    return lines[:max_lines]


def hydra(config: str, out: Path, overrides: List[str]) -> str:
    cmd = [str(Path(sys.executable).parent / "fairseq-hydra-train"), "--config-dir", str(EXAMPLES),
           "--config-name", config, f"common.user_dir={PLUGIN}", f"hydra.run.dir={out}/hydra"] + overrides
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(cmd, cwd=str(out), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def last(log: str, key: str) -> float:
    vals = re.findall(rf"\| {key} ([-+0-9.eE]+)", log)
    return float(vals[-1]) if vals else float("nan")


def run(out_dir: str) -> Dict[str, float]:
    from fairseq import checkpoint_utils

    from .prepare_text import prepare
    out = Path(out_dir).resolve() / "text"
    (out / "pretrain").mkdir(parents=True, exist_ok=True)
    lines = stdlib_docstring_lines()
    (out / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prep = prepare(str(out / "corpus.txt"), str(out / "data"), vocab_size=1000, valid_lines=200)
    log = hydra("pretrain_tiny", out / "pretrain", [f"task.data={out / 'data'}", "optimization.max_update=40",
                                                    f"checkpoint.save_dir={out / 'pretrain' / 'ckpt'}"])
    ckpt = out / "pretrain" / "ckpt" / "checkpoint_last.pt"
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                     arg_overrides={"data": str(out / "data")})
    tokens = task.source_dictionary.encode_line(" ".join(lines[0].split()[:8]), add_if_not_exist=False).long()
    with torch.no_grad():
        feats = models[0].eval()(tokens[None], features_only=True)[0]
    cls = [x for x in lines if len(x) < 300][:800]
    labels = ["return" if x.lower().startswith("return") else "other" for x in cls]
    (out / "cls.txt").write_text("\n".join(cls) + "\n", encoding="utf-8")
    (out / "cls.labels").write_text("\n".join(labels) + "\n", encoding="utf-8")
    prepare(str(out / "cls.txt"), str(out / "cls"), valid_lines=150, spm_model=str(out / "data" / "spm.model"),
            labels=str(out / "cls.labels"))
    (out / "finetune").mkdir(exist_ok=True)
    ft = hydra("finetune_sentence_prediction", out / "finetune", TINY_ARCH + [
        f"task.data={out / 'cls'}", f"checkpoint.restore_file={ckpt}", "task.max_positions=64",
        f"checkpoint.save_dir={out / 'finetune' / 'ckpt'}", "common.fp16=false", "common.cpu=true",
        "common.log_format=simple", "common.log_interval=10", "optimization.max_update=60", "optimization.max_epoch=3",
        "optimization.lr=[0.0005]", "lr_scheduler.warmup_updates=6", "+lr_scheduler.total_num_update=60",
        "dataset.batch_size=16", "dataset.num_workers=0"])
    valid_other = labels[-150:].count("other") / 150
    numbers = {"corpus_lines": len(lines), "vocab": prep["vocab"], "pretrain_loss": last(log, "loss"),
               "pretrain_target_var": last(log, "target_var"), "features_dim": feats.shape[-1],
               "finetune_valid_accuracy": last(ft, "accuracy"), "majority_baseline": 100 * max(valid_other,
                                                                                                1 - valid_other)}
    for k, v in numbers.items():
        print(f"[text demo] {k}: {v}")
    return numbers


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
