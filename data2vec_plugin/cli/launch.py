"""d2v-launch --nproc N [--port P] -- fairseq-hydra-train|fairseq-train ARGS...

Runs N fairseq ranks on this machine, one process each, on CPU (gloo) or one GPU per rank (nccl).
fairseq's own spawn path cannot start CPU ranks (it counts CUDA devices), so each rank gets
``distributed_init_method=tcp://127.0.0.1:P``, ``distributed_rank=R``, ``distributed_no_spawn=true``,
``distributed_world_size=N``, ``device_id=R`` and ``ddp_backend=legacy_ddp``. The exit code is the first
non-zero rank exit code; if one rank fails, the others are stopped.
For several machines use fairseq's own torchrun/SLURM support (see README).
"""
import argparse
import os
import socket
import subprocess
import sys
import time
from typing import List


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_args(cmd: List[str], rank: int, world: int, port: int, cpu: bool) -> List[str]:
    tool = os.path.basename(cmd[0])
    backend = "gloo" if cpu else "nccl"
    settings = {"distributed_init_method": f"tcp://127.0.0.1:{port}", "distributed_rank": rank,
                "distributed_world_size": world, "distributed_no_spawn": "true", "device_id": 0 if cpu else rank,
                "ddp_backend": "legacy_ddp", "distributed_backend": backend}
    if tool == "fairseq-hydra-train":
        return cmd + [f"distributed_training.{k}={v}" for k, v in settings.items()]
    if tool == "fairseq-train":
        out = list(cmd)
        for k, v in settings.items():
            flag = "--" + k.replace("_", "-")
            out += [flag] if v == "true" else [flag, str(v)]
        return out
    raise SystemExit(f"d2v-launch: expected fairseq-hydra-train or fairseq-train after --, got {cmd[0]}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="d2v-launch")
    p.add_argument("--nproc", type=int, required=True, help="number of ranks (processes) on this machine")
    p.add_argument("--port", type=int, default=0, help="rendezvous port (default: a free one)")
    p.add_argument("--gpu", action="store_true", help="one CUDA device per rank (nccl) instead of CPU (gloo)")
    args = p.parse_args(argv[:split])
    cmd = argv[split + 1:]
    if not cmd:
        print("d2v-launch: missing command after --", file=sys.stderr)
        return 2
    port = args.port or free_port()
    bin_dir = os.path.dirname(sys.executable)
    exe = os.path.join(bin_dir, cmd[0]) if os.path.exists(os.path.join(bin_dir, cmd[0])) else cmd[0]
    procs = [subprocess.Popen(rank_args([exe] + cmd[1:], r, args.nproc, port, not args.gpu))
             for r in range(args.nproc)]
    code = 0
    while procs:
        for proc in list(procs):
            rc = proc.poll()
            if rc is None:
                continue
            procs.remove(proc)
            if rc != 0 and code == 0:
                code = rc
                for other in procs:
                    other.terminate()
        time.sleep(0.2)
    return code


if __name__ == "__main__":
    sys.exit(main())
