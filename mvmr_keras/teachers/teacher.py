"""A frozen KerasHub vision backbone of any supported family, as a teacher.

`Teacher.from_preset(preset, image_size, embedding=...)` maps a batch of
images with pixel values in [0, 255] to the teacher embedding `t(x)` (spec
section 6): it resizes the images to the teacher's resolution and normalises
them as the preset's own image converter does (its `scale`, `offset`,
interpolation and antialiasing), runs the backbone in inference mode and
reads out one embedding per image. Families and their `embedding` choices:

| family | KerasHub backbone | `embedding` (first is the default) |
| --- | --- | --- |
| `clip` | `CLIPBackbone` | `projected`: `get_vision_embeddings` (class token, projection) |
| `siglip` | `SigLIPBackbone` (SigLIP, SigLIP2) | `projected`: `get_vision_embeddings` (attention-pooled) |
| `dinov2` | `DINOV2Backbone` | `cls`, `mean_patch`, `cls+mean` |
| `dinov3` | `DINOV3Backbone` | `cls`, `mean_patch`, `cls+mean` |
| `vit` | `ViTBackbone` | `cls`, `mean_patch`, `cls+mean` |

For the token families the backbone's output is the final-layer-normalised
token sequence `[CLS, registers..., patches...]`: `cls` is token 0,
`mean_patch` the mean of the patch tokens (registers excluded) and
`cls+mean` their concatenation `[cls, mean_patch]` (what DINOv2's linear
classifiers read). Only the vision tower is kept: CLIP's and SigLIP's text
towers are dropped.

The resolution: CLIP, SigLIP and ViT fix it with their position embeddings
(`image_size` must be the preset's); DINOv2 interpolates its position
embeddings and DINOv3 uses rotary ones, so they run at any multiple of the
patch size. `image_size=None` takes the preset's own.

Example:

>>> teacher = Teacher.from_preset("/presets/dinov2_base", 224, embedding="cls+mean")
>>> teacher(np.zeros((2, 96, 96, 3))).shape
(2, 1536)

A preset name is downloaded from Kaggle and needs internet. Offline, save
the preset on a machine with internet first:

    import keras_hub
    name = "dinov2_base"
    keras_hub.models.Backbone.from_preset(name).save_to_preset(name)
    keras_hub.layers.ImageConverter.from_preset(name).save_to_preset(name)

then copy the directory and pass its path as the preset.
"""

import os

import keras
import numpy as np
from keras import ops

# CLIP's (OpenAI) channel statistics in [0, 1] units: the normalisation when
# a CLIP preset carries no image converter.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")

# KerasHub backbone class name -> family.
FAMILIES = {
    "CLIPBackbone": "clip",
    "SigLIPBackbone": "siglip",
    "DINOV2Backbone": "dinov2",
    "DINOV3Backbone": "dinov3",
    "ViTBackbone": "vit",
}
TOKEN_EMBEDDINGS = ("cls", "mean_patch", "cls+mean")
EMBEDDINGS = {
    "clip": ("projected",),
    "siglip": ("projected",),
    "dinov2": TOKEN_EMBEDDINGS,
    "dinov3": TOKEN_EMBEDDINGS,
    "vit": TOKEN_EMBEDDINGS,
}
# Families whose position encoding adapts to the input resolution.
RESIZABLE = ("dinov2", "dinov3")
# The backbone input: a dict key, or None for a plain tensor.
_INPUT_NAMES = {"dinov3": "pixel_values", "vit": None}


class TeacherPresetError(ValueError):
    """A teacher preset that cannot be loaded; the message says what to do."""


def _offline_message(preset, error):
    first_line = str(error).splitlines()[0][:200] if str(error) else ""
    return (
        f"cannot load the KerasHub preset {preset!r} ({type(error).__name__}: "
        f"{first_line}). A preset name is downloaded from Kaggle and needs "
        "internet; without it, run keras_hub.models.Backbone.from_preset"
        f"({preset!r}).save_to_preset(DIR) and keras_hub.layers.ImageConverter"
        ".from_preset(...).save_to_preset(DIR) on a machine with internet, copy "
        "DIR here and pass it as the preset (--config.teacher.preset=/path/to/DIR, "
        "or --config.teachers[K].preset=/path/to/DIR for one of several teachers)"
    )


def default_normalization():
    """`(scale, offset)` of CLIP's normalisation for [0, 255] pixels."""
    scale = [1.0 / (255.0 * s) for s in CLIP_STD]
    offset = [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)]
    return scale, offset


def _check_preset_path(preset):
    if not os.path.isdir(preset) and os.path.sep in preset and "://" not in preset:
        raise TeacherPresetError(
            f"teacher preset directory {preset!r} does not exist; give a KerasHub "
            "preset name (needs internet) or a directory made with save_to_preset"
        )


