from . import data2vec_audio  # noqa: F401
from . import data2vec_text  # noqa: F401
from . import data2vec_vision, data2vec_image_classification  # noqa: F401
from . import data2vec_multi  # noqa: F401
from . import data2vec_multi_image_classification, data2vec_multi_text_classification  # noqa: F401
