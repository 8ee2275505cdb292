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

The cpu scale trains in at most 20 minutes on a 2-core CPU. Measured, with
each model trained alone with DINO on the same views as the reference
point: bench/mokd_vs_dino.py's Fashion-MNIST table in docs/benchmarks.md.
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