def preset_family(preset):
    """`(family, backbone class)` of a KerasHub preset (reads its config;
    downloads it for a preset name)."""
    import keras_hub  # noqa: F401  (registers the backbone classes)
    from keras_hub.src.utils.preset_utils import get_preset_loader

    preset = str(preset)
    _check_preset_path(preset)
    try:
        backbone_class = get_preset_loader(preset).check_backbone_class()
    except Exception as e:  # network errors come in many types
        if os.path.isdir(preset):
            raise TeacherPresetError(
                f"{preset!r} is not a loadable KerasHub preset directory: {e}"
            ) from e
        raise TeacherPresetError(_offline_message(preset, e)) from e
    family = FAMILIES.get(backbone_class.__name__)
    if family is None:
        raise TeacherPresetError(
            f"preset {preset!r} holds a {backbone_class.__name__}; a teacher must be "
            f"one of {sorted(FAMILIES)}"
        )
    return family, backbone_class


def load_preset(preset, image_size=None, dtype=None):
    """`(family, backbone, image_converter or None)` of a KerasHub preset.

    A resizable family (DINOv2/v3) is built at `image_size` when given.
    Raises `TeacherPresetError` with instructions when the preset is neither
    a local directory nor downloadable (no internet, unknown name).
    """
    import keras_hub

    preset = str(preset)
    family, backbone_class = preset_family(preset)
    kwargs = {}
    if family in RESIZABLE and image_size:
        kwargs["image_shape"] = (int(image_size), int(image_size), 3)
    try:
        backbone = backbone_class.from_preset(preset, dtype=dtype, **kwargs)
    except Exception as e:
        if os.path.isdir(preset):
            raise TeacherPresetError(
                f"{preset!r} is not a loadable KerasHub {family} preset directory: {e}"
            ) from e
        raise TeacherPresetError(_offline_message(preset, e)) from e
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (FileNotFoundError, ValueError):
        converter = None  # a backbone-only preset
    return family, backbone, converter


def _three(value):
    values = np.broadcast_to(np.asarray(value, dtype="float64"), (3,))
    return [float(v) for v in values]


def _architecture_from_preset(preset, family, backbone, converter, embedding):
    """The parts a teacher keeps, and how it reads out its embedding."""
    if converter is not None and (converter.scale is not None or converter.offset is not None):
        scale = _three(converter.scale if converter.scale is not None else 1.0)
        offset = _three(converter.offset if converter.offset is not None else 0.0)
        interpolation, antialias = converter.interpolation, bool(converter.antialias)
    elif family == "clip":
        (scale, offset), interpolation, antialias = default_normalization(), "bicubic", False
    else:
        raise TeacherPresetError(
            f"preset {preset!r} has no image converter (image_converter.json) to "
            "normalise with; save it beside the backbone with keras_hub.layers."
            "ImageConverter.from_preset(NAME).save_to_preset(DIR)"
        )
    projection_kernel = None
    projection_dim = None
    if family == "clip":
        network = backbone.vision_encoder
        projection_dim = int(backbone.projection_dim)
        projection_kernel = backbone.vision_projection.kernel
    elif family == "siglip":
        network = backbone.vision_encoder
    else:
        network = backbone
    if family in ("dinov2", "dinov3"):
        prefix_tokens = 1 + int(backbone.num_register_tokens)
    elif family == "vit":
        prefix_tokens = 1 if backbone.use_class_token else 0
    else:
        prefix_tokens = None
    if family == "vit" and not prefix_tokens and embedding != "mean_patch":
        raise ValueError(
            f"ViT preset {preset!r} has no class token; use embedding 'mean_patch'"
        )
    architecture = {
        "family": family,
        "network": network,
        "projection_dim": projection_dim,
        "prefix_tokens": prefix_tokens,
        "scale": scale,
        "offset": offset,
        "converter_interpolation": interpolation,
        "antialias": antialias,
    }
    return architecture, projection_kernel


