"""Import TensorFlow/Keras quietly and deterministically, with a clear error if missing."""

from __future__ import annotations

import os

from ..errors import ToolMissing


def import_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import keras  # noqa: PLC0415
    except ImportError:
        raise ToolMissing("training needs TensorFlow and Keras: pip install -r requirements.txt "
                          "(or run `make setup`)") from None
    return keras
