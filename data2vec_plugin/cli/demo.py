"""`make demo`: pretrain tiny data2vec models on embedded data for every modality, load them, print numbers."""
import argparse
import importlib
import logging
import os
import shutil
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="data2vec demo")
    p.add_argument("--out", default="demo_out", help="output directory (data, checkpoints, logs, plots)")
    p.add_argument("--only", default="audio,text,vision,v2", help="comma-separated parts to run")
    args = p.parse_args(argv)
    args.out = os.path.abspath(args.out)  # fairseq-hydra-train changes its working directory
    os.makedirs(args.out, exist_ok=True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    results = {}
    for name in args.only.split(","):
        try:
            mod = importlib.import_module(f"data2vec_plugin.cli.demo_{name}")
        except ModuleNotFoundError:
            print(f"[{name}] not available in this version, skipped")
            continue
        t0 = time.time()
        sub = os.path.join(args.out, name)
        shutil.rmtree(sub, ignore_errors=True)  # a fresh run each time (logs are appended otherwise)
        os.makedirs(sub)
        results[name] = mod.run(sub)
        print(f"[{name}] done in {time.time() - t0:.0f}s\n")
    plot = importlib.util.find_spec("data2vec_plugin.cli.plot")
    if plot is not None and "audio" in results:
        from data2vec_plugin.cli.plot import plot_logs
        png = os.path.join(args.out, "audio_curves.png")
        plot_logs([results["audio"]["json_log"]], png)
        print(f"training curves: {png}")
    print("demo finished:", ", ".join(results) or "nothing ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
