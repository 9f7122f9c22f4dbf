"""d2v-prepare-audio SRC_DIR DEST [--valid-percent P] [--ext wav|flac]: write wav2vec 2.0 manifests."""
import argparse
import os
import random
import sys

import soundfile as sf


def build_parser():
    p = argparse.ArgumentParser(prog="d2v-prepare-audio", description=__doc__)
    p.add_argument("src", help="directory searched recursively for audio files")
    p.add_argument("dest", help="output directory for train.tsv / valid.tsv")
    p.add_argument("--valid-percent", type=float, default=1.0, help="percentage of files for valid.tsv (0-100)")
    p.add_argument("--ext", default="wav", choices=["wav", "flac"], help="audio file extension")
    p.add_argument("--seed", type=int, default=42, help="seed of the train/valid split")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.src):
        print(f"d2v-prepare-audio: {args.src} is not a directory", file=sys.stderr)
        return 2
    if not 0 <= args.valid_percent <= 100:
        print("d2v-prepare-audio: --valid-percent must be between 0 and 100", file=sys.stderr)
        return 2
    root = os.path.realpath(args.src)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                   if f.lower().endswith("." + args.ext))
    rows, bad = [], []
    for path in files:
        try:
            rows.append(f"{os.path.relpath(path, root)}\t{sf.info(path).frames}")
        except Exception as e:  # noqa: BLE001
            bad.append(f"{path}: {e}")
    if not rows:
        print(f"d2v-prepare-audio: no readable .{args.ext} files under {root}", file=sys.stderr)
        return 1
    random.Random(args.seed).shuffle(rows)
    n_valid = int(round(len(rows) * args.valid_percent / 100.0))
    os.makedirs(args.dest, exist_ok=True)
    for split, part in (("valid", rows[:n_valid]), ("train", rows[n_valid:])):
        if split == "valid" and not part:
            continue
        with open(os.path.join(args.dest, f"{split}.tsv"), "w") as f:
            f.write(root + "\n" + "".join(r + "\n" for r in part))
    print(f"wrote {len(rows) - n_valid} train and {n_valid} valid entries to {args.dest}")
    for b in bad:
        print(f"skipped unreadable file {b}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
