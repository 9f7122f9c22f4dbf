"""Procedural image folder for demos and tests (no downloads).

Four classes of textures with class-tinted random colours and random frequencies, phases, sizes and
noise: horizontal stripes (red), vertical stripes (green), checkerboards (blue), concentric rings (yellow).
Written as PNG and JPEG into ``OUT/train/<class>/`` and ``OUT/val/<class>/``.

    python -m data2vec_plugin.cli.synthetic_images OUT [--train-per-class 24] [--val-per-class 8] [--size 40]
"""
import argparse
import os
from typing import Dict

import numpy as np

CLASSES = ("hstripes", "vstripes", "checker", "rings")
TINTS = {"hstripes": (0.9, 0.2, 0.2), "vstripes": (0.2, 0.8, 0.2), "checker": (0.2, 0.3, 0.9), "rings": (0.9, 0.8, 0.1)}


def _pattern(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float pattern in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(4.0, 10.0)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "hstripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    if kind == "vstripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
    if kind == "checker":
        cell = int(rng.integers(3, 8))
        off = rng.integers(0, cell, size=2)
        return (((yy + off[0]) // cell + (xx + off[1]) // cell) % 2).astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return 0.5 + 0.5 * np.sin(2 * np.pi * r / period + phase)


def make_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) uint8 image of class ``kind``, side lengths size +- 25%."""
    h, w = (int(size * rng.uniform(0.75, 1.25)) for _ in range(2))
    p = _pattern(kind, h, w, rng)[..., None]
    fg = 0.6 * np.array(TINTS[kind]) + rng.uniform(0, 0.4, 3)  # class-tinted foreground: learnable in a demo
    bg = rng.uniform(0, 1) * np.ones(3) * 0.5
    img = p * fg + (1 - p) * bg + rng.normal(0, 0.05, (h, w, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_image_folder(out: str, train_per_class: int = 24, val_per_class: int = 8, size: int = 40,
                      num_classes: int = len(CLASSES), seed: int = 0) -> Dict[str, int]:
    """Write the folder; returns {"train": n, "val": n, "classes": k}."""
    from PIL import Image

    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in [1, {len(CLASSES)}]")
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0, "classes": num_classes}
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for kind in CLASSES[:num_classes]:
            d = os.path.join(out, split, kind)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                arr = make_image(kind, size, rng)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(arr).save(os.path.join(d, f"{kind}_{i:04d}.{ext}"))
                counts[split] += 1
    return counts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output directory (train/ and val/ are created inside)")
    p.add_argument("--train-per-class", type=int, default=24, help="training images per class")
    p.add_argument("--val-per-class", type=int, default=8, help="validation images per class")
    p.add_argument("--size", type=int, default=40, help="nominal image side in pixels (varies by +-25%%)")
    p.add_argument("--num-classes", type=int, default=len(CLASSES), help=f"1..{len(CLASSES)} classes")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    a = p.parse_args(argv)
    print(make_image_folder(a.out, a.train_per_class, a.val_per_class, a.size, a.num_classes, a.seed))


if __name__ == "__main__":
    main()
