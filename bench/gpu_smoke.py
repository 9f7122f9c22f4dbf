"""Half-precision smoke check of every model: the tiny configs (``examples/{audio,text,vision}/pretrain_tiny.yaml``
for data2vec, ``examples/v2/*_tiny.yaml`` for data2vec 2.0) trained for a few updates with fairseq-hydra-train in
fp16 and bf16.

Per (modality, precision) it reports: finished, first/last logged loss (finite), updates/s of the run, and an
in-process step on the trained checkpoint the way fairseq's trainer runs it (model cast to fp16/bf16, batch from
the task's collater, forward + backward, EMA step): loss finite, student in half precision, teacher (EMA masters)
still fp32 on the device. (fairseq's checkpoints store every tensor as fp32, so dtypes must be checked live.)
Used by ``bench/gpu_check.sh`` (phase 1); ``--device cpu --precisions bf16`` runs the same on a CPU.

    python bench/gpu_smoke.py --device cuda --out /tmp/smoke.md
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data2vec_plugin.cli.demo_v2 import PLUGIN_DIR, make_data  # noqa: E402

EXAMPLES = os.path.join(ROOT, "examples")
# name -> (config dir, config name, data kind of demo_v2.make_data)
KINDS = {"v1-audio": ("audio", "pretrain_tiny", "audio"), "v1-text": ("text", "pretrain_tiny", "text"),
         "v1-vision": ("vision", "pretrain_tiny", "image"), "v2-audio": ("v2", "audio_tiny", "audio"),
         "v2-image": ("v2", "image_tiny", "image"), "v2-text": ("v2", "text_tiny", "text")}

PRECISION_FLAGS = {"fp16": ["common.fp16=true"], "bf16": ["common.bf16=true"]}


def live_step(ckpt: str, data: str, precision: str, device: str):
    """One fairseq-style half-precision training step on the checkpoint (model cast, criterion forward, backward,
    teacher step) -> (teacher dtypes, student dtypes, loss)."""
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils, utils
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data})
    criterion = task.build_criterion(cfg.criterion)
    model = models[0].to(dtype=dtype).to(device).train()
    task.load_dataset("train")
    ds = task.dataset("train")
    sample = ds.collater([ds[i] for i in range(2)])
    sample = utils.move_to_cuda(sample) if device == "cuda" else sample
    sample = utils.apply_to_sample(lambda t: t.to(dtype) if t.is_floating_point() else t, sample)
    loss, _, _ = criterion(model, sample)
    loss.backward()
    model.set_num_updates(1)
    model.set_num_updates(2)  # the teacher steps once per optimizer update
    holder = model.encoder if hasattr(model, "encoder") and hasattr(model.encoder, "teacher") else model  # text v1
    teacher = sorted({f"{p.dtype}@{p.device.type}" for p in holder.teacher.module.parameters()})
    student = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()})
    return teacher, student, float(loss)


def run(kind: str, precision: str, device: str, updates: int, work: str, timeout: int) -> dict:
    cfg_dir, cfg_name, data_kind = KINDS[kind]
    data = os.path.join(work, f"data_{data_kind}")
    if not os.path.isdir(data):
        make_data(data_kind, data)
    out = os.path.join(work, f"{kind}_{precision}")
    cmd = ["fairseq-hydra-train", "--config-dir", os.path.join(EXAMPLES, cfg_dir), "--config-name", cfg_name,
           f"common.user_dir={PLUGIN_DIR}", f"task.data={data}", f"checkpoint.save_dir={out}/ckpt",
           f"hydra.run.dir={out}/hydra", f"optimization.max_update={updates}", "common.log_interval=1",
           f"checkpoint.save_interval_updates={updates}", f"common.cpu={'true' if device == 'cpu' else 'false'}",
           "dataset.disable_validation=true"] + PRECISION_FLAGS[precision]
    exe = os.path.join(os.path.dirname(sys.executable), cmd[0])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([exe if os.path.exists(exe) else cmd[0]] + cmd[1:], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        log, rc = (e.stdout or "") + (e.stderr or "") if isinstance(e.stdout, str) else "", "timeout"
    wall = time.perf_counter() - t0
    losses = [float(v) for v in re.findall(r"\[train_inner\].* loss=([-+0-9.eEnaif]+)", log)]
    ups = [float(x) for x in re.findall(r"ups=([0-9.]+)", log)]
    res = {"kind": kind, "precision": precision, "rc": rc, "wall": wall, "losses": losses,
           "ups": sorted(ups)[len(ups) // 2] if ups else None, "tail": log[-1500:]}
    ckpt = os.path.join(out, "ckpt", "checkpoint_last.pt")
    res["teacher"], res["student"], res["live_loss"] = [], [], float("nan")
    if os.path.isfile(ckpt):
        try:
            res["teacher"], res["student"], res["live_loss"] = live_step(ckpt, data, precision, device)
        except Exception as e:  # noqa: BLE001  (reported in the table, the other runs go on)
            res["tail"] += f"\nlive step failed: {type(e).__name__}: {e}"
    half = str(torch.float16 if precision == "fp16" else torch.bfloat16)
    res["ok"] = (rc == 0 and len(losses) >= 2 and all(v == v and abs(v) != float("inf") for v in losses)
                 and res["teacher"] == [f"torch.float32@{device}"] and res["student"] == [half]
                 and res["live_loss"] == res["live_loss"] and abs(res["live_loss"]) != float("inf"))
    return res


def render(results, device: str) -> str:
    lines = [f"half-precision smoke ({device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", "| modality | precision | ok | loss first -> last | median ups | live-step loss | teacher (live) | "
             "student (live) | wall (s) |", "|---|---|---|---|---:|---:|---|---|---:|"]
    for r in results:
        loss = f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}" if r["losses"] else f"rc={r['rc']}"
        lines.append(f"| {r['kind']} | {r['precision']} | {'OK' if r['ok'] else 'FAIL'} | {loss} | "
                     f"{r['ups'] if r['ups'] is not None else ''} | {r['live_loss']:.3f} | {','.join(r['teacher'])} | "
                     f"{','.join(r['student'])} | {r['wall']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--precisions", default="fp16,bf16")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {list(KINDS)}")
    p.add_argument("--updates", type=int, default=20, help="updates per run (tri_stage needs ~20)")
    p.add_argument("--run-timeout", type=int, default=60)
    p.add_argument("--out", default=None, help="markdown file for the table (default: stdout only)")
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="d2v_smoke_") as work:
        for kind in a.kinds.split(","):
            for prec in a.precisions.split(","):
                r = run(kind, prec, a.device, a.updates, work, a.run_timeout)
                results.append(r)
                print(f"[smoke] {kind} {prec}: {'OK' if r['ok'] else 'FAIL'} ({r['wall']:.0f}s)", flush=True)
                if not r["ok"]:
                    print(r["tail"], flush=True)
    table = render(results, a.device)
    print(table)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n" + table)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
