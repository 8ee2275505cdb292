"""CLIP -> ResNet50 distillation on CIFAR-100 (100 fine classes).

The STL10 distillation settings (`configs/stl10_clip.py`: ViT-B/16 teacher
at 224 px, ResNet50, 8192-8192-8192, batch 256, 200 epochs, Adam 1e-4)
at CIFAR's 32 px with the small-kernel stem, CIFAR normalisation and the
train split, with the `cifar` augmentation policy of configs/cifar100.py.
Prepare the data with `tfds build cifar100 --data_dir=DIR` and pass
`--config.data_dir=DIR`.
"""

from mvmr_keras.configs import stl10_clip


def get_config():
    config = stl10_clip.get_config()
    config.dataset = "cifar100"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "test"
    config.image_size = 32
    config.crop_scale = (0.2, 1.0)
    config.normalization = "cifar"
    config.policy = "cifar"
    return config
