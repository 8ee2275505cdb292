"""A frozen CLIP image encoder from KerasHub, used as a distillation teacher.

`CLIPTeacher` maps a batch of images with pixel values in [0, 255] to CLIP's
projected image embedding `t(x)` (spec section 6): it resizes the images to
the teacher's resolution, applies CLIP's normalisation (the `scale` and
`offset` of the preset's image converter), runs the vision transformer in
inference mode, takes the class token and applies the vision projection. It
returns what `keras_hub.models.CLIPBackbone.get_vision_embeddings` gives for
the image the preset's `CLIPImageConverter` prepares, when both resize the
same way. Only the vision tower and its projection are kept; the text
encoder is dropped as soon as the preset is loaded. Every weight is frozen.

KerasHub is imported only when a teacher is built (it imports TensorFlow).

Example:

>>> teacher = CLIPTeacher("clip_vit_base_patch16")     # needs internet once
>>> teacher = CLIPTeacher("/data/presets/clip_vit_base_patch16")  # offline
>>> teacher(np.zeros((2, 96, 96, 3))).shape
(2, 512)

Offline, save the preset on a machine with internet first:

    import keras_hub
    name = "clip_vit_base_patch16"
    keras_hub.models.CLIPBackbone.from_preset(name).save_to_preset(name)
    keras_hub.layers.CLIPImageConverter.from_preset(name).save_to_preset(name)

then copy the directory and pass its path as the preset
(`--config.teacher.preset=/path/to/clip_vit_base_patch16`).
"""

import os

import keras
import numpy as np
from keras import ops

# CLIP's (OpenAI) channel statistics in [0, 1] units: the normalisation when
# a preset carries no image converter.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class TeacherPresetError(ValueError):
    """A teacher preset that cannot be loaded; the message says what to do."""


def _offline_message(preset, error):
    return (
        f"cannot load the CLIP preset {preset!r} ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:200] if str(error) else ''}). A preset "
        "name is downloaded from Kaggle and needs internet; without it, run "
        f"keras_hub.models.CLIPBackbone.from_preset({preset!r}).save_to_preset"
        "(DIR) and keras_hub.layers.CLIPImageConverter.from_preset(...)"
        ".save_to_preset(DIR) on a machine with internet, copy DIR here and "
        "pass it as the preset (--config.teacher.preset=/path/to/DIR)"
    )


def default_normalization():
    """`(scale, offset)` of CLIP's normalisation for [0, 255] pixels."""
    scale = [1.0 / (255.0 * s) for s in CLIP_STD]
    offset = [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)]
    return scale, offset


def load_preset(preset, dtype=None):
    """Loads a KerasHub CLIP preset: `(backbone, image_converter or None)`.

    Raises `TeacherPresetError` with instructions when the preset is neither
    a local directory nor downloadable (no internet, unknown name).
    """
    import keras_hub

    is_local = os.path.isdir(preset)
    if not is_local and os.path.sep in preset and "://" not in preset:
        raise TeacherPresetError(
            f"CLIP preset directory {preset!r} does not exist; give a KerasHub "
            "preset name (needs internet) or a directory made with save_to_preset"
        )
    try:
        backbone = keras_hub.models.CLIPBackbone.from_preset(preset, dtype=dtype)
    except Exception as e:  # network errors come in many types
        if is_local:
            raise TeacherPresetError(
                f"{preset!r} is not a loadable KerasHub CLIP preset directory: {e}"
            ) from e
        raise TeacherPresetError(_offline_message(preset, e)) from e
    try:
        converter = keras_hub.layers.CLIPImageConverter.from_preset(preset)
    except FileNotFoundError:
        converter = None  # a backbone-only preset: CLIP's own statistics
    return backbone, converter


def _three(value):
    values = np.broadcast_to(np.asarray(value, dtype="float64"), (3,))
    return [float(v) for v in values]


