"""CIFAR-100 (100 fine labels): as `configs/cifar10.py`.

The paper's CIFAR-100 result is CLIP distillation (spec section 7: 200
epochs, cosine schedule), which the distillation configs add on top of
this one. Prepare the data first: `tfds build cifar100 --data_dir=DIR`.
"""

from mvmr_keras.configs import cifar10


def get_config():
    config = cifar10.get_config()
    config.dataset = "cifar100"
    return config
