"""data2vec 2.0 (data2vec_multi) vs data2vec v1 at equal encoder size on the same generated data (CPU).

For each modality both models are trained with fairseq-hydra-train (subprocess, OMP_NUM_THREADS=1) for the same
wall-clock budget (``optimization.stop_time_hours``), starting from the tiny example configs with the encoder made
identical (same width, depth, heads, MLP ratio; audio: same conv feature encoder). Both see the same number of
*student views* per update: v1 ``batch_size = B * clones``, v2 ``batch_size = B`` with ``clone_batch = clones``.

Reported per run: samples/s per student view = median over train_inner logs of ``ups * bsz`` (x clone_batch for
v2), updates done, and the validation regression loss after the budget (fairseq validates when it stops). The two
losses are each model's own objective (different teachers, masks and normalisation), so compare their trends, not
their absolute values. Results are printed and appended to bench/RESULTS_v2.md.
    python bench/v2_vs_v1.py --budget 90 --modalities audio image text
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from data2vec_plugin.cli.demo_v2 import make_text_dataset  # noqa: E402

PLUGIN = REPO / "data2vec_plugin"
BIN = Path(sys.executable).parent
DIM, HEADS, CLONES, BATCH = 64, 4, 8, 4
TEXT = {"tokens": 64, "layers": 2, "dim": DIM}  # --text-tokens/--text-layers/--text-dim
CONV = "[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)]"


def make_data(kind: str, dest: str) -> str:
    if kind == "audio":
        from data2vec_plugin.cli.synthetic import make_audio_dataset
        return make_audio_dataset(dest, n_train=96, n_valid=16, seconds=1.0)
    if kind == "image":
        from data2vec_plugin.cli.synthetic_images import make_image_folder
        make_image_folder(dest, train_per_class=48, val_per_class=8, size=40)
        return dest
    return make_text_dataset(dest, n_train=2000, n_valid=100)


def v1_config(kind: str) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "examples" / kind.replace("image", "vision") / "pretrain_tiny.yaml"))
    m = cfg["model"]
    if kind == "audio":
        m.update(conv_feature_layers=CONV, encoder_layers=4, encoder_embed_dim=DIM, encoder_ffn_embed_dim=2 * DIM,
                 encoder_attention_heads=HEADS, average_top_k_layers=2)
    elif kind == "image":
        m.update(depth=3, embed_dim=DIM, num_heads=HEADS, average_top_k_layers=2)
    else:
        m["transformer"]["encoder"].update(layers=TEXT["layers"], embed_dim=TEXT["dim"], ffn_embed_dim=2 * TEXT["dim"],
                                           attention_heads=HEADS)
        m["transformer"]["max_source_positions"] = TEXT["tokens"]
        m["max_positions"] = TEXT["tokens"]
        cfg["task"]["tokens_per_sample"] = TEXT["tokens"]
    cfg["dataset"]["batch_size"] = BATCH * CLONES
    return cfg


def v2_config(kind: str) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "examples" / "v2" / f"{kind}_tiny.yaml"))
    m = cfg["model"]
    m.update(embed_dim=DIM, num_heads=HEADS, mlp_ratio=2.0, clone_batch=CLONES, average_top_k_layers=2)
    mod = m["modalities"][kind]
    if kind == "audio":
        m["depth"] = 4
        mod.update(feature_encoder_spec=CONV, conv_pos_width=16, conv_pos_groups=4)
    elif kind == "image":
        m["depth"] = 2  # + 1 prenet block = 3 blocks, as v1
        mod["embed_dim"] = DIM
    else:
        m.update(depth=TEXT["layers"], embed_dim=TEXT["dim"])
        mod["max_source_positions"] = TEXT["tokens"]
        cfg["task"]["tokens_per_sample"] = TEXT["tokens"]
    cfg["dataset"]["batch_size"] = BATCH
    return cfg


def common_overrides(cfg: dict, budget_s: float) -> dict:
    cfg["optimization"].update(max_update=100000, stop_time_hours=budget_s / 3600.0)
    cfg["lr_scheduler"] = {"_name": "polynomial_decay", "warmup_updates": 10, "total_num_update": 100000}
    cfg["checkpoint"] = {"no_save": True}
    cfg["dataset"].update(validate_interval=1000, disable_validation=False, num_workers=0)
    cfg["common"].update(log_interval=5, log_format="simple")
    cfg["criterion"]["collapse_start_update"] = 10 ** 9
    return cfg


def run(kind: str, version: str, data: str, budget_s: float, work: Path) -> dict:
    cfg = common_overrides(v1_config(kind) if version == "v1" else v2_config(kind), budget_s)
    cfg_dir = work / f"{kind}_{version}"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "bench.yaml").write_text("# @package _group_\n" + OmegaConf.to_yaml(OmegaConf.create(cfg)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(cfg_dir), "--config-name", "bench",
           f"common.user_dir={PLUGIN}", f"task.data={data}", f"hydra.run.dir={cfg_dir}/hydra"]
    proc = subprocess.run(cmd, cwd=str(cfg_dir), env=env, capture_output=True, text=True, timeout=budget_s + 600)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 and "done training" not in log:  # (an abort at interpreter exit is tolerated)
        raise RuntimeError(f"{kind} {version} failed:\n{log[-4000:]}")
    inner = [line for line in log.splitlines() if "train_inner" in line or re.search(r"epoch \d+:\s+\d+ /", line)]
    ups = [float(m.group(1)) for line in inner for m in [re.search(r"ups[= ]([0-9.]+)", line)] if m]
    bsz = [float(m.group(1)) for line in inner for m in [re.search(r"bsz[= ]([0-9.]+)", line)] if m]
    updates = [int(m) for m in re.findall(r"num_updates[= ](\d+)", log)]
    valid = re.findall(r"valid on '\w+' subset.*?\| loss[= ]([0-9.eE+-]+)", log)
    views = CLONES if version == "v2" else 1
    rates = [u * b * views for u, b in zip(ups[1:] or ups, bsz[1:] or bsz)]
    return {"samples_per_s": statistics.median(rates) if rates else float("nan"),
            "updates": max(updates) if updates else 0, "valid_loss": float(valid[-1]) if valid else float("nan")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=90.0, help="wall-clock seconds of training per run")
    p.add_argument("--modalities", nargs="+", default=["audio", "image", "text"], choices=["audio", "image", "text"])
    p.add_argument("--text-tokens", type=int, default=TEXT["tokens"], help="text block length (tokens)")
    p.add_argument("--text-layers", type=int, default=TEXT["layers"], help="text encoder depth (both versions)")
    p.add_argument("--text-dim", type=int, default=TEXT["dim"], help="text embedding dim (both versions)")
    p.add_argument("--results", default=str(REPO / "bench" / "RESULTS_v2.md"), help="markdown file to append to")
    a = p.parse_args(argv)
    TEXT.update(tokens=a.text_tokens, layers=a.text_layers, dim=a.text_dim)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kind in a.modalities:
            data = make_data(kind, str(work / f"{kind}_data"))
            r1 = run(kind, "v1", data, a.budget, work)
            r2 = run(kind, "v2", data, a.budget, work)
            ratio = r2["samples_per_s"] / r1["samples_per_s"]
            print(f"[{kind}] v1 {r1}  v2 {r2}  v2/v1 samples/s per student view = {ratio:.2f}x", flush=True)
            rows.append((kind, r1, r2, ratio))
    head = (f"\n## {datetime.date.today()} — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"OMP_NUM_THREADS=1, budget {a.budget:.0f}s per run\n\n"
            f"Encoder: width {DIM}, {HEADS} heads, MLP x2 (audio: 4 blocks + conv {CONV}; image: 3 blocks, "
            f"32px/patch 8; text: {TEXT['layers']} blocks of width {TEXT['dim']}, {TEXT['tokens']} tokens). Student views per update: v1 batch {BATCH * CLONES}, "
            f"v2 batch {BATCH} x clone_batch {CLONES}.\n\n"
            "| modality | v1 samples/s | v2 samples/s (views) | ratio | v1 updates | v2 updates | "
            "v1 valid loss | v2 valid loss |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {k} | {r1['samples_per_s']:.1f} | {r2['samples_per_s']:.1f} | {ratio:.2f}x | {r1['updates']} | "
                   f"{r2['updates']} | {r1['valid_loss']:.4f} | {r2['valid_loss']:.4f} |\n" for k, r1, r2, ratio in rows)
    with open(a.results, "a") as f:
        if f.tell() == 0:
            f.write("# data2vec 2.0 vs v1 throughput (bench/v2_vs_v1.py)\n\nGoal: v2 >= 3x v1 samples/s per "
                    "student view on CPU. Losses are each model's own regression objective after the budget.\n")
        f.write(head + body)
    print(head + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
