"""MOKD on ImageNet: ResNet50 and ViT-S/16, the authors' README command.

    python train.py --config=configs/mokd_imagenet.py --workdir=W

As `../shared/spec/MOKD.md` restates the released code's README command
(which differs from several of its flag defaults), 100 epochs at batch 256:

- views: DINO's multi-crop, 2 global crops of 224 px (scale 0.25-1) and 8
  local crops of 96 px (scale 0.05-0.25) with DINO's augmentations;
- heads: DINO heads 2048-2048-256, K = 65536, no BatchNorm; T-Heads of 3
  blocks, 6 heads, at the ViT's width 384 (the ResNet's 7 x 7 map through
  a 1x1 convolution; the ViT's 14 x 14 patch tokens);
- student temperature 0.1, teacher 0.04 -> 0.07 warmed up over 50 epochs
  for the ResNet's own two losses and 30 for every other loss; centre
  momentum 0.9; teacher momentum 0.996 -> 1; last layers (T-Heads'
  included) frozen in epoch 0;
- ResNet50 (`encoder.keras`): SGD momentum 0.9, lr 0.1 x 256/256, 10
  warm-up epochs, cosine to 0.0048, constant weight decay 1e-4, frozen
  DINO-head gain, clipping at 3; its T-Head a third group on the ViT's
  learning-rate and weight-decay schedules; lambda 1.0;
- ViT-S/16 (`encoder_vit.keras`): AdamW, lr 3e-4 x 256/256, 10 warm-up
  epochs, cosine to 1e-5, weight decay 0.04 -> 0.4, trainable gain,
  drop-path 0.1 on the student, clipping at 3 (the flag default is 0);
  lambda 0.1.

ImageNet needs a manual download: see the README. Mixed precision
(mixed_float16) uses one loss scale for both models (the released code
keeps one per model).
"""

from mvmr_keras.configs import dino_imagenet, mokd_digits


def get_config():
    config = mokd_digits.get_config()
    reference = dino_imagenet.get_config("resnet50")
    for field in ("dataset", "train_split", "probe_train_split", "test_split", "normalization",
                  "image_size", "local_crop_size", "num_local_crops", "global_crop_scale",
                  "local_crop_scale", "backbone", "backbone_width", "backbone_depths",
                  "small_kernel_stem", "optimizer", "learning_rate", "final_learning_rate",
                  "weight_decay", "warmup_epochs", "epochs", "batch_size", "mixed_precision",
                  "evaluation"):
        config[field] = reference[field]
    del config["crop_augmentation"]  # DINO's own
    # mixed_float16 (dino_imagenet's), with one loss scale for both models.
    m = config.mokd
    for field in ("out_dim", "hidden_dim", "bottleneck_dim", "use_bn_in_head",
                  "student_temperature", "teacher_temperature", "warmup_teacher_temperature",
                  "center_momentum", "teacher_momentum", "freeze_last_layer_epochs"):
        m[field] = reference.dino[field]
    m.thead_blocks = 3
    m.thead_heads = 6
    m.thead_dim = 384
    m.cross_warmup_fraction = 0.3  # 30 of 100 epochs
    m.first.self_warmup_fraction = 0.5  # 50 of 100 epochs
    m.first.final_weight_decay = reference.dino.final_weight_decay  # 1e-4, constant
    vit = dino_imagenet.get_config("vit_small")
    for field in ("backbone", "backbone_width", "backbone_depths", "patch_size",
                  "drop_path_rate", "optimizer", "learning_rate", "final_learning_rate",
                  "weight_decay", "warmup_epochs"):
        m.second[field] = vit[field]
    m.second.final_weight_decay = vit.dino.final_weight_decay
    return config
