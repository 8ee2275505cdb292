"""Datasets by name: `load(name, split)` -> `(images, labels)` arrays.

The bundled `digits` needs nothing; TFDS datasets must have been prepared
in `data_dir` beforehand (there is no download at training time). The full
set of the paper's datasets and image folders is the data issue's work;
here `digits` and the TFDS path the STL10 config uses.
"""

import os

import numpy as np

from mvmr_keras.data.digits import load_digits

# Our name -> (TFDS builder name, our split -> TFDS split).
TFDS_DATASETS = {
    "stl10": ("stl10", {"train": "train", "test": "test",
                        "unlabelled": "unlabelled",
                        "train+unlabelled": "train+unlabelled"}),
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
    builder_name, splits = TFDS_DATASETS[name]
    if split not in splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; available: "
            f"{sorted(splits)}."
        )
    import tensorflow_datasets as tfds

    data_dir = _tfds_dir(data_dir)
    builder = tfds.builder(builder_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DatasetNotFoundError(
            f"Dataset {name!r} is not prepared in {data_dir}. On a machine "
            f"with internet run `tfds build {builder_name} --data_dir="
            f"{data_dir}` (or python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{builder_name}', data_dir='{data_dir}')"
            f".download_and_prepare()\") and copy that directory here, then "
            f"pass --config.data_dir={data_dir}."
        )
    ds = builder.as_dataset(split=splits[split], as_supervised=True)
    images, labels = [], []
    for image, label in tfds.as_numpy(ds):
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype="int32")
