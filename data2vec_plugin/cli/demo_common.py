"""Helpers for the demo scripts: run a fairseq CLI with live output, parse its logs."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

PLUGIN_DIR = Path(__file__).resolve().parents[1]
REPO = PLUGIN_DIR.parent


def run_logged(cmd: List[str], log_path: str) -> str:
    """Run ``cmd`` streaming fairseq's progress lines to the terminal; return the full log text."""
    bin_dir = Path(sys.executable).parent
    exe = str(bin_dir / cmd[0]) if (bin_dir / cmd[0]).exists() else cmd[0]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models: extra threads only add contention
    lines = []
    with subprocess.Popen([exe] + [str(c) for c in cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env) as proc, open(log_path, "w") as log:
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if "train_inner" in line or "| valid on" in line:
                vals = dict(re.findall(r"(num_updates|loss|target_var|pred_var|accuracy)[= ]([-+0-9.eE]+)", line))
                tag = "valid" if "| valid on" in line else "train"
                print(f"   {tag} " + "  ".join(f"{k}={v}" for k, v in vals.items()), flush=True)
            elif re.search(r"done training|Error|error:", line):
                print("   " + line.rstrip()[-160:], flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}); see {log_path}")
    return "".join(lines)


def logged_values(text: str, key: str) -> List[float]:
    return [float(v) for v in re.findall(rf"(?:\| |, ){key}[= ]([-+0-9.eE]+)", text)]


def first_last(text: str, keys) -> Dict[str, tuple]:
    out = {}
    for k in keys:
        vals = logged_values(text, k)
        if vals:
            out[k] = (vals[0], vals[-1])
    return out
