"""Checkpoint loading that keeps torch's weights-only safety.

fairseq calls ``torch.load`` without ``weights_only``; torch >= 2.6 then loads with ``weights_only=True``.
Checkpoints written by this plugin hold plain containers only. Fine-tuning checkpoints written by fairseq's
``audio_finetuning`` / ``sentence_prediction`` tasks also store a ``fairseq.data.Dictionary`` (a plain data class:
lists of symbols and counts). It is allow-listed here, class by class; weights-only loading is never disabled.
fairseq's ``load_checkpoint_to_cpu`` is replaced by ``checkpoints.fairseq_hook`` (explicit weights-only load, clear
refusals naming ``d2v-convert``, unknown config keys dropped with a warning).
"""
import torch

SAFE_CLASSES = []


def register_safe_globals() -> None:
    from fairseq.data.dictionary import Dictionary

    for cls in (Dictionary,):
        if cls not in SAFE_CLASSES:
            SAFE_CLASSES.append(cls)
    torch.serialization.add_safe_globals(list(SAFE_CLASSES))
    from .checkpoints.fairseq_hook import install
    install()
