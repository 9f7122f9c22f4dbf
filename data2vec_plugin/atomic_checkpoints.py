"""Crash-safe checkpoint copies.

fairseq writes the first checkpoint of a save atomically (``.tmp`` + rename) but then *copies* it to the other
names (``checkpoint_last.pt``, ``checkpoint_best.pt`` ...) with a plain ``shutil.copyfile``: a run killed during
that copy leaves a truncated ``checkpoint_last.pt``, which the next resume tries to load. The plugin replaces the
local-file copy with copy-to-temporary + fsync + ``os.replace``, so every ``checkpoint*.pt`` is either the old
complete file or the new complete file. Remote (ioPath) paths are left to ioPath.
"""
import os
import shutil

_installed = False


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    if os.path.exists(dst_path) and not overwrite:
        return False
    tmp = f"{dst_path}.tmp{os.getpid()}"
    try:
        with open(src_path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, dst_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True


def install() -> None:
    """Route fairseq's local checkpoint copies through ``atomic_copy`` (idempotent)."""
    global _installed
    from fairseq import file_io
    if _installed or file_io.IOPathManager is not None:
        return
    file_io.PathManager.copy = staticmethod(atomic_copy)
    _installed = True
