"""DINO on Fashion-MNIST: a ResNet or a ViT, at a CPU or a GPU scale.

    python train.py --config=configs/dino_fashion_mnist.py --workdir=W          # resnet, cpu
    python train.py --config=configs/dino_fashion_mnist.py:vit --workdir=W      # vit, cpu
    python train.py --config=configs/dino_fashion_mnist.py:vit_gpu --workdir=W  # vit, gpu

configs/dino_digits.py's method and settings (its docstring says how they
were found: BatchNorm in the head, K = 256, teacher temperature 0.04,
teacher momentum 0.95 at batch 32, AdamW at lr 1e-3, clipping at 3) on the
60,000 / 10,000 28 px images of configs/fashion_mnist.py. What differs:

- Views: 2 global crops of 28 px (0.4-1 of the image) and 2 local crops
  of 16 px (0.2-0.5), the views configs/mokd_fashion_mnist.py trains on,
  so that MOKD is compared with each model alone on the same images
  (bench/mokd_vs_dino.py). Horizontal flips are on (clothes are
  mirror-symmetric; digits are not).
- Models: the ResNet18 keeps the 7x7 stride-2 stem (28 px -> 7x7 -> 4, 2,
  1, as configs/fashion_mnist.py); the ViT's patch 4 makes a 7x7 grid.
- The variant names the model and the scale, `<model>[_gpu]`:
  - cpu (`resnet`, `vit`; at most 20 minutes on a 2-core CPU): the digits
    models (ResNet18 at width 16 with one block per stage; the 4-block ViT
    of width 96), 10 epochs of 50 steps of 32 images (16,000 images, a
    fresh draw each epoch: 0.27 passes over the train split), and the
    trainer's linear probe and kNN (with the raw pixels' and random
    init's under the same protocols) on 10,000 of the train images
    (`evaluation.max_probe_images`, evenly spread) against the 10,000
    test images; kNN monitor at epochs 5 and 10, no online probe.
  - gpu (`resnet_gpu`, `vit_gpu`; a lent device, full data): ResNet18 at
    width 64 with two blocks per stage, or the ViT at width 192 (3
    heads); batch 256 at lr 1e-3 x 256 / 256 (AdamW's linear scaling from
    DINO's lr 5e-4 per 256 is not used: 1e-3 is what digits settled on),
    teacher momentum 0.996 (~234 steps an epoch), 100 epochs, every image
    every epoch, the online probe, kNN every 10 epochs, all of the train
    split in the probe.

Measured at the cpu scale (`python bench/mokd_vs_dino.py
--dataset=fashion_mnist --workdir=W --seeds=0,1,2`, whose DINO runs are
these configs; JAX, 2 CPU cores shared with other jobs; docs/benchmarks.md).
Teacher kNN top-1 (k = 20) / linear probe top-1 on the 10,000 test
images, mean +- std over 3 seeds; raw pixels 0.820 / 0.793 under the same
protocols (10,000 train images):
- resnet: 0.692 +- 0.009 / 0.738 +- 0.004 (random init 0.266 / 0.245);
  149-161 s wall (54-63 s of training).
- vit: 0.518 +- 0.030 / 0.696 +- 0.016 (random init 0.537 / 0.620): its
  linear probe gains 7.6 points, its kNN loses 1.9 (500 steps are too few
  for it); 408-489 s wall (304-331 s of training).
Both stay below the raw pixels. gpu scale: pending a lent device.
"""

from mvmr_keras.configs import dino_digits, fashion_mnist

VARIANTS = ("resnet", "vit", "resnet_gpu", "vit_gpu")


def get_config(variant="resnet"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for configs/dino_fashion_mnist.py; "
                         f"available: {list(VARIANTS)} "
                         "(--config=configs/dino_fashion_mnist.py:vit_gpu)")
    model, _, scale = variant.partition("_")
    config = dino_digits.get_config(model)
    apply_fashion_mnist(config, scale or "cpu")
    if scale == "gpu":
        if model == "resnet":
            config.backbone_width = 64
            config.backbone_depths = (2, 2, 2, 2)
        else:
            config.backbone_width = 192
    return config


def apply_fashion_mnist(config, scale):
    """The data, views and scale of Fashion-MNIST on a multi-crop config
    (DINO's or MOKD's), in place."""
    base = fashion_mnist.get_config(scale)
    for field in ("dataset", "data_dir", "train_split", "probe_train_split", "test_split",
                  "normalization", "image_size"):
        config[field] = base[field]
    config.global_crop_scale = (0.4, 1.0)
    config.num_local_crops = 2
    config.local_crop_size = 16
    config.local_crop_scale = (0.2, 0.5)
    config.crop_augmentation.flip_rate = 0.5  # clothes are mirror-symmetric
    # MV-MR's Fashion-MNIST evaluation at the same scale (the probe, kNN
    # monitor and after-training protocols), so that every method on this
    # data is scored alike.
    config.evaluation = evaluation = base.evaluation
    if scale == "cpu":
        config.epochs = 10
        config.batch_size = 32
        config.steps_per_epoch = 50
        config.warmup_epochs = 1
        # 10,000 train images in the probe and kNN bank: embedding all
        # 60,000 for every score (random init, each monitor, the end) would
        # cost more than the training with a ViT on 2 cores.
        evaluation.max_probe_images = 10_000
    else:
        config.epochs = 100
        config.batch_size = 256
        config.steps_per_epoch = None
        config.warmup_epochs = 10
        teacher = config.get("dino") or config.mokd
        teacher.teacher_momentum = 0.996
