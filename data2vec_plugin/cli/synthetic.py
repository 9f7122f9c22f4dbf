"""Small generated datasets (no downloads) for the demo and the tests."""
import os
from typing import List

import numpy as np
import soundfile as sf


def make_audio_dataset(dest: str, n_train: int = 16, n_valid: int = 4, sample_rate: int = 16000,
                       seconds: float = 1.0, seed: int = 0, vary_length: bool = True) -> str:
    """Write chirps + harmonics + noise as 16-bit wavs under ``dest/wav`` and train/valid manifests in ``dest``."""
    rng = np.random.default_rng(seed)
    wav_dir = os.path.join(dest, "wav")
    os.makedirs(wav_dir, exist_ok=True)
    rows: List[str] = []
    for i in range(n_train + n_valid):
        n = int(sample_rate * seconds * (rng.uniform(0.8, 1.2) if vary_length else 1.0))
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(100, 400)
        sweep = rng.uniform(-100, 100)
        phase = 2 * np.pi * (f0 * t + 0.5 * sweep * t ** 2)
        y = sum(np.sin(k * phase) / k for k in range(1, 5))
        y = y * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)) + 0.05 * rng.standard_normal(n)
        y = (0.3 * y / np.abs(y).max()).astype(np.float32)
        name = f"utt{i:04d}.wav"
        sf.write(os.path.join(wav_dir, name), y, sample_rate, subtype="PCM_16")
        rows.append(f"{name}\t{n}")
    for split, part in (("train", rows[:n_train]), ("valid", rows[n_train:])):
        with open(os.path.join(dest, f"{split}.tsv"), "w") as f:
            f.write(os.path.abspath(wav_dir) + "\n" + "\n".join(part) + "\n")
    return dest
