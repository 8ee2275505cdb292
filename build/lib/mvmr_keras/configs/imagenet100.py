"""MV-MR on ImageNet-100 (CMC's 100-class subset of ImageNet-1K).

`configs/imagenet.py` on the subset; the class list ships in
`mvmr_keras/data/class_lists/imagenet100.txt`, and imagenet2012 must be
prepared (manual download, see the README).
"""

from mvmr_keras.configs import imagenet


def get_config():
    config = imagenet.get_config()
    config.dataset = "imagenet100"
    return config
