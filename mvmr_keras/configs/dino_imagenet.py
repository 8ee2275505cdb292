"""DINO on ImageNet-1K: the reference settings for ResNet50 and ViT-S/16.

    python train.py --config=configs/dino_imagenet.py --workdir=W             # ResNet50
    python train.py --config=configs/dino_imagenet.py:vit_small --workdir=W   # ViT-S/16

Both as MOKD's released code trains each model (shared/spec/MOKD.md,
"Per model", "Views" and "Optimisation"; README values where they differ
from its flag defaults), 100 epochs at batch 256:

- views: 2 global crops of 224 px (scale 0.25-1) and 8 local crops of
  96 px (scale 0.05-0.25); ImageNet normalisation;
- head: 2048-2048-256, K = 65536; student temperature 0.1, teacher 0.04 ->
  0.07; centre momentum 0.9; teacher momentum 0.996 -> 1; the last layer
  frozen in epoch 0; per-tensor gradient clipping at 3;
- ResNet50: SGD momentum 0.9, lr 0.1 x 256/256 with 10 warm-up epochs and
  cosine to 0.0048, constant weight decay 1e-4, frozen weight-norm gain,
  teacher temperature warm-up over 50 epochs;
- ViT-S/16: AdamW, lr 3e-4 x 256/256 with 10 warm-up epochs and cosine to
  1e-5, weight decay cosine 0.04 -> 0.4, trainable gain, drop-path 0.1 on
  the student, teacher temperature warm-up over 30 epochs.

ImageNet needs a manual download: see the README.
"""

from mvmr_keras.configs import dino_digits

ARCHITECTURES = ("resnet50", "vit_small")


def get_config(arch="resnet50"):
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} for configs/dino_imagenet.py; "
                         f"available: {list(ARCHITECTURES)}")
    config = dino_digits.get_config()
    config.dataset = "imagenet2012"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "validation"
    config.normalization = "imagenet"
    config.image_size = 224
    config.local_crop_size = 96
    config.num_local_crops = 8
    config.global_crop_scale = (0.25, 1.0)
    config.local_crop_scale = (0.05, 0.25)
    # DINO's own augmentations (flips, blur, solarisation, grayscale), not
    # the digits' cut-down ones; and its head without BatchNorm.
    del config["crop_augmentation"]
    config.dino.use_bn_in_head = False
    config.dino.out_dim = 65536
    config.dino.hidden_dim = 2048
    config.dino.bottleneck_dim = 256
    config.dino.teacher_temperature = 0.07
    config.dino.warmup_teacher_temperature = 0.04
    config.dino.teacher_momentum = 0.996
    config.dino.clip_grad = 3.0
    config.dino.freeze_last_layer_epochs = 1
    config.epochs = 100
    config.batch_size = 256
    config.warmup_epochs = 10
    config.mixed_precision = "mixed_float16"
    config.evaluation.online_probe = False  # every epoch would embed 1.3M images
    config.evaluation.knn_every_n_epochs = 10
    config.evaluation.after_training = "linear,knn"
    config.evaluation.batch_size = 256
    config.evaluation.learning_rate = 1e-3
    config.evaluation.augmented_passes = 1
    config.evaluation.flip = True
    if arch == "resnet50":
        config.backbone = "resnet50"
        config.backbone_width = 64
        config.backbone_depths = ()
        config.small_kernel_stem = False
        config.optimizer = "sgd"
        config.learning_rate = 0.1 * config.batch_size / 256
        config.final_learning_rate = 0.0048
        config.weight_decay = 1e-4
        config.dino.final_weight_decay = 1e-4  # constant
        config.dino.norm_last_layer = True
        config.dino.warmup_teacher_temperature_epochs = 50
        config.drop_path_rate = 0.0
    else:
        config.backbone = "vit_small"
        config.backbone_width = 384
        config.backbone_depths = ()
        config.patch_size = 16
        config.optimizer = "adamw"
        config.learning_rate = 3e-4 * config.batch_size / 256
        config.final_learning_rate = 1e-5
        config.weight_decay = 0.04
        config.dino.final_weight_decay = 0.4
        config.dino.norm_last_layer = False
        config.dino.warmup_teacher_temperature_epochs = 30
        config.drop_path_rate = 0.1
    return config
