"""Shared test helpers: deterministic seeding, subprocess runners for fairseq's CLIs, fixture paths."""
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "data2vec_plugin"
FIXTURES = REPO / "tests" / "fixtures"
BIN = Path(sys.executable).parent

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def cli_env():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models: more threads only add contention
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_cli(args, cwd, timeout=600, check=True):
    """Run a console script of this venv (``fairseq-train`` ...) and return the CompletedProcess."""
    exe = str(BIN / args[0]) if (BIN / args[0]).exists() else args[0]
    proc = subprocess.run([exe] + [str(a) for a in args[1:]], cwd=str(cwd), env=cli_env(), timeout=timeout,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def hydra_train(config_dir, config_name, overrides, cwd, timeout=600, check=True):
    return run_cli(["fairseq-hydra-train", "--config-dir", config_dir, "--config-name", config_name,
                    f"common.user_dir={PLUGIN_DIR}", f"hydra.run.dir={cwd}/hydra"] + list(overrides),
                   cwd, timeout, check)


def train_log_values(text, key):
    """All values logged for ``key`` in fairseq's simple-format train_inner/train lines."""
    import re
    return [float(m) for m in re.findall(rf"(?<![\w.]){key}[= ]([-+0-9.eE]+)", text)]
