import numpy as np
import pytest

from mvmr_keras import data


def test_digits_are_32px_rgb_uint8_in_0_255():
    images, labels = data.load_digits("train")
    assert images.shape == (1437, 32, 32, 3) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    # Grey digits: the three channels are equal.
    assert np.array_equal(images[..., 0], images[..., 2])
    assert set(np.unique(labels)) == set(range(10))


def test_split_is_deterministic_disjoint_and_stratified():
    train_images, train_labels = data.load_digits("train")
    test_images, test_labels = data.load_digits("test")
    again, _ = data.load("digits", "test")
    assert np.array_equal(test_images, again)
    assert len(train_images) + len(test_images) == 1797
    train_set = {img.tobytes() for img in train_images}
    assert sum(img.tobytes() in train_set for img in test_images) <= 2  # sklearn has a few duplicates
    np.testing.assert_allclose(np.bincount(test_labels) / len(test_labels),
                               np.bincount(train_labels) / len(train_labels), atol=0.01)


def test_digits_match_scikit_learn_source():
    from sklearn.datasets import load_digits as sk_load

    images, labels = data.load_digits("test")
    sk = sk_load()
    # Each test image, averaged back down to 8x8, is one of scikit-learn's.
    small = images[..., 0].reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)) * 16 / 255
    distances = np.abs(small[:5, None] - sk.images[None]).mean(axis=(2, 3))
    nearest = distances.argmin(axis=1)
    assert np.array_equal(sk.target[nearest], labels[:5])


def test_unknown_split_and_dataset():
    with pytest.raises(ValueError, match="Unknown split 'validation'.*'train', 'test'"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        data.load("mnist", "train")


def test_missing_tfds_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="tfds build stl10"):
        data.load("stl10", "train", data_dir=str(tmp_path))
