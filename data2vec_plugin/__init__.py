"""data2vec for fairseq: ``--user-dir data2vec_plugin`` or ``import data2vec_plugin`` registers everything."""
__version__ = "0.1.0"

from . import criterions, models, tasks  # noqa: F401,E402
from .atomic_checkpoints import install as _install_atomic_copies  # noqa: E402
from .safe_load import register_safe_globals  # noqa: E402
from .checkpoints.load import load_pretrained  # noqa: E402,F401

register_safe_globals()
_install_atomic_copies()
