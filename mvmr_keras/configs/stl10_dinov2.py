"""DINOv2 -> ResNet50 distillation on STL10.

The STL10 distillation settings of `configs/stl10_clip.py` (ResNet50 with
the small-kernel stem at 96 px, 8192-8192-8192 projector, batch 256, 200
epochs with 10 of warm-up, Adam lr 1e-4, float16 mixed precision; the
teacher replaces the hand-crafted representations) with KerasHub's
`dinov2_base` (ViT-B/14) as the teacher, at its native 518 px (the
resolution of its position embeddings and of its preset's image converter:
37 x 37 patches) and with its converter's own bicubic resize and ImageNet
normalisation. The embedding is the class token concatenated with the mean
patch token (1536 values), what DINOv2's linear classifiers read.

518 px costs about five times the teacher compute of 224 px; the
embeddings are computed once into the workdir (`python -m
mvmr_keras.teachers.cache --config=configs/stl10_dinov2.py --workdir=W`),
so only that precomputation pays it. `--config.teacher.image_size=224` (any
multiple of 14) runs it at a lower resolution. Offline, pass a local preset
directory: `--config.teacher.preset=/path/to/dinov2_base`.
"""

from mvmr_keras.configs import stl10_clip


def get_config():
    config = stl10_clip.get_config()
    config.teacher.preset = "dinov2_base"
    config.teacher.image_size = 518
    config.teacher.interpolation = ""  # the preset's converter: bicubic
    config.teacher.embedding = "cls+mean"
    config.teacher.weight = 1.0
    return config
