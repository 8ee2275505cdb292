"""MV-MR on CIFAR-10: the STL10 reference settings at 32 px.

ResNet18 with the small-kernel stem, CIFAR normalisation, the `cifar`
policy of spec section 5 (random crop with 4 px padding, horizontal flip)
and otherwise the reference optimisation (spec section 7: Adam lr 1e-4,
weight decay 1e-6, cosine to 1e-6, batch 256, 1000 epochs, float16).
Prepare the data first: `tfds build cifar10 --data_dir=DIR`, then
`--config.data_dir=DIR`.
"""

from mvmr_keras.configs import stl10


def get_config():
    config = stl10.get_config()
    config.dataset = "cifar10"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "test"
    config.image_size = 32
    config.policy = "cifar"
    config.normalization = "cifar"
    config.backbone = "resnet18"
    return config
