"""Loading a saved encoder and checking it can take a config's images.

Example:

>>> encoder = load_encoder("runs/digits/encoder.keras")
>>> check_image_size(encoder, 32)
"""

import os
import zipfile

import numpy as np


class EvaluationError(ValueError):
    """Input that an evaluation cannot run on; the message says why."""


def load_encoder(path):
    """The `keras.Model` in `path` (an `encoder.keras` saved on any backend).

    Raises `EvaluationError` with a one-line reason when the file is
    missing, is not a Keras archive, or holds no image -> features model.
    """
    import keras

    import mvmr_keras  # noqa: F401  (registers ImageEncoder for deserialisation)

    if not os.path.exists(path):
        raise EvaluationError(f"encoder file {path} does not exist")
    if not zipfile.is_zipfile(path):  # Keras would call a truncated file "not found"
        raise EvaluationError(
            f"{path} is truncated or not a .keras archive (not a complete zip file)"
        )
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, zipfile and OS errors alike
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvaluationError(
            f"{path} is not a loadable Keras model (.keras file from "
            f"model.save): {reason[:200]}"
        ) from None
    if not isinstance(model, keras.Model):
        raise EvaluationError(f"{path} holds a {type(model).__name__}, not a keras.Model")
    shape = _input_shape(model)
    if shape is None or len(shape) != 4:
        raise EvaluationError(
            f"{path} is not an image encoder: its input is {shape}, expected (B, H, W, 3)"
        )
    return model


def _input_shape(model):
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):
        return tuple(shape[0]) if len(shape) == 1 else None
    return tuple(shape)


def check_image_size(encoder, image_size):
    """Raises `EvaluationError` unless the encoder takes `image_size`
    square RGB images; returns the feature dimension."""
    _, height, width, channels = _input_shape(encoder)
    if channels not in (None, 3):
        raise EvaluationError(f"the encoder takes {channels}-channel images, not RGB")
    fixed = [d for d in (height, width) if d is not None]
    if any(d != image_size for d in fixed):
        raise EvaluationError(
            f"the encoder takes {height}x{width} images but the config's image_size is "
            f"{image_size}; set --config.image_size={height}"
        )
    try:
        out = encoder.predict_on_batch(np.zeros((1, image_size, image_size, 3), "float32"))
    except Exception as e:
        raise EvaluationError(
            f"the encoder cannot take {image_size}x{image_size} images: "
            f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}"
        ) from None
    out = np.asarray(out)
    if out.ndim != 2:
        raise EvaluationError(
            f"the encoder returns shape {out.shape[1:]} per image, not a feature vector"
        )
    return int(out.shape[1])
