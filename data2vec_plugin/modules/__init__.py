"""Plain PyTorch building blocks (no fairseq registries)."""
from .ema import EMATeacher, annealed_decay
from .losses import feature_std, masked_regression_loss, regression_loss
from .targets import build_targets

__all__ = ["EMATeacher", "annealed_decay", "build_targets", "feature_std", "masked_regression_loss",
           "regression_loss"]
