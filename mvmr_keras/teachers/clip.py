"""A frozen CLIP image encoder from KerasHub: the CLIP case of `Teacher`.

`CLIPTeacher(preset)` is `Teacher.from_preset(preset, 224,
interpolation="bilinear")` for a CLIP preset: it maps images with pixel
values in [0, 255] to CLIP's projected image embedding `t(x)` (spec section
6, which resizes bilinearly to 224 px; KerasHub's converter resizes
bicubically, `interpolation="bicubic"`). It returns what
`keras_hub.models.CLIPBackbone.get_vision_embeddings` gives for the same
normalised images, and keeps only the vision tower and its projection.
`.keras` files saved with earlier versions of this class still load.

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

import keras

from mvmr_keras.teachers.teacher import (  # noqa: F401  (the names this module had)
    CLIP_MEAN,
    CLIP_STD,
    INTERPOLATIONS,
    Teacher,
    TeacherPresetError,
    default_normalization,
    load_preset,
)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class CLIPTeacher(Teacher):
    """CLIP's projected image embedding of [0, 255] images; frozen.

    Args:
        preset: a KerasHub CLIP preset name (`"clip_vit_base_patch16"`;
            downloaded, so it needs internet) or a local preset directory.
        image_size: the teacher's input resolution (default 224); it must be
            the preset's own. `None` takes the preset's.
        interpolation: `"bilinear"` (spec section 6, the default),
            `"bicubic"` (KerasHub's CLIP image converter) or `"nearest"`.
        architecture: set by `.keras` deserialisation; leave it unset.

    Example:

    >>> CLIPTeacher("/presets/clip_vit_base_patch16")(np.zeros((4, 96, 96, 3))).shape
    (4, 512)
    """

    def __init__(self, preset, image_size=224, interpolation="bilinear",
                 architecture=None, embedding=None, **kwargs):
        if architecture is not None and "vision_encoder" in architecture:
            # The configuration CLIPTeacher wrote before `Teacher` existed.
            architecture = {
                "family": "clip",
                "network": architecture["vision_encoder"],
                "projection_dim": int(architecture["projection_dim"]),
                "prefix_tokens": None,
                "scale": architecture["scale"],
                "offset": architecture["offset"],
                "converter_interpolation": "bicubic",
                "antialias": False,
            }
        super().__init__(preset, image_size=image_size, embedding=embedding,
                         interpolation=interpolation, architecture=architecture, **kwargs)
        if self.family != "clip":
            raise ValueError(
                f"CLIPTeacher needs a CLIP preset; {preset!r} is {self.family} "
                "(use Teacher.from_preset)"
            )
