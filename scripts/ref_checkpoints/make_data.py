"""Generated data for scripts/make_reference_checkpoints.sh: usage  make_data.py DATA_DIR"""
import os, sys
import numpy as np
import soundfile as sf
from PIL import Image

data = sys.argv[1]
rng = np.random.default_rng(0)
# audio: 8 x 1 s of noise at 16 kHz + fairseq manifests (root line, then "relpath\tnum_samples")
adir = os.path.join(data, "audio")
rows = []
for i in range(8):
    wav = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    fn = f"noise_{i}.wav"
    sf.write(os.path.join(adir, fn), wav, 16000)
    rows.append(f"{fn}\t16000")
for split, rs in (("train", rows), ("valid", rows[:2])):
    with open(os.path.join(adir, f"{split}.tsv"), "w") as f:
        f.write(adir + "\n" + "\n".join(rs) + "\n")
# text: generated sentences over a 40-word vocabulary, documents separated by blank lines
words = [f"w{i}" for i in range(40)]
tdir = os.path.join(data, "text_raw")
for split, n_docs in (("train", 24), ("valid", 4)):
    lines = []
    for d in range(n_docs):
        for s in range(3):
            n = int(rng.integers(4, 10))
            lines.append(" ".join(words[j] for j in rng.integers(0, 40, n)))
        lines.append("")
    with open(os.path.join(tdir, f"{split}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
# images: 8 + 2 random 32x32 RGB PNGs (ImageFolder layout <split>/<class>/x.png for the v2 task)
for split, n in (("train", 8), ("valid", 2)):
    cdir = os.path.join(data, "images", split, "c0")
    os.makedirs(cdir, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(cdir, f"img_{i}.png"))
print("data ok")
