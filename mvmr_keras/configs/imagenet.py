"""MV-MR on ImageNet-1K with the reference settings (spec section 7).

ResNet50 at 224 px with the standard 7x7 stem, 8192-8192-8192 projector,
the reference representation set, batch 256, Adam lr 1e-4 with weight
decay 1e-6, 10 warm-up epochs then cosine to 1e-6, float16, gradients
accumulated over 8 batches (effective batch 2048). The original
view is the validation transform (resize 256, centre crop 224); the
augmented view uses the custom policy. ImageNet needs a manual download:
see the README. Spec section 7 gives no ImageNet SSL epoch count; the
STL10 run's 1000 is kept (override with --config.epochs).
"""

from mvmr_keras.configs import stl10


def get_config():
    config = stl10.get_config()
    config.dataset = "imagenet2012"
    config.train_split = "train"
    config.probe_train_split = "train"
    config.test_split = "validation"
    config.image_size = 224
    config.small_kernel_stem = False
    config.normalization = "imagenet"
    # The authors' ImageNet run updated once per 8 batches of 256 (an
    # effective batch of 2048); each dCor is over one batch of 256.
    config.gradient_accumulation_steps = 8
    # Monitoring during training on 10,000 images of each split (1.5 GB at
    # 224 px, against 190 GB for the whole train split); evaluate.py scores
    # the whole splits, streamed, and caps only kNN's bank (10 GB in full).
    config.evaluation.max_probe_images = 10000
    config.evaluation.knn_bank_size = 200000
    return config
