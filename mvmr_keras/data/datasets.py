"""Datasets by name: `load(name, split)` -> a `tf.data.Dataset`.

`load` yields `(image uint8 (H, W, 3), label int64)` pairs, one image at a
time (labels are -1 where a split has none); `load_numpy` gathers a whole
split into `(images, labels)` arrays for data that fits in memory.

The bundled `digits` needs nothing; TFDS datasets must have been prepared
in `data_dir` beforehand (there is no download at training time). The full
set of the paper's datasets and image folders is the data issue's work;
here `digits` and the TFDS path the STL10 config uses.
"""

import os

import numpy as np

from mvmr_keras.data.digits import DIGITS_SPLITS, load_digits

# Our name -> (TFDS builder name, our split -> TFDS split, label feature).
TFDS_DATASETS = {
    "stl10": ("stl10", {"train": "train", "test": "test",
                        "unlabelled": "unlabelled",
                        "train+unlabelled": "train+unlabelled"}, "label"),
    # CIFAR-20: CIFAR-100's 20 coarse (superclass) labels.
    "cifar20": ("cifar100", {"train": "train", "test": "test"}, "coarse_label"),
}
DATASETS = ("digits",) + tuple(TFDS_DATASETS)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that has to be downloaded and prepared first."""


def _tfds_dir(data_dir):
    return data_dir or os.environ.get(
        "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def _check_split(name, split):
    if name == "digits":
        splits = DIGITS_SPLITS
    elif name in TFDS_DATASETS:
        splits = TFDS_DATASETS[name][1]
    else:
        raise ValueError(f"Unknown dataset {name!r}; available: {list(DATASETS)}.")
    if split not in splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; available: "
            f"{list(splits)}."
        )


def load(name, split, data_dir=None):
    """A `tf.data.Dataset` of `(image uint8 (H, W, 3), label int64)`."""
    _check_split(name, split)
    import tensorflow as tf

    if name == "digits":
        images, labels = load_digits(split)
        return tf.data.Dataset.from_tensor_slices((images, labels.astype("int64")))
    builder_name, splits, label_key = TFDS_DATASETS[name]
    import tensorflow_datasets as tfds

    data_dir = _tfds_dir(data_dir)
    builder = tfds.builder(builder_name, data_dir=data_dir)
    try:
        ds = builder.as_dataset(split=splits[split])
        missing = False
    except tfds.core.DatasetNotFoundError:
        missing = True
    except AssertionError as e:  # TFDS's way of saying "not prepared"
        if "could not find data" not in str(e):
            raise
        missing = True
    if missing:
        raise DatasetNotFoundError(
            f"Dataset {name!r} is not prepared in {data_dir}. On a machine "
            f"with internet run `tfds build {builder_name} --data_dir="
            f"{data_dir}` (or python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{builder_name}', data_dir='{data_dir}')"
            f".download_and_prepare()\") and copy that directory here, then "
            f"pass --config.data_dir={data_dir}."
        ) from None
    return ds.map(
        lambda example: (example["image"], tf.cast(example[label_key], tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def load_numpy(name, split, data_dir=None):
    """A whole split in memory: `(uint8 (N, H, W, 3) images, int32 labels)`."""
    if name == "digits":  # no TensorFlow needed
        _check_split(name, split)
        return load_digits(split)
    images, labels = [], []
    for image, label in load(name, split, data_dir).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype="int32")
