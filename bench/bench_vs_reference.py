#!/usr/bin/env python
"""Benchmark the data2vec plugin against the reference implementation (Meta's examples/data2vec inside
fairseq-fixed, run with the runtime shim P1-P4 + P5), on the same generated data, model size, batch and masking
settings.

Every training run is a separate ``fairseq-hydra-train`` process (through ``bench/_train_wrapper.py``, which only
adds precise train_inner timestamps, peak memory and an EMA step micro-benchmark on the trained model); the
plugin and the reference are never imported into one process. Runs alternate per modality (P R R P P R ...),
because timings on a shared machine drift by up to 40% between sittings: only ratios inside one sitting are
meaningful.

Per modality it prints: updates/s and samples/s for both (updates ``--warmup``..N, from timestamps), their
ratio, peak RSS (CPU) / peak CUDA memory (GPU), the EMA step time, and a loss-curve comparison (mean loss over
the last 10 updates, see ``loss_verdict``). With ``--results-md`` it (re)writes a marked section of that file.

    .venv/bin/python bench/bench_vs_reference.py --modalities audio,text,vision --updates 40 --repeats 2
    # GPU (see bench/gpu_check.sh):
    .venv/bin/python bench/bench_vs_reference.py --device cuda \
        --variants plugin:fp16,plugin:bf16,reference:fp16 --updates 20 --repeats 1 --check-teacher-dtype
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the _bench_* modules next to this file
from _bench_configs import BENCH, PY, ROOT, SIZES, TASKS, make_config, make_data  # noqa: E402
from _bench_report import (check_teacher_dtype, fmt, losses, machine_info, render, summarize,  # noqa: E402
                           throughput, write_section)

SHIM = os.environ.get("D2V_REF_SHIM", "/work/shared/reference/reference_runtime/sitecustomize.py")

# --------------------------------------------------------------------------------------------------- reference
REF_DIR = None
THREADS = None


def setup_reference_runtime(work):
    """Temp dir with the shared shim (+ P5 from scripts/ref_shim_p5.py) and the ``examples`` symlink."""
    global REF_DIR
    site_fairseq = subprocess.run([PY, "-c", "import os, fairseq; print(os.path.dirname(fairseq.__file__))"],
                                  capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    REF_DIR = os.path.join(site_fairseq, "examples", "data2vec")
    if not os.path.isdir(REF_DIR):
        sys.exit(f"reference not found: {REF_DIR}")
    if not os.path.isfile(SHIM):
        sys.exit(f"reference runtime shim not found: {SHIM} (see running_the_reference.md)")
    rt = os.path.join(work, "rt")
    os.makedirs(rt, exist_ok=True)
    with open(os.path.join(rt, "sitecustomize.py"), "w") as f:
        f.write(open(SHIM).read())
        f.write(open(os.path.join(ROOT, "scripts", "ref_shim_p5.py")).read())
    link = os.path.join(rt, "examples")
    if not os.path.islink(link):
        os.symlink(os.path.join(site_fairseq, "examples"), link)
    return rt


# ------------------------------------------------------------------------------------------------------- runs
def run_one(work, rt, modality, impl, precision, size, data, seed, updates, device, tag, save, ema_reps,
            timeout):
    name = f"{modality}_{impl}_{precision}_{tag}"
    rdir = os.path.join(work, "runs", name)
    os.makedirs(rdir, exist_ok=True)
    cfg_name = "bench"
    save_dir = os.path.join(rdir, "ckpt") if save else None
    with open(os.path.join(rdir, cfg_name + ".yaml"), "w") as f:
        f.write(make_config(modality, impl, size, data[modality], seed, updates, device, precision, save_dir,
                            REF_DIR))
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    if THREADS:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(THREADS)
    if impl == "reference":
        env["PYTHONPATH"] = rt + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    result = os.path.join(rdir, "result.json")
    cmd = [PY, os.path.join(BENCH, "_train_wrapper.py"), result, str(ema_reps), "--",
           "--config-dir", rdir, "--config-name", cfg_name, f"hydra.run.dir={rdir}/hydra"]
    t0 = time.time()
    with open(os.path.join(rdir, "train.log"), "w") as lf:
        try:
            r = subprocess.run(cmd, cwd=rdir, env=env, stdout=lf, stderr=subprocess.STDOUT, timeout=timeout)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.time() - t0
    if rc != 0 or not os.path.isfile(result):
        tail = open(os.path.join(rdir, "train.log")).read().splitlines()[-30:]
        print(f"  !! {name} failed (rc={rc}); last lines of {rdir}/train.log:\n    " + "\n    ".join(tail),
              flush=True)
        return None
    res = json.load(open(result))
    res.update(name=name, modality=modality, impl=impl, precision=precision, seed=seed, wall_s=wall, dir=rdir,
               save_dir=save_dir)
    return res


# -------------------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modalities", default="audio,text,vision")
    ap.add_argument("--updates", type=int, default=40, help="updates per run (max_update)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per implementation and modality (alternating)")
    ap.add_argument("--warmup", type=int, default=4, help="timing window starts at this update")
    ap.add_argument("--size", choices=sorted(SIZES), default="bench")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--variants", default=None,
                    help="impl:precision list; default plugin:fp32,reference:fp32 (cpu). The first reference "
                         "variant is the baseline of the ratios")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/MKL threads per training process (0 = torch default). 1 by default: on a shared "
                         "machine a 2-thread process stalls at every parallel-for barrier whenever another "
                         "process holds a core, which makes wall times meaningless")
    ap.add_argument("--ema-reps", type=int, default=30)
    ap.add_argument("--check-teacher-dtype", action="store_true",
                    help="save checkpoints and check that the teacher (_ema) is fp32")
    ap.add_argument("--run-timeout", type=int, default=1800, help="seconds per training run")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds for the whole benchmark: no run is started with less than 30 s left, and a run "
                         "gets at most the time left (so the table is always written)")
    ap.add_argument("--work", default=None, help="work dir (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results-md", default=os.path.join(BENCH, "RESULTS.md"), help="'-' = do not write")
    ap.add_argument("--section", default=None, help="marked section of --results-md (default cpu-bench/gpu-bench)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    global THREADS
    THREADS = args.threads
    modalities = [m for m in args.modalities.split(",") if m]
    for m in modalities:
        if m not in TASKS:
            ap.error(f"unknown modality {m}")
    vs = args.variants or ("plugin:fp32,reference:fp32" if args.device == "cpu" else "plugin:fp16,reference:fp16")
    variants = [tuple(v.split(":")) for v in vs.split(",")]
    section = args.section or ("cpu-bench" if args.device == "cpu" else "gpu-bench")

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t_start = time.time()
    work = args.work or tempfile.mkdtemp(prefix="d2v_bench.")
    os.makedirs(work, exist_ok=True)
    print(f"work dir: {work}", flush=True)
    try:
        rt = setup_reference_runtime(work)
        data = make_data(work, args.size, modalities, args.updates)
        print("data ready: " + ", ".join(f"{k}={v}" for k, v in data.items()), flush=True)
        runs, dtype_checks = [], []
        for m in modalities:
            for rep in range(args.repeats):
                order = variants if rep % 2 == 0 else list(reversed(variants))  # P R | R P | ...
                for impl, prec in order:
                    timeout = args.run_timeout
                    if args.time_budget is not None:
                        left = args.time_budget - (time.time() - t_start) - 15  # 15 s for the report
                        if left < 30:
                            print(f"  -- skipped {m} {impl}:{prec} r{rep}: time budget spent", flush=True)
                            continue
                        timeout = int(min(timeout, left))
                    res = run_one(work, rt, m, impl, prec, args.size, data, 1 + rep, args.updates, args.device,
                                  f"r{rep}", args.check_teacher_dtype, args.ema_reps, timeout)
                    if res is None:
                        continue
                    tp = throughput(res, args.warmup)
                    ls = losses(res)
                    print(f"  {res['name']}: {fmt(tp and tp['ups'], '.3f')} upd/s "
                          f"({fmt(tp and tp['cpu_ups'], '.3f')} per CPU-s), "
                          f"{fmt(tp and tp['sps'], '.2f')} samples/s, loss {fmt(ls[0] if ls else None)} -> "
                          f"{fmt(ls[-1] if ls else None)}, peak RSS {res['peak_rss_mb']:.0f} MB, EMA "
                          f"{fmt(res.get('ema_step_ms'), '.2f')} ms, wall {res['wall_s']:.0f} s", flush=True)
                    runs.append(res)
                    if args.check_teacher_dtype:
                        msg = check_teacher_dtype(res)
                        dtype_checks.append((res["name"], msg))
                        print(f"    teacher dtype: {msg}", flush=True)
        rows, loss_rows = summarize(runs, variants, modalities, args.warmup)
        info, versions = machine_info(args.device)
        text = render(rows, loss_rows, args, info, versions, dtype_checks, started, time.time() - t_start)
        print()
        print(text)
        if args.results_md != "-":
            write_section(args.results_md, section, text)
            print(f"\nwritten: {args.results_md} (section {section})")
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"runs": [{k: v for k, v in r.items()} for r in runs], "text": text}, f)
        failed = any(p is None for _, _, p, _ in rows)
        return 1 if failed else 0
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
