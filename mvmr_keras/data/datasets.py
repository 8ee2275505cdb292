"""Datasets by name: `load(name, split)` -> `(images, labels)` arrays.

The bundled `digits` needs nothing; TFDS datasets must have been prepared
in `data_dir` beforehand (there is no download at training time). The full
set of the paper's datasets and image folders is the data issue's work;
here `digits` and the TFDS path the STL10 config uses.
"""

import os

import numpy as np

from mvmr_keras.data.digits import load_digits

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


def load(name, split, data_dir=None):
    """Loads a whole split into memory as `(uint8 NHWC images, int labels)`."""
    if name == "digits":
        return load_digits(split)
    if name not in TFDS_DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; available: {list(DATASETS)}.")
    builder_name, splits, label_key = TFDS_DATASETS[name]
    if split not in splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; available: "
            f"{sorted(splits)}."
        )
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
    images, labels = [], []
    for example in tfds.as_numpy(ds):
        images.append(example["image"])
        labels.append(example[label_key])
    return np.stack(images), np.asarray(labels, dtype="int32")
