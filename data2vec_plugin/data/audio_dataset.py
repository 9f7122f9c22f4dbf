"""Raw-audio dataset for wav2vec 2.0 manifests with masks computed in the collater (dataloader workers).

Manifest (``train.tsv``): first line = root directory, then ``relative/path.wav<TAB>num_samples`` per line.
Crops and masks are functions of (seed, epoch, sample id), so runs, resumes and worker counts reproduce exactly.
"""
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from fairseq.data import FairseqDataset

from ..masking import sample_rng, span_mask
from ..modules.audio import ConvSpec, frames_per_sample, receptive_field

logger = logging.getLogger(__name__)


class AudioInputError(ValueError):
    """A manifest entry that cannot be used; the message names the manifest line and the file."""


@dataclass
class MaskSpec:
    """What the model asks the data pipeline to mask (see ``Data2VecAudioModel.data_mask_spec``)."""
    conv_spec: ConvSpec
    mask_prob: float
    mask_length: int
    selection: str = "static"
    other: float = 0.0
    no_overlap: bool = False
    min_space: int = 1
    require_same_masks: bool = True
    mask_dropout: float = 0.0
    min_masks: int = 1


def read_manifest(path: str) -> Tuple[str, List[Tuple[int, str, int]]]:
    """-> (root, [(line number, relative path, num_samples)]). Raises with file:line on malformed lines."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest {path} not found; create it with `d2v-prepare-audio SRC_DIR DEST`")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        raise AudioInputError(f"{path}: empty manifest (first line must be the audio root directory)")
    root, entries = lines[0].strip(), []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip().isdigit():
            raise AudioInputError(f"{path}:{no}: expected 'relative_path<TAB>num_samples', got {line!r}")
        entries.append((no, parts[0], int(parts[1])))
    return root, entries


class RawAudioMaskDataset(FairseqDataset):
    def __init__(self, manifest: str, sample_rate: int, mask_spec: Optional[MaskSpec], seed: int,
                 max_sample_size: Optional[int] = None, min_sample_size: int = 0, pad: bool = False,
                 normalize: bool = False, skip_invalid: bool = False):
        self.manifest = manifest
        self.root, entries = read_manifest(manifest)
        self.sample_rate, self.mask_spec, self.seed = sample_rate, mask_spec, seed
        self.max_sample_size = max_sample_size or int(1e12)
        self.pad, self.normalize, self.skip_invalid = pad, normalize, skip_invalid
        rf = receptive_field(mask_spec.conv_spec) if mask_spec else 1
        self.skipped: Dict[str, int] = {}
        kept = []
        for no, rel, n in entries:
            reason = None
            if n < rf:
                reason = "shorter than the CNN receptive field"
                if not skip_invalid:
                    raise AudioInputError(f"{manifest}:{no} ({os.path.join(self.root, rel)}): {n} samples, shorter "
                                          f"than the CNN receptive field ({rf}); remove the line or pass "
                                          "task.skip_invalid_audio=true")
            elif n < (min_sample_size or 0):
                reason = "shorter than task.min_sample_size"
            elif skip_invalid:
                reason = self._probe(rel)
            if reason is None:
                kept.append((no, rel, n))
            else:
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.skipped:
            logger.warning(f"{manifest}: skipped {sum(self.skipped.values())} entries: {self.skipped}")
        if not kept:
            raise AudioInputError(f"{manifest}: no usable audio entries (skipped: {self.skipped})")
        self.lines = [e[0] for e in kept]
        self.paths = [e[1] for e in kept]
        self.manifest_sizes = [e[2] for e in kept]
        self.sizes = np.array([min(e[2], self.max_sample_size) for e in kept], dtype=np.int64)
        self.epoch = 1

    def _probe(self, rel: str) -> Optional[str]:
        path = os.path.join(self.root, rel)
        if not os.path.isfile(path):
            return "missing file"
        try:
            info = sf.info(path)
        except Exception:  # noqa: BLE001 - any decoder failure means unreadable
            return "unreadable audio"
        if info.samplerate != self.sample_rate:
            return "wrong sample rate"
        if info.channels != 1:
            return "not mono"
        return "empty audio" if info.frames == 0 else None

    def _where(self, index: int) -> str:
        return f"{self.manifest}:{self.lines[index]} ({os.path.join(self.root, self.paths[index])})"

    def load(self, index: int) -> np.ndarray:
        path = os.path.join(self.root, self.paths[index])
        if not os.path.isfile(path):
            raise AudioInputError(f"{self._where(index)}: file not found; fix the manifest or pass "
                                  "task.skip_invalid_audio=true to skip such entries")
        try:
            wav, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            raise AudioInputError(f"{self._where(index)}: unreadable or truncated audio ({e}); re-encode it or "
                                  "pass task.skip_invalid_audio=true") from None
        if sr != self.sample_rate:
            raise AudioInputError(f"{self._where(index)}: sample rate {sr} Hz, task.sample_rate is "
                                  f"{self.sample_rate}; resample the file (e.g. sox in.wav -r {self.sample_rate} out.wav)")
        if wav.shape[1] != 1:
            raise AudioInputError(f"{self._where(index)}: {wav.shape[1]} channels; data2vec expects mono audio "
                                  "(e.g. sox in.wav -c 1 out.wav)")
        wav = wav[:, 0]
        if wav.size != self.manifest_sizes[index]:
            raise AudioInputError(f"{self._where(index)}: the file has {wav.size} samples but the manifest says "
                                  f"{self.manifest_sizes[index]} (truncated file or stale manifest); re-run "
                                  "d2v-prepare-audio or pass task.skip_invalid_audio=true")
        if not np.isfinite(wav).all():
            raise AudioInputError(f"{self._where(index)}: contains NaN/inf samples")
        return wav

    def __getitem__(self, index: int):
        try:
            wav = torch.from_numpy(self.load(index))
        except AudioInputError:
            if not self.skip_invalid:
                raise
            self.skipped["unreadable at load time"] = self.skipped.get("unreadable at load time", 0) + 1
            return {"id": index, "source": None}
        if self.normalize:
            wav = F.layer_norm(wav, wav.shape)
        return {"id": index, "source": wav}

    def __len__(self):
        return len(self.sizes)

    def num_tokens(self, index):
        return self.size(index)

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        order = np.lexsort([np.random.permutation(len(self)), -self.sizes])
        return order

    def set_epoch(self, epoch):
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False

    def _crop(self, wav: torch.Tensor, size: int, sample_id: int) -> torch.Tensor:
        extra = wav.numel() - size
        if extra <= 0:
            return wav
        start = int(sample_rng(self.seed, self.epoch, sample_id, 1).integers(0, extra + 1))
        return wav[start:start + size]

    def collater(self, samples):
        samples = [s for s in samples if s.get("source") is not None]
        if not samples:
            return {}
        lengths = [s["source"].numel() for s in samples]
        size = min(max(lengths) if self.pad else min(lengths), self.max_sample_size)
        source = torch.zeros(len(samples), size)
        padding = torch.zeros(len(samples), size, dtype=torch.bool) if self.pad else None
        for i, s in enumerate(samples):
            wav = self._crop(s["source"], size, s["id"])
            source[i, :wav.numel()] = wav
            if padding is not None:
                padding[i, wav.numel():] = True
        ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
        net_input = {"source": source}
        if padding is not None:
            net_input["padding_mask"] = padding
        if self.mask_spec is not None:
            net_input["mask_indices"] = self._mask(ids.tolist(), [min(n, size) for n in lengths], size)
        return {"id": ids, "net_input": net_input}

    def _mask(self, ids: List[int], lengths: List[int], size: int) -> torch.Tensor:
        m = self.mask_spec
        total = frames_per_sample([size], m.conv_spec)[0]
        valid = frames_per_sample(lengths, m.conv_spec) if self.pad else [total] * len(ids)
        rngs = [sample_rng(self.seed, self.epoch, i, 2) for i in ids]
        mask = span_mask(valid, total, m.mask_prob, m.mask_length, rngs, m.min_masks, m.selection, m.other,
                         m.no_overlap, m.min_space, m.require_same_masks, m.mask_dropout)
        return torch.from_numpy(mask)
