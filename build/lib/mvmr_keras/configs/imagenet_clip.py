"""CLIP -> ResNet50 distillation on ImageNet-1K.

The STL10 distillation settings (`configs/stl10_clip.py`: ViT-B/16 teacher
at 224 px, 8192-8192-8192, batch 256, 200 epochs, Adam 1e-4, float16) with
the standard 7x7 stem at 224 px and ImageNet's train split; the original
view is the validation transform (resize 256, centre crop 224) that
`mvmr_keras.data.views` applies. ImageNet needs a manual download (see
configs/imagenet.py).
"""

from mvmr_keras.configs import stl10_clip


def get_config():
    config = stl10_clip.get_config()
    config.dataset = "imagenet2012"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "validation"
    config.image_size = 224
    config.crop_scale = (0.08, 1.0)
    config.small_kernel_stem = False
    config.normalization = "imagenet"
    return config
