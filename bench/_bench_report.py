"""Result analysis and the report of ``bench/bench_vs_reference.py``: throughput and loss-curve comparison,
teacher dtype check, machine info, the markdown table and the marked section of RESULTS.md."""
import math
import os
import platform
import statistics
import subprocess

from _bench_configs import PY


def throughput(res, warmup):
    """updates/s and samples/s over updates warmup..N from the train_inner timestamps; median step time."""
    recs = [r for r in res["updates"] if r.get("num_updates", 0) >= warmup]
    if len(recs) < 3:
        return None
    dt = recs[-1]["t"] - recs[0]["t"]
    n = recs[-1]["num_updates"] - recs[0]["num_updates"]
    steps = [b["t"] - a["t"] for a, b in zip(recs, recs[1:])]
    bsz = statistics.mean(r.get("bsz", float("nan")) for r in recs[1:])
    cpu = recs[-1].get("cpu", float("nan")) - recs[0].get("cpu", float("nan"))
    return {"ups": n / dt, "sps": n * bsz / dt, "median_step_s": statistics.median(steps), "bsz": bsz,
            "cpu_ups": n / cpu if cpu > 0 else float("nan")}


def losses(res):
    return [r["loss"] for r in sorted(res["updates"], key=lambda r: r["num_updates"]) if "loss" in r]


def loss_verdict(plugin_runs, ref_runs, last=10, rel_tol=0.15):
    """Statistical loss-curve match.

    Per-step losses cannot match (masks, and for audio/vision also crops/augmentations, come from different
    RNG streams in the two implementations), so each implementation is summarised by its mean loss over the
    last ``last`` updates, pooled over repeats (seeds). Verdict = match if the relative difference of the two
    means is within ``rel_tol`` OR a Welch t-test on the per-update values does not reject equality at 1%
    (p >= 0.01). The test is approximate (per-update losses are autocorrelated) and is a guard against gross
    differences (loss scale, target normalisation, divergence, a model that does not learn), not a proof of
    identity. The first-3-updates means are reported too: with the same init scale they should agree closely.
    """
    def tail(runs):
        return [x for r in runs for x in losses(r)[-last:]]

    def head(runs):
        return [x for r in runs for x in losses(r)[:3]]

    p_t, r_t = tail(plugin_runs), tail(ref_runs)
    if len(p_t) < 2 or len(r_t) < 2:
        return None
    mp, mr = statistics.mean(p_t), statistics.mean(r_t)
    sp, sr = statistics.stdev(p_t), statistics.stdev(r_t)
    try:
        from scipy import stats

        pval = float(stats.ttest_ind(p_t, r_t, equal_var=False).pvalue)
    except Exception:  # scipy missing: normal approximation
        se = math.sqrt(sp ** 2 / len(p_t) + sr ** 2 / len(r_t)) or 1e-12
        pval = math.erfc(abs(mp - mr) / se / math.sqrt(2))
    rel = abs(mp - mr) / max(abs(mr), 1e-12)
    # seed-to-seed spread of the reference itself (needs >= 2 reference runs)
    per_run = [statistics.mean(losses(r)[-last:]) for r in ref_runs]
    ref_spread = (max(per_run) - min(per_run)) / max(abs(mr), 1e-12) if len(per_run) > 1 else float("nan")
    return {"plugin_mean": mp, "plugin_std": sp, "ref_mean": mr, "ref_std": sr, "rel_diff": rel, "p": pval,
            "ref_seed_spread": ref_spread, "plugin_first3": statistics.mean(head(plugin_runs)),
            "ref_first3": statistics.mean(head(ref_runs)), "match": rel <= rel_tol or pval >= 0.01,
            "rel_tol": rel_tol, "last": last}


def check_teacher_dtype(res):
    """Teacher (``_ema``) dtypes of the live model at the end of training, as recorded by ``_train_wrapper.py``
    (``ema_dtypes``). Not read from checkpoint_last.pt: fairseq's ``move_to_cpu`` stores every fp16/bf16 tensor
    as fp32, so a checkpoint cannot show the training-time dtype."""
    found = res.get("ema_dtypes")
    if not found or not isinstance(found, dict) or "error" in found:
        return f"FAIL no live teacher dtypes recorded ({found})"
    dtypes = sorted({d for v in found.values() for d in v})
    return f"{'OK' if dtypes == ['torch.float32'] else 'FAIL'} teacher {dtypes} ({', '.join(found)})"


# ------------------------------------------------------------------------------------------------------ report
def machine_info(device):
    lines = []
    try:
        lines += subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    except FileNotFoundError:
        lines.append(platform.processor())
    if device == "cuda":
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        lines.append("GPU: " + r.stdout.strip())
    versions = subprocess.run([PY, "-c", "import torch, fairseq; print('torch', torch.__version__, '| fairseq',"
                                         " fairseq.__version__, '| threads', torch.get_num_threads())"],
                              capture_output=True, text=True).stdout.strip().splitlines()
    return lines, (versions[-1] if versions else "?")


