"""d2v-plot LOG_OR_DIR... --out curves.png: training curves (loss, target_var, pred_var, ema_decay, lr) from
fairseq logs (``simple`` or ``json`` format; a directory means every *.log inside it)."""
import argparse
import json
import os
import re
import sys
from typing import Dict, List

KEYS = ("loss", "target_var", "pred_var", "ema_decay", "lr")
_KV = re.compile(r"([A-Za-z_]+)[=]([-+0-9.eE]+)")


def parse_log(path: str) -> Dict[str, List[tuple]]:
    """-> {key: [(num_updates, value)]} from the per-interval training records (train_inner) of a log."""
    series: Dict[str, List[tuple]] = {k: [] for k in KEYS}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            brace = line.find("{")
            if "num_updates=" in line:  # simple format: "epoch 001: 5 / 8 loss=..., num_updates=5, ..."
                vals = dict(_KV.findall(line))
            elif brace >= 0 and '"num_updates"' in line:  # json format (train_inner records only)
                try:
                    vals = json.loads(line[brace:])
                except json.JSONDecodeError:
                    continue
            else:
                continue
            if "num_updates" not in vals:
                continue
            step = int(float(vals["num_updates"]))
            for k in KEYS:
                if k in vals:
                    series[k].append((step, float(vals[k])))
    return series


def plot_logs(paths: List[str], out: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(KEYS), 1, figsize=(7, 2.2 * len(KEYS)), sharex=True)
    found = False
    for path in paths:
        series = parse_log(path)
        for ax, key in zip(axes, KEYS):
            if series[key]:
                found = True
                xs, ys = zip(*series[key])
                ax.plot(xs, ys, label=os.path.basename(path))
            ax.set_ylabel(key)
    if not found:
        raise ValueError(f"no train_inner lines with num_updates found in {paths}; log with "
                         "common.log_format=simple or json and common.log_interval > 0")
    axes[-1].set_xlabel("updates")
    axes[0].legend(fontsize="small")
    axes[0].set_title("data2vec training (collapse: target_var / pred_var falling towards 0)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="d2v-plot", description=__doc__)
    p.add_argument("logs", nargs="+", help="fairseq log files (common.log_file) or directories")
    p.add_argument("--out", default="curves.png", help="output image (png)")
    args = p.parse_args(argv)
    paths = []
    for item in args.logs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(item, f) for f in os.listdir(item) if f.endswith(".log"))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            print(f"d2v-plot: {item} does not exist", file=sys.stderr)
            return 2
    try:
        print(plot_logs(paths, args.out))
    except ValueError as e:
        print(f"d2v-plot: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
