from . import regression  # noqa: F401
