"""The bundled default dataset: scikit-learn's handwritten digits.

1,797 real scanned 8x8 digits (0-9) that ship inside scikit-learn, so they
need no download. They become 32 x 32 RGB images with pixel values in
[0, 255] (bilinear upsampling, the grey level copied to the three
channels), split once, stratified by class, with a fixed seed: 1,437
train and 360 held-out test images.

Example:

>>> images, labels = load_digits("train")
>>> images.shape, images.dtype, labels.shape
((1437, 32, 32, 3), dtype('uint8'), (1437,))
"""

import functools

import numpy as np

DIGITS_SPLITS = ("train", "test")
DIGITS_IMAGE_SIZE = 32
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _all_digits():
    from scipy import ndimage
    from sklearn import datasets, model_selection

    digits = datasets.load_digits()
    # 0-16 grey levels -> [0, 255], 8 px -> 32 px.
    images = digits.images.astype("float32") * (255.0 / 16.0)
    zoom = DIGITS_IMAGE_SIZE / images.shape[1]
    images = ndimage.zoom(images, (1, zoom, zoom), order=1)
    images = np.clip(np.rint(images), 0, 255).astype("uint8")
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype("int32")
    train_idx, test_idx = model_selection.train_test_split(
        np.arange(len(labels)),
        test_size=_TEST_FRACTION,
        stratify=labels,
        random_state=_SPLIT_SEED,
    )
    return {
        "train": (images[train_idx], labels[train_idx]),
        "test": (images[test_idx], labels[test_idx]),
    }


def load_digits(split):
    """Returns `(images uint8 (N, 32, 32, 3), labels int32 (N,))`."""
    if split not in DIGITS_SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for dataset 'digits'; available: "
            f"{list(DIGITS_SPLITS)}."
        )
    images, labels = _all_digits()[split]
    return images.copy(), labels.copy()
