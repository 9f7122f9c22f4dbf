"""``load_pretrained(path) -> (encoder, task_cfg)``: any data2vec checkpoint as a feature extractor.

``encoder.extract_features(inputs, layer=None)`` takes a list of inputs of the checkpoint's modality and returns a
list of float32 numpy arrays, one per input, without padding:

* audio (``data2vec_audio``, ``data2vec_multi`` AUDIO): paths of mono wav/flac files at the task's sample rate (or
  1-D float tensors); normalised like the task (``normalize``); output (frames, D), 50 frames/s at 16 kHz;
* text (``data2vec_text``, ``data2vec_multi`` TEXT): lines of raw text; encoded with ``spm.model`` when the data dir
  has one (else whitespace tokens), mapped with the checkpoint's ``dict.txt``, ``<s>`` prepended and ``</s>``
  appended as in ``masked_lm``; output (tokens + 2, D);
* images (``data2vec_vision``, ``data2vec_multi`` IMAGE): image paths (or (3, H, W) tensors already normalised);
  resized/centre-cropped to ``task.input_size`` and ImageNet-normalised; output (patches, D), cls/extra tokens
  removed.

``layer=None``: the model's final features (after its final norm where it has one); ``layer=N`` (1..L): output of
transformer block N; ``layer="all"``: (L, T, D), every block. Inputs are batched (``batch_size``) with padding
(text: ``<pad>``; v1 audio: per-input CNN/positional conv, padded transformer; v2 audio: equal-length batches);
batched outputs equal unbatched ones.
The data dir (``dict.txt``/``spm.model`` for text) is ``data=``, else the checkpoint's folder, else ``cfg.task.data``.
"""
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .formats import CheckpointError

Layer = Union[None, int, str]
MODALITY = {"data2vec_audio": "AUDIO", "data2vec_text": "TEXT", "data2vec_vision": "IMAGE"}


def _data_dir(path: Path, cfg_task_data: Optional[str], data: Optional[str], text: bool) -> str:
    if data is not None:
        return str(data)
    for cand in (path.parent, Path(cfg_task_data) if cfg_task_data else None):
        if cand is not None and (not text or (cand / "dict.txt").exists()):
            return str(cand)
    if text:
        raise CheckpointError(f"{path}: a text checkpoint needs its dict.txt (and spm.model if it used "
                              "sentencepiece): put them next to the checkpoint or pass data=DIR / --data DIR")
    return tempfile.gettempdir()


def load_pretrained(path, data: Optional[str] = None, device: str = "cpu"):
    """Load ``path`` (any format the plugin accepts) through fairseq; return ``(FeatureEncoder, task_cfg)``."""
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    from .formats import safe_torch_load
    raw_cfg = safe_torch_load(str(path)).get("cfg") or {}
    name = (raw_cfg.get("model") or {}).get("_name")
    modality = MODALITY.get(name) or str((raw_cfg.get("model") or {}).get("supported_modality", "")).upper()
    if modality not in ("AUDIO", "TEXT", "IMAGE"):
        raise CheckpointError(f"{path}: model {name!r} is not a data2vec pretraining model this loader supports")
    ddir = _data_dir(path, (raw_cfg.get("task") or {}).get("data"), data, modality == "TEXT")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": ddir})
    return FeatureEncoder(models[0], task, cfg.task, modality, name, ddir).to(device).eval(), cfg.task


