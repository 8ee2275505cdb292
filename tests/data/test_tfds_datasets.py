"""TFDS datasets load offline through tfds.testing.mock_data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mvmr_keras import data


def _register(name, split, tmp_path):
    """mock_data fakes the records but needs the builder's metadata."""
    default_builder, splits, _ = data.datasets.TFDS_DATASETS[name]
    target = splits[split]
    tfds.builder(target[0] if isinstance(target, tuple) else default_builder, data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "name, split, classes",
    [
        ("stl10", "train", 10), ("stl10", "test", 10), ("stl10", "unlabelled", 10),
        ("stl10", "train+unlabelled", 10), ("cifar10", "train", 10),
        ("cifar100", "test", 100), ("cifar20", "test", 20),
        ("imagenet2012", "validation", 1000),
        ("imagenet2012_subset", "1pct", 1000), ("imagenet2012_subset", "10pct", 1000),
        ("imagenet2012_subset", "validation", 1000),
    ],
)
def test_tfds_dataset_gives_rgb_uint8_images_and_int_labels(name, split, classes, tmp_path):
    _register(name, split, tmp_path)
    with tfds.testing.mock_data(num_examples=6, data_dir=None):
        pairs = list(data.load(name, split).as_numpy_iterator())
    assert len(pairs) == 6
    for image, label in pairs:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        assert label.dtype == np.int64 and -1 <= label < classes


def test_cifar20_labels_are_coarse_ones(tmp_path):
    _register("cifar20", "train", tmp_path)
    with tfds.testing.mock_data(num_examples=64, data_dir=None):
        _, labels = data.load_numpy("cifar20", "train")
    assert labels.max() < 20 and len(np.unique(labels)) > 5


@pytest.mark.parametrize("name, classes", [("imagenet50", 50), ("imagenet100", 100), ("imagenet200", 200)])
def test_imagenet_subsets_keep_only_their_classes_relabelled(name, classes, tmp_path):
    wnids = data.class_list(name)
    assert len(wnids) == len(set(wnids)) == classes and wnids == sorted(wnids)
    _register(name, "train", tmp_path)
    with tfds.testing.mock_data(num_examples=300, data_dir=None):
        full = [int(label) for _, label in data.load("imagenet2012", "train").as_numpy_iterator()]
        subset = [int(label) for _, label in data.load(name, "train").as_numpy_iterator()]
    names = tfds.builder("imagenet2012", data_dir=str(tmp_path)).info.features["label"].names
    # The same mock records: the subset is the full set's images of its
    # classes, each relabelled to its index in the sorted class list.
    expected = [wnids.index(names[label]) for label in full if names[label] in wnids]
    assert subset == expected and len(subset) > 0


def test_voc2007_labels_are_20_way_multi_hot(tmp_path):
    _register("voc2007", "test", tmp_path)
    with tfds.testing.mock_data(num_examples=8, data_dir=None):
        ds = data.load("voc2007", "test")
        assert ds.element_spec[1].shape == (20,)
        images, labels = zip(*ds.as_numpy_iterator())
    labels = np.stack(labels)
    assert labels.dtype == np.float32 and labels.shape == (8, 20)
    assert set(np.unique(labels)) <= {0.0, 1.0} and labels.sum(axis=1).min() >= 1


def test_class_lists_ship_as_package_data():
    import mvmr_keras.data

    folder = mvmr_keras.data.__path__[0] + "/class_lists"
    for name in data.datasets.IMAGENET_SUBSETS:
        assert all(w.startswith("n") and len(w) == 9 for w in data.class_list(name))
    import os

    assert sorted(os.listdir(folder)) == ["imagenet100.txt", "imagenet200.txt", "imagenet50.txt"]


def test_missing_imagenet_says_where_the_tar_files_go(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="ILSVRC2012_img_train.tar.*downloads/manual"):
        data.load("imagenet100", "train", data_dir=str(tmp_path))


def test_missing_tfds_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="tfds build cifar10 "):
        data.load("cifar10", "train", data_dir=str(tmp_path))


def test_unknown_names_and_splits_list_what_exists():
    with pytest.raises(ValueError, match=r"Unknown dataset 'imagenet1k'.*'imagenet2012'.*folder:PATH"):
        data.load("imagenet1k", "train")
    with pytest.raises(ValueError, match=r"Unknown split 'unlabeled'.*'unlabelled'"):
        data.load("stl10", "unlabeled")
    with pytest.raises(ValueError, match=r"Unknown split 'train'.*'1pct', '10pct', 'validation'"):
        data.load("imagenet2012_subset", "train")


def test_load_gives_a_dataset_of_image_label_pairs(tmp_path):
    tfds.builder("stl10", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=5, data_dir=None):
        ds = data.load("stl10", "train")
        image, label = next(iter(ds))
    assert image.dtype.name == "uint8" and image.shape[-1] == 3
    assert label.dtype.name == "int64" and label.shape == ()
