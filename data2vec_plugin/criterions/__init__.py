from . import regression  # noqa: F401
from . import v2_regression  # noqa: F401
