"""MV-MR on CIFAR-20 (CIFAR-100's 20 superclasses) with the reference set.

The reference's CIFAR-20 config: the STL10 settings (Adam, weight decay
1e-6, cosine to 1e-6, 1000 epochs, float16, 8192-8192-8192 projector, the
reference representation set) with batch 512 and lr 2e-4, on ResNet50 (the
reference's default backbone) at 32 px with the small-kernel stem, CIFAR
normalisation and the cifar20 augmentation policy of spec section 5 (colour
jitter 0.4/0.4/0.4/0.1, grayscale p=0.1, random resized crop from 20% of
the area, flip). CIFAR-100 must be prepared with TFDS first (`tfds build
cifar100 --data_dir=DIR`, then `--config.data_dir=DIR`).
"""

from mvmr_keras.configs import stl10


def get_config():
    config = stl10.get_config()
    config.dataset = "cifar20"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.image_size = 32
    config.crop_scale = (0.2, 1.0)
    config.normalization = "cifar"
    config.policy = "cifar20"
    config.backbone = "resnet50"
    config.batch_size = 512
    config.learning_rate = 2e-4
    return config