@keras.saving.register_keras_serializable(package="mvmr_keras")
class Teacher(keras.layers.Layer):
    """A frozen KerasHub vision backbone's embedding of [0, 255] images.

    Args:
        preset: a KerasHub preset name (downloaded, so it needs internet) or
            a local preset directory (made with `save_to_preset`) of any
            family in the module docstring's table.
        image_size: the teacher's input resolution; `None` takes the
            preset's own. CLIP, SigLIP and ViT accept only their own.
        embedding: what the teacher returns (the table); `None` is the
            family's first.
        interpolation: how images are resized to `image_size`: `None` (the
            preset's image converter's, with its antialiasing), or
            `"bilinear"`, `"bicubic"`, `"nearest"`.
        architecture: the layers' config, as `get_config` writes it; when
            given, the layers are built from it without loading the preset
            (what `.keras` deserialisation does before restoring the saved
            weights). Leave it unset.

    Call: `teacher(images)` with `images` `(B, H, W, 3)` in [0, 255] returns
    float32 embeddings `(B, output_dim)`; always in inference mode.

    Example:

    >>> teacher = Teacher.from_preset("/presets/siglip_base_patch16_224", 224)
    >>> teacher(np.full((4, 96, 96, 3), 128.0)).shape
    (4, 768)
    """

    def __init__(
        self,
        preset,
        image_size=None,
        embedding=None,
        interpolation=None,
        architecture=None,
        **kwargs,
    ):
        kwargs["trainable"] = False  # a teacher is always frozen
        super().__init__(**kwargs)
        if interpolation is not None and interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Unknown interpolation {interpolation!r}; available: {list(INTERPOLATIONS)}."
            )
        import keras_hub  # noqa: F401  (registers its layers for deserialisation)

        preset = str(preset)
        projection_kernel = None
        if architecture is None:
            family, backbone, converter = load_preset(
                preset, image_size=image_size, dtype=self.dtype_policy
            )
            self._check_embedding(preset, family, embedding)
            architecture, projection_kernel = _architecture_from_preset(
                preset, family, backbone, converter, embedding or EMBEDDINGS[family][0]
            )
            del backbone, converter  # drops any text tower
            if interpolation is not None:
                # The converter's antialiasing goes with its own interpolation.
                architecture["antialias"] = False
        else:
            architecture = dict(architecture)
            architecture["network"] = keras.saving.deserialize_keras_object(
                architecture["network"]
            )
        family = architecture["family"]
        self._check_embedding(preset, family, embedding)
        network = architecture["network"]
        native_size = int(network.image_shape[0])
        if image_size is None:
            image_size = native_size
        if int(image_size) != native_size:
            raise ValueError(
                f"{family} preset {preset!r} takes {native_size} px images (its position "
                f"embeddings fix the resolution); set the teacher image_size to "
                f"{native_size}, not {image_size}."
            )
        patch_size = getattr(network, "patch_size", None)
        patch_size = patch_size[0] if isinstance(patch_size, (tuple, list)) else patch_size
        if patch_size and int(image_size) % int(patch_size):
            raise ValueError(
                f"teacher image_size {image_size} is not a multiple of {family} preset "
                f"{preset!r}'s patch size {patch_size}."
            )
        self.preset = preset
        self.family = family
        self.image_size = int(image_size)
        self.embedding = embedding or EMBEDDINGS[family][0]
        self.interpolation = interpolation or architecture["converter_interpolation"]
        self.antialias = bool(architecture["antialias"])
        self._architecture = {k: v for k, v in architecture.items() if k != "network"}
        self.scale = list(architecture["scale"])
        self.offset = list(architecture["offset"])
        self.prefix_tokens = architecture["prefix_tokens"]
        self.projection_dim = architecture["projection_dim"]
        self.hidden_dim = int(network.hidden_dim)
        self.vision_encoder = network
        self.vision_encoder.trainable = False
        self._input_name = _INPUT_NAMES.get(family, "images")
        if family == "clip":
            self.projection = keras.layers.Dense(
                self.projection_dim, use_bias=False, dtype=self.dtype_policy,
                name="vision_projection", trainable=False,
            )
            self.projection.build((None, self.hidden_dim))
            if projection_kernel is not None:
                self.projection.kernel.assign(projection_kernel)
        self.built = True

    @classmethod
    def from_preset(cls, preset, image_size=None, embedding=None, interpolation=None,
                    **kwargs):
        """The teacher of a preset name or local preset directory (see class)."""
        return cls(preset, image_size=image_size, embedding=embedding,
                   interpolation=interpolation, **kwargs)

    @staticmethod
    def _check_embedding(preset, family, embedding):
        if embedding is not None and embedding not in EMBEDDINGS[family]:
            raise ValueError(
                f"unknown embedding {embedding!r} for the {family} preset {preset!r}; "
                f"available: {list(EMBEDDINGS[family])}"
            )

    @property
    def output_dim(self):
        if self.family == "clip":
            return self.projection_dim
        return self.hidden_dim * (2 if self.embedding == "cls+mean" else 1)

    def build(self, input_shape):
        self.built = True

    def preprocess(self, images):
        """Resize to the teacher's resolution and normalise (the converter's
        order: scale first, then offset)."""
        x = ops.cast(images, self.compute_dtype)
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = ops.image.resize(
                x, (self.image_size, self.image_size),
                interpolation=self.interpolation, antialias=self.antialias,
            )
        x = x * ops.cast(np.reshape(self.scale, (1, 1, 1, 3)), x.dtype)
        return x + ops.cast(np.reshape(self.offset, (1, 1, 1, 3)), x.dtype)

    def call(self, images, training=None):
        del training  # a teacher always runs in inference mode
        x = self.preprocess(images)
        inputs = x if self._input_name is None else {self._input_name: x}
        outputs = self.vision_encoder(inputs, training=False)
        if self.family == "clip":
            embedding = self.projection(outputs[:, 0, :])  # the class token
        elif self.family == "siglip":
            embedding = outputs  # already pooled
        else:
            parts = []
            if self.embedding in ("cls", "cls+mean"):
                parts.append(outputs[:, 0, :])
            if self.embedding in ("mean_patch", "cls+mean"):
                parts.append(ops.mean(outputs[:, self.prefix_tokens:, :], axis=1))
            embedding = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return ops.stop_gradient(ops.cast(embedding, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preset": self.preset,
                "image_size": self.image_size,
                "embedding": self.embedding,
                "interpolation": self.interpolation,
                "architecture": {
                    **self._architecture,
                    "antialias": self.antialias,
                    "network": keras.saving.serialize_keras_object(self.vision_encoder),
                },
            }
        )
        return config
