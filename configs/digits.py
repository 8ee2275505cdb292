"""MV-MR on the bundled scikit-learn digits: the offline default.

ResNet18 at 32 px, trained for a few minutes on a CPU. Two choices differ
from the STL10 reference, both measured on this data (JAX, 2 cores, linear
probe top-1 at initialisation -> after training):

- the standard 7x7 stride-2 stem, not the small-kernel one: the digits are
  8x8 scans upsampled to 32 px, so the stride-1 stem only quadruples the
  activations. Small stem, width 32, 8 epochs: 0.733 -> 0.881; standard
  stem, width 64, 10 epochs: 0.419 -> 0.922.
- crop scale from 0.25 rather than 0.08: a digit cut to 8% of its area is
  no longer a digit.
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
    config.backbone_width = 64
    config.backbone_depths = ()  # () = the architecture's own
    config.small_kernel_stem = False  # see the docstring
    config.zero_init_residual = True
    config.projector = "1024-1024-1024"
    # Loss.
    config.representations = "pixels"
    config.representation_objective = "maximize"
    config.variance_margin = 1.0
    # Distillation from a frozen CLIP teacher (spec section 6); an empty
    # preset means none. See configs/stl10_clip.py.
    config.teacher = config_dict.ConfigDict()
    config.teacher.preset = ""  # KerasHub preset name or local preset directory
    config.teacher.image_size = 224  # the teacher's input resolution
    config.teacher.interpolation = "bilinear"  # resize to the teacher's size
    config.teacher.weight = 1.0  # w_t of the term w_t * (1 - dCor(z~, t(x)))
    config.teacher.use_cache = True  # embeddings computed once, under the workdir
    config.teacher.batch_size = 64  # images per teacher call when computing them
    config.teacher.cache_chunk_size = 1024  # images per cache file (resume unit)
    config.teacher.heldout_images = 512  # test images for the held-out dCor score
    # Optimisation.
    config.epochs = 10
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
