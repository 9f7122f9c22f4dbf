from . import data2vec_audio  # noqa: F401
