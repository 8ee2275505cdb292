"""Fashion-MNIST: Debian's package files when installed (CI installs them),
TFDS's fashion_mnist otherwise, one line when neither is there."""

import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mvmr_keras import data
from mvmr_keras.data import fashion_mnist

INSTALLED = fashion_mnist.debian_available()


def _write_idx(path, array):
    """An IDX file by hand: zero, zero, type 0x08 (uint8), ndim, big-endian
    sizes, then the bytes."""
    array = np.asarray(array, dtype="uint8")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture
def fake_debian_dir(tmp_path, monkeypatch):
    """The package's layout with 5 train and 3 test images."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 5), ("test", 3)):
        images = rng.integers(0, 256, (n, 28, 28)).astype("uint8")
        labels = rng.integers(0, 10, n).astype("uint8")
        images_path, labels_path = fashion_mnist.debian_files(split, str(tmp_path))
        _write_idx(images_path, images)
        _write_idx(labels_path, labels)
        arrays[split] = (images, labels)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path))
    return arrays


def test_idx_files_parse_to_their_arrays(fake_debian_dir):
    images, labels = fake_debian_dir["test"]
    rgb, found = data.load_numpy("fashion_mnist", "test")
    assert rgb.shape == (3, 28, 28, 3) and rgb.dtype == np.uint8 and found.dtype == np.int32
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], images)
    np.testing.assert_array_equal(found, labels)
    ds_images, ds_labels = zip(*data.load("fashion_mnist", "train").as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(ds_images)[..., 0], fake_debian_dir["train"][0])
    assert np.asarray(ds_labels).dtype == np.int64


def test_read_idx_refuses_other_files(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="is not an IDX file"):
        fashion_mnist.read_idx(str(path))


@pytest.mark.parametrize("split, size", [("train", 60_000), ("test", 10_000)])
def test_the_real_files_or_tfds_mock(split, size, tmp_path, monkeypatch):
    """The real data where the package is installed (the developers'
    machines and CI); elsewhere TFDS's path on mock records."""
    if INSTALLED:
        images, labels = data.load_numpy("fashion_mnist", split)
        assert images.shape == (size, 28, 28, 3) and len(labels) == size
        assert set(np.unique(labels)) == set(range(10))
        assert np.bincount(labels).tolist() == [size // 10] * 10  # balanced classes
        # Grey: the three channels are equal; real images use the full range.
        assert np.array_equal(images[..., 0], images[..., 2]) and images.max() == 255
    else:
        monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "absent"))
        tfds.builder("fashion_mnist", data_dir=str(tmp_path))
        with tfds.testing.mock_data(num_examples=12, data_dir=None):
            images, labels = data.load_numpy("fashion_mnist", split)
        assert images.shape == (12, 28, 28, 3) and ((0 <= labels) & (labels < 10)).all()
    assert images.dtype == np.uint8 and labels.dtype == np.int32


def test_tfds_is_the_fallback_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "absent"))
    tfds.builder("fashion_mnist", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=6, data_dir=None):
        pairs = list(data.load("fashion_mnist", "test").as_numpy_iterator())
    assert len(pairs) == 6
    for image, label in pairs:
        assert image.shape == (28, 28, 3) and image.dtype == np.uint8
        assert label.dtype == np.int64 and 0 <= label < 10


def test_missing_data_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "absent"))
    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.load("fashion_mnist", "train", data_dir=str(tmp_path / "tfds"))
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "tfds build fashion_mnist" in message and str(tmp_path / "tfds") in message


def test_unknown_split():
    with pytest.raises(ValueError, match="Unknown split 'validation' for dataset 'fashion_mnist'"):
        data.load_numpy("fashion_mnist", "validation")


def test_debian_files_are_where_the_package_puts_them():
    assert fashion_mnist.debian_files("test") == (
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
    )
    assert len(fashion_mnist.CLASS_NAMES) == 10
