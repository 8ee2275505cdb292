"""TFDS datasets load offline through tfds.testing.mock_data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mvmr_keras import data


@pytest.mark.parametrize(
    "name, split, classes",
    [("stl10", "train", 10), ("stl10", "train+unlabelled", 10), ("cifar20", "test", 20)],
)
def test_tfds_dataset_loads_images_and_labels(name, split, classes, tmp_path):
    builder = data.datasets.TFDS_DATASETS[name][0]
    # mock_data fakes the records but needs the builder's metadata on disk.
    tfds.builder(builder, data_dir=str(tmp_path))  # registers the builder
    with tfds.testing.mock_data(num_examples=12, data_dir=None):
        images, labels = data.load(name, split)
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
    assert len(images) == len(labels) == 12
    assert labels.min() >= -1 and labels.max() < classes
