"""Behaviour shared by the plugin's pretraining tasks."""
import sys

from fairseq.tasks import FairseqTask


def unwrap_model(model):
    """The plugin model inside DDP / fairseq wrappers."""
    while not hasattr(type(model), "ema_step") and hasattr(model, "module"):
        model = model.module
    return model


class TeacherStepTaskMixin:
    """Steps the model's EMA teacher exactly once per optimizer update (also with update_freq > 1) and hands
    the model's masking request to the data pipeline."""

    mask_spec = None

    def build_model(self, cfg, from_checkpoint=False):
        model = FairseqTask.build_model(self, cfg, from_checkpoint)
        spec = getattr(model, "data_mask_spec", None)
        self.mask_spec = spec() if spec is not None else None
        return model

    def require_mask_spec(self, split: str):
        if self.mask_spec is None:
            raise RuntimeError(f"{type(self).__name__}: build the model (task.build_model) before loading split "
                               f"'{split}': the masks computed in the data pipeline depend on the model's "
                               "masking settings")
        return self.mask_spec

    def optimizer_step(self, optimizer, model, update_num):
        optimizer.step()
        inner = unwrap_model(model)
        if hasattr(inner, "ema_step"):
            inner.ema_step(update_num + 1)


class NoDictionaryTaskMixin:
    """Tasks on raw audio / images: no dictionaries, no length limit from the task."""

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None

    def max_positions(self):
        return sys.maxsize  # an int: sizes are ints (a tuple makes fairseq filter out every sample)
