"""CLIP -> ResNet50 distillation on STL10 with the reference settings.

Spec sections 6 and 7: a frozen CLIP ViT-B/16 image encoder is the teacher
(`clip_vit_base_patch16`, 224 px, bilinear resize, CLIP normalisation) and
its embedding replaces the hand-crafted representations, so the loss is
`L1 + L2 + (1 - dCor(z~, t(x)))`. Student: ResNet50 with the small-kernel
stem at 96 px, 8192-8192-8192 projector; batch 256, 200 epochs with 10 of
warm-up, Adam lr 1e-4, weight decay 1e-6, cosine to 1e-6, float16 mixed
precision; the dataset's train split. The teacher's embeddings are
computed once into the workdir (`python -m mvmr_keras.teachers.cache`, or
on the first `train.py` run). Offline, pass a local preset directory:
`--config.teacher.preset=/path/to/clip_vit_base_patch16`.
"""

from mvmr_keras.configs import stl10


def get_config():
    config = stl10.get_config()
    config.dataset = "stl10"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "test"
    config.image_size = 96
    config.representations = ""  # the teacher replaces them (spec section 6)
    config.epochs = 200
    config.warmup_epochs = 10
    config.teacher.preset = "clip_vit_base_patch16"
    config.teacher.image_size = 224
    config.teacher.interpolation = "bilinear"
    config.teacher.weight = 1.0
    config.teacher.use_cache = True
    return config
