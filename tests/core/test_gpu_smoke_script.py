"""bench/gpu_smoke.py (phase 1 of bench/gpu_check.sh) works end to end; on CPU with bf16 (no GPU in CI)."""
import subprocess
import sys

from ..conftest import REPO, cli_env


def test_gpu_smoke_script_runs_a_half_precision_check_on_cpu(tmp_path):
    out = tmp_path / "smoke.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_smoke.py"), "--device", "cpu", "--precisions",
                           "bf16", "--kinds", "v2-text", "--updates", "20", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=cli_env(), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = out.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| v2-text"))
    assert "| OK |" in row and "torch.float32@cpu" in row and "torch.bfloat16" in row
