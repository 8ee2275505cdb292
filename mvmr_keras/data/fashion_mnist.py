"""Fashion-MNIST (Xiao et al., 2017), offline: 60,000 train and 10,000 test
28x28 grey images of 10 clothing classes.

Read from Debian's package `dataset-fashion-mnist` (MIT licence), which
puts Zalando's four original `*-ubyte.gz` files under `DEBIAN_DIR`, when it
is installed; `datasets.load` otherwise reads TFDS's `fashion_mnist` from
`data_dir`. Images come as RGB uint8 (the grey level in the three
channels), labels as int32 class indices (`CLASS_NAMES`).

Example:

>>> images, labels = load_fashion_mnist("test")
>>> images.shape, images.dtype, labels[:3]
((10000, 28, 28, 3), dtype('uint8'), array([9, 2, 1], dtype=int32))
"""

import functools
import gzip
import os

import numpy as np

FASHION_MNIST_SPLITS = ("train", "test")
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
# IDX type codes (the third magic byte) -> NumPy big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """The array in an IDX file (LeCun's MNIST format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    count = int(np.prod(shape))
    data = np.frombuffer(raw, dtype, count=count, offset=4 + 4 * ndim)
    if data.size != count:
        raise ValueError(f"{path} holds {data.size} values; its header says {shape}")
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def debian_files(split, folder=None):
    """`(images path, labels path)` of a split in the Debian package's layout."""
    folder = DEBIAN_DIR if folder is None else folder
    return tuple(os.path.join(folder, name) for name in _FILES[split])


def debian_available(folder=None):
    """Whether all four files of the Debian package are in `folder`."""
    return all(os.path.exists(p) for split in _FILES for p in debian_files(split, folder))


@functools.lru_cache(maxsize=4)
def _read_split(images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype("int32")
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{images_path}: {images.shape} images for {labels.shape} labels")
    return np.repeat(images[..., None], 3, axis=-1), labels


def load_fashion_mnist(split, folder=None):
    """`(images uint8 (N, 28, 28, 3), labels int32 (N,))` of a split from
    the Debian package's files in `folder` (default `DEBIAN_DIR`)."""
    if split not in FASHION_MNIST_SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for dataset 'fashion_mnist'; available: "
            f"{list(FASHION_MNIST_SPLITS)}."
        )
    images, labels = _read_split(*debian_files(split, folder))
    return images.copy(), labels.copy()


def missing_message(data_dir):
    """The one line for a machine with neither the package nor TFDS's copy."""
    return (
        f"Dataset 'fashion_mnist' is not installed: neither {DEBIAN_DIR}/ (run `apt-get install "
        f"{DEBIAN_PACKAGE}`) nor TFDS's fashion_mnist in {data_dir} (run `tfds build "
        f"fashion_mnist --data_dir={data_dir}` where there is internet, then pass "
        f"--config.data_dir={data_dir})."
    )
