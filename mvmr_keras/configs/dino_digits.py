"""DINO on the bundled scikit-learn digits: offline, CPU minutes.

    python train.py --config=configs/dino_digits.py --workdir=W        # ResNet
    python train.py --config=configs/dino_digits.py:vit --workdir=W    # ViT

A student and its EMA teacher (`mvmr_keras.methods.dino`) on 2 global
crops of 32 px and 6 local crops of 16 px. Two variants, chosen with the
config argument:

- `resnet` (the default): ResNet18 at width 16 with one block per stage,
  the standard 7x7 stride-2 stem (as configs/digits.py: the digits are
  8x8 scans upsampled to 32 px), a frozen weight-norm gain (DINO's CNN
  setting);
- `vit`: a 4-layer ViT of width 96 (3 heads), patch 4 (an 8x8 grid of the
  global crops, 4x4 of the local ones), drop-path 0.1 on the student, a
  trainable gain (MOKD's ViT setting).

Both: a small head (hidden 256, bottleneck 64, K = 1024), AdamW at lr 1e-3
(batch 64) with 2 warm-up epochs and cosine to 1e-5, weight decay cosine
0.04 -> 0.4, per-tensor clipping at 3, teacher temperature 0.04 -> 0.07
over the first 10 epochs, student 0.1, teacher momentum 0.996 -> 1, the
last layer frozen in epoch 0. Crop scales as DINO's README (0.25-1 and
0.05-0.25), which keep most of a digit in the global crops.

The evaluation (online probe, kNN every 5 epochs, the trainer's linear
probe and kNN in results.json beside the raw pixels and random init) runs
on the teacher's encoder.

Measured (JAX, 2 shared cores, load ~9; kNN top-1 at k = 20; log K = 6.93;
raw pixels 0.969, random init 0.311): NOT YET TUNED. This config as it is,
3 epochs: teacher entropy 5.6 -> 6.4 (towards uniform), kNN 0.333. With
momentum 0.99, crop scales 0.5-1 / 0.2-0.5 and the warm-up over 5 epochs,
10 epochs: uniform collapse (entropy 6.92), kNN 0.375; with a constant
tau_t 0.04 and centre momentum 0.99 instead, 8 epochs: first towards one
output (batch-mean entropy 1.3 at epoch 4), then back towards uniform
(4.6), kNN 0.367; at MV-MR's width 64 and depths (2, 2, 2, 2), tau_t 0.04,
momentum 0.99: entropy 4.1 then 5.8 after epochs 1-2, kNN 0.381, 0.386
(stopped there). In the width-16 runs the per-image and batch-mean
entropies stay nearly equal: the teacher's output hardly depends on the
image. Without
centring the same step collapses to one output (entropy 0.8 after 4
epochs), so the two forces work; their balance on digits is not found yet.
"""

from ml_collections import config_dict

from mvmr_keras.configs import digits

VARIANTS = ("resnet", "vit")


def get_config(variant="resnet"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for configs/dino_digits.py; "
                         f"available: {list(VARIANTS)} (--config=configs/dino_digits.py:vit)")
    base = digits.get_config()
    config = config_dict.ConfigDict()
    config.method = "dino"
    # Data (the splits and the evaluation images as configs/digits.py).
    for field in ("dataset", "data_dir", "train_split", "probe_train_split", "test_split",
                  "normalization"):
        config[field] = base[field]
    config.image_size = 32  # the global crops' side, and the evaluation images'
    config.local_crop_size = 16
    config.num_local_crops = 6
    config.global_crop_scale = (0.25, 1.0)
    config.local_crop_scale = (0.05, 0.25)
    # The augmentations' rates (multicrop.DINO_AUGMENTATION's keys).
    config.crop_augmentation = augmentation = config_dict.ConfigDict()
    augmentation.flip_rate = 0.5
    augmentation.color_jitter_rate = 0.8
    augmentation.grayscale_rate = 0.2
    augmentation.global_blur_rates = (1.0, 0.1)
    augmentation.local_blur_rate = 0.5
    augmentation.solarize_rate = 0.2
    # Model.
    config.backbone = "resnet18"
    config.backbone_width = 16
    config.backbone_depths = (1, 1, 1, 1)
    config.small_kernel_stem = False
    config.zero_init_residual = True
    config.drop_path_rate = 0.0  # the student ViT's; the teacher has none
    config.patch_size = 0  # ViT only; 0 = the architecture's own
    # DINO: head, temperatures, teacher, optimisation details.
    config.dino = dino = config_dict.ConfigDict()
    dino.out_dim = 1024  # K
    dino.hidden_dim = 256
    dino.bottleneck_dim = 64
    dino.norm_last_layer = True  # frozen weight-norm gain
    dino.use_bn_in_head = False
    dino.student_temperature = 0.1
    dino.teacher_temperature = 0.07
    dino.warmup_teacher_temperature = 0.04
    dino.warmup_teacher_temperature_epochs = 10
    dino.center_momentum = 0.9
    dino.teacher_momentum = 0.996
    dino.final_weight_decay = 0.4  # cosine from weight_decay
    dino.clip_grad = 3.0  # per-tensor gradient norm; 0 = off
    dino.freeze_last_layer_epochs = 1
    dino.sgd_momentum = 0.9  # with optimizer = "sgd"
    # Optimisation.
    config.epochs = 30
    config.batch_size = 64
    config.steps_per_epoch = config_dict.placeholder(int)  # None = all data
    config.optimizer = "adamw"
    config.learning_rate = 1e-3
    config.final_learning_rate = 1e-5
    config.weight_decay = 0.04
    config.warmup_epochs = 2
    config.mixed_precision = ""
    config.seed = 0
    config.evaluation = base.evaluation
    config.evaluation.after_training = ""  # results.json has the linear probe and kNN
    if variant == "vit":
        config.backbone = "vit_digits"
        config.backbone_width = 96
        config.backbone_depths = ()  # its own 4 blocks
        config.patch_size = 4
        config.drop_path_rate = 0.1
        dino.norm_last_layer = False
        config.learning_rate = 5e-4
    return config
