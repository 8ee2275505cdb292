"""MV-MR on the bundled scikit-learn digits: the offline default.

A small ResNet18 at 32 px, trained for a few minutes on a CPU. The crop
scale is milder than the custom policy's 0.08 because a digit cropped to
8% of its area is no longer a digit.
"""

from ml_collections import config_dict


def get_config():
    config = config_dict.ConfigDict()
    # Data.
    config.dataset = "digits"
    config.data_dir = ""
    config.train_split = "train"
    config.probe_train_split = "train"  # labelled images for the probe
    config.test_split = "test"
    config.image_size = 32
    config.policy = "custom"
    config.crop_scale = (0.25, 1.0)
    config.normalization = "imagenet"
    # Model.
    config.backbone = "resnet18"
    config.backbone_width = 32
    config.backbone_depths = ()  # () = the architecture's own
    config.small_kernel_stem = True
    config.zero_init_residual = True
    config.projector = "1024-1024-1024"
    # Loss.
    config.representations = "pixels"
    config.representation_objective = "maximize"
    config.variance_margin = 1.0
    # Optimisation.
    config.epochs = 8
    config.batch_size = 128
    config.steps_per_epoch = config_dict.placeholder(int)  # None = all data
    config.optimizer = "adam"
    config.learning_rate = 1e-3
    config.final_learning_rate = 1e-6
    config.weight_decay = 1e-6
    config.warmup_epochs = 1
    config.mixed_precision = ""  # or "mixed_float16", "mixed_bfloat16"
    config.seed = 0
    return config
