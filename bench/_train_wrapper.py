"""Run ``fairseq-hydra-train`` in this process and record precise per-update timestamps, peak memory and the
EMA step time. Used by ``bench/bench_vs_reference.py``; one process per training run, never importing the plugin
and the reference together (which one is loaded is decided only by ``common.user_dir`` in the overrides).

Usage: python bench/_train_wrapper.py RESULT.json [EMA_REPS] -- <fairseq-hydra-train arguments>

RESULT.json gets:
  updates: [{"t": perf_counter seconds, "cpu": process CPU seconds (all threads), "num_updates": n, "loss": ..., "bsz": ...}, ...]  (train_inner logs)
  peak_rss_mb: ru_maxrss of this process (whole process: imports, data, model, optimizer, teacher)
  cuda_peak_mb: torch.cuda.max_memory_allocated() (GPU runs)
  ema_step_ms: median wall time of model.set_num_updates(n + 1) in train mode after training, i.e. one
               EMA teacher step exactly as the trainer triggers it (decay schedule + the step itself);
               synchronised on CUDA.
  ema_dtypes: dtypes found in the model's state_dict()['_ema'] (or encoder._ema) after training
"""
import json
import os
import resource
import statistics
import sys
import time

RESULT = sys.argv[1]
rest = sys.argv[2:]
EMA_REPS = 30
if rest and rest[0] != "--":
    EMA_REPS = int(rest[0])
    rest = rest[1:]
if rest and rest[0] == "--":
    rest = rest[1:]

_records = []
_trainer = []


def _patch():
    from fairseq import trainer as trainer_mod
    from fairseq.logging import progress_bar as pb

    def wrap_log(cls):
        orig = cls.log

        def log(self, stats, tag=None, step=None):
            if tag == "train_inner":
                rec = {"t": time.perf_counter(), "cpu": time.process_time(), "step": step}
                for k in ("num_updates", "loss", "bsz", "ups", "wpb", "lr", "gnorm"):
                    if k in stats:
                        try:
                            rec[k] = float(stats[k])
                        except (TypeError, ValueError):
                            pass
                _records.append(rec)
            return orig(self, stats, tag=tag, step=step)

        cls.log = log

    for name in ("JsonProgressBar", "SimpleProgressBar", "NoopProgressBar", "TqdmProgressBar"):
        if hasattr(pb, name):
            wrap_log(getattr(pb, name))

    orig_init = trainer_mod.Trainer.__init__

    def __init__(self, *a, **k):
        orig_init(self, *a, **k)
        _trainer.append(self)

    trainer_mod.Trainer.__init__ = __init__


def _unwrap(model):
    while hasattr(model, "module") and not hasattr(type(model), "set_num_updates"):
        model = model.module
    return model


def _ema_dtypes(model):
    try:
        state = model.state_dict()
    except Exception as e:  # pragma: no cover - diagnostic only
        return {"error": repr(e)}
    found = {}
    for key, val in state.items():
        if key.endswith("_ema") and isinstance(val, dict):
            found[key] = sorted({str(v.dtype) for v in val.values() if hasattr(v, "dtype")})
    return found


def _ema_bench(model, reps):
    import torch

    model = _unwrap(model)
    model.train()
    cuda = torch.cuda.is_available() and any(p.is_cuda for p in model.parameters())
    base = int(getattr(model, "num_updates", 0) or 0) + 10
    times = []
    prof = None
    if os.environ.get("BENCH_PROFILE_EMA"):  # cProfile the timed EMA steps into this file
        import cProfile

        prof = cProfile.Profile()
    for i in range(reps + 3):
        if prof is not None and i == 3:
            prof.enable()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.set_num_updates(base + i)
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["BENCH_PROFILE_EMA"])
    return 1000.0 * statistics.median(times), 1000.0 * min(times)


def main():
    _patch()
    from fairseq_cli.hydra_train import cli_main

    sys.argv = ["fairseq-hydra-train"] + rest
    out = {"argv": rest, "error": None}
    try:
        cli_main()
    except SystemExit as e:
        if e.code not in (0, None):
            out["error"] = f"SystemExit({e.code})"
    except BaseException as e:  # noqa: BLE001 - record and re-raise below
        out["error"] = repr(e)
    out["updates"] = _records
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # pragma: no cover
        pass
    if _trainer and out["error"] is None:
        model = _unwrap(_trainer[-1].model)
        out["ema_dtypes"] = _ema_dtypes(model)
        try:
            out["ema_step_ms"], out["ema_step_min_ms"] = _ema_bench(model, EMA_REPS)
        except Exception as e:  # noqa: BLE001
            out["ema_error"] = repr(e)
        out["num_params"] = sum(p.numel() for p in model.parameters())
    with open(RESULT, "w") as f:
        json.dump(out, f)
    if out["error"] is not None:
        print(f"[bench wrapper] training failed: {out['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
