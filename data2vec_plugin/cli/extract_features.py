"""``d2v-extract-features CKPT INPUTS... [--layer N|all] --out DIR``: one ``.npy`` of features per input.

INPUTS: audio files (audio checkpoints), image files (vision), or text files whose lines are the inputs (text;
``<stem>.<line>.npy`` per line). Output shapes (float32): default / ``--layer N``: (T, D); ``--layer all``: (L, T, D),
T = frames (audio, 50/s at 16 kHz), tokens incl. <s> and </s> (text), patches (images, cls removed). See
``data2vec_plugin.checkpoints.load`` for preprocessing. Legacy checkpoints must be converted with d2v-convert first.
"""
import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="d2v-extract-features", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--layer", default=None, help="block N (1..L) or 'all'; default: final features")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None, help="folder with dict.txt/spm.model (text); default: checkpoint folder")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    import numpy as np

    from ..checkpoints.formats import CheckpointError
    from ..checkpoints.load import load_pretrained
    layer = a.layer if a.layer in (None, "all") else int(a.layer)
    try:
        enc, _ = load_pretrained(a.checkpoint, data=a.data, device=a.device)
    except CheckpointError as e:
        print(f"d2v-extract-features: {e}", file=sys.stderr)
        return 2
    missing = [x for x in a.inputs if not Path(x).is_file()]
    if missing:
        print(f"d2v-extract-features: input files not found: {missing}", file=sys.stderr)
        return 2
    names, items = [], []
    for x in a.inputs:
        if enc.modality == "TEXT":
            lines = [ln for ln in Path(x).read_text().splitlines() if ln.strip()]
            names += [f"{Path(x).stem}.{i}" for i in range(len(lines))]
            items += lines
        else:
            names.append(Path(x).stem)
            items.append(x)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, f in zip(names, enc.extract_features(items, layer=layer, batch_size=a.batch_size)):
        np.save(out / f"{name}.npy", f)
    print(f"wrote {len(names)} feature files to {out} ({enc.name}, {enc.modality}, layer={a.layer or 'final'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
