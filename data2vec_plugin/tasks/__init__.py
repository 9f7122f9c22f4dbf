"""Tasks are imported explicitly (fairseq's auto-import only applies to its own user-dir layout)."""
from . import audio_pretraining  # noqa: F401
from . import text_pretraining  # noqa: F401
from . import image_pretraining, image_classification  # noqa: F401
from . import v2_audio_pretraining, v2_image_pretraining, v2_mae_image_pretraining, v2_text_pretraining  # noqa: F401