@keras.saving.register_keras_serializable(package="mvmr_keras")
class CLIPTeacher(keras.layers.Layer):
    """CLIP's projected image embedding of [0, 255] images; frozen.

    Args:
        preset: a KerasHub CLIP preset name (`"clip_vit_base_patch16"`;
            downloaded, so it needs internet) or a local preset directory
            (made with `save_to_preset`).
        image_size: the teacher's input resolution (default 224). It must be
            the preset's own (a ViT's position embeddings fix it); `None`
            takes the preset's.
        interpolation: how images are resized to `image_size`: `"bilinear"`
            (spec section 6, the default), `"bicubic"` (what KerasHub's CLIP
            image converter does) or `"nearest"`.
        architecture: the vision tower's config, as `get_config` writes it;
            when given, the layers are built from it without loading the
            preset (what `.keras` deserialisation does, after which the saved
            weights are restored). Leave it unset.

    Call: `teacher(images)` with `images` `(B, H, W, 3)` in [0, 255] returns
    float32 embeddings `(B, projection_dim)`; always in inference mode.

    Example:

    >>> teacher = CLIPTeacher("/presets/clip_vit_base_patch16")
    >>> teacher(np.full((4, 96, 96, 3), 128.0)).shape
    (4, 512)
    """

    def __init__(
        self,
        preset,
        image_size=224,
        interpolation="bilinear",
        architecture=None,
        **kwargs,
    ):
        kwargs["trainable"] = False  # a teacher is always frozen
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Unknown interpolation {interpolation!r}; available: {list(INTERPOLATIONS)}."
            )
        import keras_hub  # noqa: F401  (registers CLIPVisionEncoder for deserialisation)

        if architecture is None:
            backbone, converter = load_preset(str(preset), dtype=self.dtype_policy)
            if converter is not None and converter.scale is not None:
                scale = _three(converter.scale)
                offset = _three(converter.offset if converter.offset is not None else 0.0)
            else:
                scale, offset = default_normalization()
            vision_encoder = backbone.vision_encoder
            projection_dim = int(backbone.projection_dim)
            projection_kernel = backbone.vision_projection.kernel
            del backbone, converter  # drops the text encoder
        else:
            architecture = dict(architecture)
            vision_encoder = keras.saving.deserialize_keras_object(
                architecture["vision_encoder"]
            )
            projection_dim = int(architecture["projection_dim"])
            scale = _three(architecture["scale"])
            offset = _three(architecture["offset"])
            projection_kernel = None
        native_size = int(vision_encoder.image_shape[0])
        if image_size is None:
            image_size = native_size
        if int(image_size) != native_size:
            raise ValueError(
                f"CLIP preset {preset!r} takes {native_size} px images (its position "
                f"embeddings fix the resolution); set the teacher image_size to "
                f"{native_size}, not {image_size}."
            )
        self.preset = str(preset)
        self.image_size = int(image_size)
        self.interpolation = interpolation
        self.scale = scale
        self.offset = offset
        self.projection_dim = projection_dim
        self.vision_encoder = vision_encoder
        self.vision_encoder.trainable = False
        self.projection = keras.layers.Dense(
            projection_dim, use_bias=False, dtype=self.dtype_policy,
            name="vision_projection", trainable=False,
        )
        self.projection.build((None, int(vision_encoder.hidden_dim)))
        if projection_kernel is not None:
            self.projection.kernel.assign(projection_kernel)
        self.built = True

    def build(self, input_shape):
        self.built = True

    def preprocess(self, images):
        """Resize to the teacher's resolution and CLIP-normalise."""
        x = ops.cast(images, self.compute_dtype)
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = ops.image.resize(
                x, (self.image_size, self.image_size), interpolation=self.interpolation
            )
        # The image converter's order: scale first, then offset.
        x = x * ops.cast(np.reshape(self.scale, (1, 1, 1, 3)), x.dtype)
        return x + ops.cast(np.reshape(self.offset, (1, 1, 1, 3)), x.dtype)

    def call(self, images, training=None):
        del training  # a teacher always runs in inference mode
        sequence = self.vision_encoder({"images": self.preprocess(images)}, training=False)
        embedding = self.projection(sequence[:, 0, :])  # the class token
        return ops.stop_gradient(ops.cast(embedding, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.projection_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preset": self.preset,
                "image_size": self.image_size,
                "interpolation": self.interpolation,
                "architecture": {
                    "vision_encoder": keras.saving.serialize_keras_object(
                        self.vision_encoder
                    ),
                    "projection_dim": self.projection_dim,
                    "scale": list(self.scale),
                    "offset": list(self.offset),
                },
            }
        )
        return config