class FeatureEncoder(nn.Module):
    def __init__(self, model, task, task_cfg, modality: str, name: str, data_dir: str):
        super().__init__()
        self.model, self.task, self.task_cfg = model, task, task_cfg
        self.modality, self.name, self.data_dir = modality, name, data_dir
        self._spm = None

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------- preprocessing
    def load_audio(self, item) -> torch.Tensor:
        if isinstance(item, (str, Path)):
            import soundfile as sf
            wav, sr = sf.read(str(item), dtype="float32", always_2d=True)
            want = getattr(self.task_cfg, "sample_rate", 16000)
            if sr != want:
                raise CheckpointError(f"{item}: sample rate {sr} Hz, the model expects {want} Hz; resample it first")
            item = torch.from_numpy(wav.mean(1))
        wav = torch.as_tensor(item, dtype=torch.float32).flatten()
        return F.layer_norm(wav, wav.shape) if getattr(self.task_cfg, "normalize", False) else wav

    def encode_text(self, line: str) -> torch.Tensor:
        spm_path = Path(self.data_dir) / "spm.model"
        if spm_path.exists():
            if self._spm is None:
                import sentencepiece as spm
                self._spm = spm.SentencePieceProcessor(model_file=str(spm_path))
            line = " ".join(self._spm.encode(line.strip(), out_type=str))
        d = self.task.source_dictionary
        ids = d.encode_line(line, add_if_not_exist=False, append_eos=True).long()
        return torch.cat([torch.tensor([d.bos()]), ids])

    def load_image(self, item) -> torch.Tensor:
        if isinstance(item, (str, Path)):
            from PIL import Image
            from ..data.image_transforms import classification_transform
            size = int(getattr(self.task_cfg, "input_size", 224))
            with Image.open(item) as im:
                return classification_transform(size, train=False)(im.convert("RGB"))
        return torch.as_tensor(item, dtype=torch.float32)

    # ------------------------------------------------------------------------------------------------ forward
    def num_layers(self) -> int:
        m = self.model
        if self.name == "data2vec_audio":
            return len(m.encoder.layers)
        if self.name == "data2vec_text":
            return len(m.encoder.sentence_encoder.layers)
        if self.name == "data2vec_vision":
            return len(m.encoder.blocks)
        return len(m.blocks)

    def _layers(self, batch, pad_mask, layer: Layer):
        """Batch -> (B, T, D) final features or (L', B, T, D) block outputs; plus the (B, T) padding mask."""
        m, L = self.model, self.num_layers()
        want = None if layer is None else (list(range(1, L + 1)) if layer == "all" else [int(layer)])
        if want is not None and not all(1 <= n <= L for n in want):
            raise ValueError(f"layer must be 1..{L} or 'all', got {layer!r}")
        if self.name == "data2vec_audio":
            return self._audio_v1(batch, want)
        if self.name == "data2vec_text":
            pm = batch.eq(m.encoder.padding_idx)
            x, extra = m.encoder.extract_features(batch, return_all_hiddens=want is not None)
            states = extra["inner_states"]  # RoBERTa convention: (T, B, C)
            return (x if want is None else torch.stack([states[n].transpose(0, 1) for n in want])), pm
        if self.name == "data2vec_vision":
            tokens = m.embed(batch)
            if want is None:
                return m.encoder(tokens)[:, 1:], None
            outs = m.encoder(tokens, collect="end")
            return torch.stack([outs[n - 1][:, 1:] for n in want]), None
        pm = batch.eq(self.task.source_dictionary.pad()) if self.modality == "TEXT" else pad_mask
        out = m.extract_features(batch, mode=self.modality, padding_mask=pm, mask=False)
        if want is None:
            return out["x"], out["padding_mask"]
        e = out["layer_results"][0].size(1) - out["x"].size(1)
        return torch.stack([out["layer_results"][n - 1][:, e:] for n in want]), out["padding_mask"]

    def _audio_v1(self, items: List[torch.Tensor], want):
        """Length-dependent stages per input (the ``default`` extractor's GroupNorm normalises over time, a deep
        positional conv would see padded frames), then the transformer batched with a key padding mask."""
        from ..modules.transformer import attention_mask_from_padding
        m, enc = self.model, self.model.encoder
        feats = []
        for w in items:
            f = m.local_features(w[None], None)[0]
            feats.append(f + enc.pos_conv(f.transpose(1, 2)).transpose(1, 2))
        lengths = [f.size(1) for f in feats]
        x = torch.cat([F.pad(f, (0, 0, 0, max(lengths) - f.size(1))) for f in feats])
        pm = torch.arange(max(lengths), device=x.device)[None] >= torch.tensor(lengths, device=x.device)[:, None]
        if not enc.layer_norm_first:
            x = enc.layer_norm(x)
        attn_mask, outs = attention_mask_from_padding(pm), []
        for layer in enc.layers:
            x, _ = layer(x, attn_mask)
            outs.append(x)
        if want is None:
            return (enc.layer_norm(x) if enc.layer_norm_first else x), pm
        return torch.stack([outs[n - 1] for n in want]), pm

    def _batches(self, items: List[torch.Tensor], batch_size: int) -> List[List[int]]:
        """Index batches. data2vec 2.0 audio (deep positional conv over padded frames) batches equal lengths only."""
        order = list(range(len(items)))
        if self.name == "data2vec_multi" and self.modality == "AUDIO":
            order.sort(key=lambda i: len(items[i]))
            groups, cur = [], []
            for i in order:
                if cur and (len(cur) == batch_size or len(items[cur[0]]) != len(items[i])):
                    groups.append(cur)
                    cur = []
                cur.append(i)
            return groups + ([cur] if cur else [])
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

    def _collate(self, items: List[torch.Tensor]):
        lengths = [len(t) for t in items]
        if self.modality == "IMAGE":
            return torch.stack(items), None
        fill = self.task.source_dictionary.pad() if self.modality == "TEXT" else 0.0
        batch = torch.full((len(items), max(lengths)), fill, dtype=items[0].dtype, device=items[0].device)
        for i, t in enumerate(items):
            batch[i, :len(t)] = t
        pm = (torch.arange(max(lengths))[None] >= torch.tensor(lengths)[:, None]).to(batch.device)
        return batch, (pm if self.modality == "AUDIO" and pm.any() else None)

    @torch.no_grad()
    def extract_features(self, inputs: Sequence, layer: Layer = None, batch_size: int = 8) -> List[np.ndarray]:
        prep = {"AUDIO": self.load_audio, "TEXT": self.encode_text, "IMAGE": self.load_image}[self.modality]
        items = [prep(x) for x in inputs]
        results = [None] * len(items)
        for idx in self._batches(items, batch_size):
            group = [items[i].to(self.device) for i in idx]
            if self.name == "data2vec_audio":
                feats, out_pm = self._layers(group, None, layer)
            else:
                batch, pm = self._collate(group)
                feats, out_pm = self._layers(batch, pm, layer)
            for j, i in enumerate(idx):
                f = feats[..., j, :, :]
                if out_pm is not None:
                    f = f[..., : int((~out_pm[j]).sum()), :]
                results[i] = (f[0] if isinstance(layer, int) else f).float().cpu().numpy()
        return results