def fmt(x, spec=".3g"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summarize(runs, variants, modalities, warmup):
    base = next(v for v in variants if v[0] == "reference") if any(v[0] == "reference" for v in variants) else None
    rows, loss_rows = [], []
    for m in modalities:
        per = {}
        for v in variants:
            rs = [r for r in runs if r["modality"] == m and (r["impl"], r["precision"]) == v]
            tps = [t for t in (throughput(r, warmup) for r in rs) if t]
            if not tps:
                per[v] = None
                continue
            mem_key = "cuda_peak_mb" if any("cuda_peak_mb" in r for r in rs) else "peak_rss_mb"
            per[v] = {
                "runs": rs, "n": len(tps),
                "ups": statistics.median(t["ups"] for t in tps), "sps": statistics.median(t["sps"] for t in tps),
                "step_s": statistics.median(t["median_step_s"] for t in tps),
                "ups_all": [t["ups"] for t in tps],
                "cpu_ups": statistics.median(t["cpu_ups"] for t in tps),
                "mem_mb": statistics.median(r.get(mem_key, float("nan")) for r in rs), "mem_key": mem_key,
                "ema_ms": statistics.median(r["ema_step_ms"] for r in rs) if all("ema_step_ms" in r for r in rs)
                else None,
                "params": rs[0].get("num_params"),
            }
        for v in variants:
            if per.get(v) is None:
                rows.append((m, v, None, None))
                continue
            ratio = pair = cpu_ratio = None
            if base and v[0] == "plugin" and per.get(base):
                ratio = per[v]["ups"] / per[base]["ups"]
                cpu_ratio = per[v]["cpu_ups"] / per[base]["cpu_ups"]
                # per-sitting pairs (repeat i of both, run back to back)
                a, b = per[v]["ups_all"], per[base]["ups_all"]
                pair = [x / y for x, y in zip(a, b)]
            rows.append((m, v, per[v], (ratio, pair, cpu_ratio)))
        if base and per.get(base):
            for v in variants:
                if v[0] == "plugin" and per.get(v):
                    loss_rows.append((m, v, base, loss_verdict(per[v]["runs"], per[base]["runs"])))
    return rows, loss_rows


def render(rows, loss_rows, args, info, versions, dtype_checks, started, elapsed):
    out = []
    out.append(f"Date: {started}  |  device: {args.device}  |  size: {args.size}  |  updates: {args.updates} "
               f"(timed {args.warmup}..{args.updates})  |  repeats: {args.repeats}  |  total wall {elapsed:.0f} s")
    out.append(f"Versions: {versions}  |  threads per process: {args.threads or 'torch default'}")
    out.append("")
    out.append("| modality | impl | precision | params | updates/s | samples/s | median step (s) | "
               "plugin/ref (per pair) | CPU-time upd/s | plugin/ref (CPU time) | peak mem (MB) | EMA step (ms) |")
    out.append("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for m, v, p, rp in rows:
        if p is None:
            out.append(f"| {m} | {v[0]} | {v[1]} | | FAILED | | | | | | | |")
            continue
        ratio = cpu_ratio = ""
        if rp and rp[0] is not None:
            ratio = f"**{rp[0]:.2f}x** ({', '.join(f'{x:.2f}' for x in rp[1])})"
            cpu_ratio = f"{rp[2]:.2f}x"
        mem = f"{p['mem_mb']:.0f} {'RSS' if p['mem_key'] == 'peak_rss_mb' else 'CUDA'}"
        out.append(f"| {m} | {v[0]} | {v[1]} | {fmt(p['params'] and p['params'] / 1e6, '.2f')}M | "
                   f"{p['ups']:.3f} | {p['sps']:.2f} | {p['step_s']:.3f} | {ratio} | {fmt(p['cpu_ups'], '.3f')} | "
                   f"{cpu_ratio} | {mem} | "
                   f"{fmt(p['ema_ms'], '.2f')} |")
    out.append("")
    if loss_rows:
        out.append("Loss curves (mean loss over the last 10 updates, pooled over repeats/seeds; Welch p on "
                   "per-update values; match = rel. diff <= 15% or p >= 0.01):")
        out.append("")
        out.append("| modality | plugin | reference | first-3 mean plugin / ref | last-10 plugin (sd) | "
                   "last-10 ref (sd) | rel. diff | ref seed spread | p | match |")
        out.append("|---|---|---|---|---:|---:|---:|---:|---:|---|")
        for m, v, b, lv in loss_rows:
            if lv is None:
                out.append(f"| {m} | {v[1]} | {b[1]} | | | | | | | n/a |")
                continue
            out.append(f"| {m} | {v[1]} | {b[1]} | {lv['plugin_first3']:.3f} / {lv['ref_first3']:.3f} | "
                       f"{lv['plugin_mean']:.4f} ({lv['plugin_std']:.3f}) | {lv['ref_mean']:.4f} "
                       f"({lv['ref_std']:.3f}) | {100 * lv['rel_diff']:.1f}% | {fmt(100 * lv['ref_seed_spread'], '.1f')}% | "
                       f"{lv['p']:.3g} | {'yes' if lv['match'] else 'NO'} |")
        out.append("")
    if dtype_checks:
        out.append("Teacher dtype (live `_ema` of the trained model, recorded in the training process):")
        out.append("")
        for name, msg in dtype_checks:
            out.append(f"- {name}: {msg}")
        out.append("")
    out.append("Machine (`lscpu | head`):")
    out.append("")
    out.append("```")
    out.extend(info)
    out.append("```")
    return "\n".join(out)


def write_section(path, section, text):
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    old = open(path).read() if os.path.isfile(path) else "# data2vec plugin vs reference: benchmark results\n"
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)

