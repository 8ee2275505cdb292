"""MV-MR on CIFAR-20 (CIFAR-100's 20 superclasses) with the reference set.

ResNet18 at 32 px with the small-kernel stem, the reference representation
set, Adam lr 1e-4 with weight decay 1e-6, cosine to 1e-6, float16 mixed
precision, CIFAR normalisation. CIFAR-100 must be prepared with TFDS first
(`tfds build cifar100 --data_dir=DIR`, then `--config.data_dir=DIR`). The
cifar20 augmentation policy of spec section 5 arrives with the data issue;
until then the custom policy is used.
"""

from configs import digits


def get_config():
    config = digits.get_config()
    config.dataset = "cifar20"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "test"
    config.image_size = 32
    config.crop_scale = (0.2, 1.0)
    config.normalization = "cifar"
    config.backbone = "resnet18"
    config.backbone_width = 64
    config.small_kernel_stem = True
    config.projector = "8192-8192-8192"
    config.representations = "pixels,scattering,augmented_pixels,hog,local_std"
    config.epochs = 1000
    config.warmup_epochs = 10
    config.batch_size = 256
    config.learning_rate = 1e-4
    config.final_learning_rate = 1e-6
    config.weight_decay = 1e-6
    config.mixed_precision = "mixed_float16"
    return config
