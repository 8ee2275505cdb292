"""MV-MR on STL10 with the reference settings (spec section 7).

ResNet50, 96 px, small-kernel stem, 8192-8192-8192 projector, batch 256,
1000 epochs with 10 of warm-up, Adam lr 1e-4 and weight decay 1e-6, cosine
to 1e-6, float16 mixed precision; SSL on train + unlabelled (105k images).
The dataset must be prepared with TFDS first (see the README).
"""

from mvmr_keras.configs import digits


def get_config():
    config = digits.get_config()
    config.dataset = "stl10"
    config.train_split = "train+unlabelled"
    config.test_split = "test"
    config.image_size = 96
    config.crop_scale = (0.08, 1.0)
    config.small_kernel_stem = True
    config.backbone = "resnet50"
    config.backbone_width = 64
    config.projector = "8192-8192-8192"
    # The reference set, each with weight 1 (spec section 4).
    config.representations = "pixels,scattering,augmented_pixels,hog,local_std"
    config.epochs = 1000
    config.warmup_epochs = 10
    config.batch_size = 256
    config.learning_rate = 1e-4
    config.final_learning_rate = 1e-6
    config.weight_decay = 1e-6
    config.mixed_precision = "mixed_float16"
    # Linear evaluation: the usual random resized crop and flip.
    config.evaluation.crop_scale = (0.08, 1.0)
    config.evaluation.flip = True
    config.evaluation.ten_crop = True
    config.evaluation.batch_size = 256
    config.evaluation.learning_rate = 1e-3
    return config
