"""MOKD on Fashion-MNIST: a ResNet and a ViT that teach each other.

    python train.py --config=configs/mokd_fashion_mnist.py --workdir=W       # cpu
    python train.py --config=configs/mokd_fashion_mnist.py:gpu --workdir=W   # gpu

configs/mokd_digits.py's two models, heads, T-Heads and optimisers (each
model on dino_digits' AdamW) on configs/dino_fashion_mnist.py's data,
views and scales: 2 global crops of 28 px and 2 local crops of 16 px with
flips; at the cpu scale 10 epochs of 50 steps of 32 images and the probe
and kNN on 10,000 train images, at the gpu scale ResNet18 width 64 and the
ViT at width 192, batch 256, teacher momentum 0.996, 100 epochs of the
full data. The online probe and kNN monitor (gpu) follow both teachers.

Measured at the cpu scale (`python bench/mokd_vs_dino.py
--dataset=fashion_mnist --workdir=W --seeds=0,1,2`, JAX, 2 CPU cores shared
with other jobs; 425-751 s wall a run, 279-396 s of training;
docs/benchmarks.md). Teacher kNN top-1 (k = 20) / linear probe top-1 on the
10,000 test images, mean +- std over 3 seeds, against each model trained
alone with DINO on the same views (configs/dino_fashion_mnist.py):
- resnet: 0.658 +- 0.009 / 0.721 +- 0.005, alone 0.692 +- 0.009 / 0.738
  +- 0.004 (random init 0.266 / 0.245);
- vit: 0.514 +- 0.028 / 0.620 +- 0.009, alone 0.518 +- 0.030 / 0.696 +-
  0.016 (random init 0.531 / 0.621).
MOKD does worse than each model alone, by more than the spread except the
ViT's kNN (a tie, below its random init); raw pixels 0.820 / 0.793 under
the same protocols. Teacher entropies end at 3.3-4.2 of log K 5.55 (no
teacher went uniform, unlike on digits). gpu scale: pending a lent device.
"""

from mvmr_keras.configs import dino_fashion_mnist, mokd_digits

SCALES = ("cpu", "gpu")


def get_config(scale="cpu"):
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} for configs/mokd_fashion_mnist.py; "
                         f"available: {list(SCALES)} (--config=configs/mokd_fashion_mnist.py:gpu)")
    config = mokd_digits.get_config()
    dino_fashion_mnist.apply_fashion_mnist(config, scale)
    config.mokd.second.warmup_epochs = config.warmup_epochs  # the ViT's own field
    if scale == "gpu":
        config.backbone_width = 64
        config.backbone_depths = (2, 2, 2, 2)
        config.mokd.second.backbone_width = 192
        # One T-Head block at the ViT's width (192 now), as on digits.
    return config
