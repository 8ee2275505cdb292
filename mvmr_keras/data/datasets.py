"""Datasets by name: `load(name, split)` -> a `tf.data.Dataset`.

`load` yields `(image uint8 (H, W, 3), label)` pairs, one image at a time:
labels are int64 class indices (-1 where a split has none, such as STL10's
`unlabelled`), except for `voc2007`, whose label is a multi-hot float32
vector of its 20 classes. `load_numpy` gathers a whole split into
`(images, labels)` arrays for data that fits in memory.

| name | splits | labels |
| --- | --- | --- |
| `digits` | train, test | 10 (bundled with scikit-learn) |
| `fashion_mnist` | train, test | 10 (Debian's `dataset-fashion-mnist`, else TFDS) |
| `stl10` | train, test, unlabelled, train+unlabelled | 10 |
| `cifar10`, `cifar100` | train, test | 10, 100 |
| `cifar20` | train, test | CIFAR-100's 20 coarse labels |
| `imagenet2012` | train, validation | 1000 (manual download) |
| `imagenet50/100/200` | train, validation | class subsets of imagenet2012 |
| `imagenet2012_subset` | 1pct, 10pct (labelled train), validation | 1000 |
| `voc2007` | train, validation, test | 20, multi-hot |
| `folder:PATH` | see `load_folder` | sorted class sub-folders |

TFDS datasets must have been prepared in `data_dir` beforehand (nothing
is downloaded at training time). The ImageNet subsets' class lists ship in
`mvmr_keras/data/class_lists/`: ImageNet-100 is CMC's (Tian et al., 2020);
ImageNet-50 and ImageNet-200 are SCAN's (Van Gansbeke et al., 2020).

Example:

>>> image, label = next(iter(load("digits", "test")))
>>> image.shape, image.dtype.name, 0 <= int(label) < 10
(TensorShape([32, 32, 3]), 'uint8', True)
"""

import os

import numpy as np

from mvmr_keras.data import fashion_mnist
from mvmr_keras.data.digits import DIGITS_SPLITS, load_digits
from mvmr_keras.data.folder import load_folder

_CIFAR_SPLITS = {"train": "train", "test": "test"}
_IMAGENET_SPLITS = {"train": "train", "validation": "validation"}

# Our name -> (TFDS builder, our split -> TFDS split, label feature).
# A split given as (builder, split) reads another builder config.
TFDS_DATASETS = {
    "stl10": ("stl10", {"train": "train", "test": "test",
                        "unlabelled": "unlabelled",
                        "train+unlabelled": "train+unlabelled"}, "label"),
    "cifar10": ("cifar10", _CIFAR_SPLITS, "label"),
    # Read from Debian's package files when installed (fashion_mnist.py).
    "fashion_mnist": ("fashion_mnist", _CIFAR_SPLITS, "label"),
    "cifar100": ("cifar100", _CIFAR_SPLITS, "label"),
    # CIFAR-20: CIFAR-100's 20 coarse (superclass) labels.
    "cifar20": ("cifar100", _CIFAR_SPLITS, "coarse_label"),
    "imagenet2012": ("imagenet2012", _IMAGENET_SPLITS, "label"),
    "imagenet50": ("imagenet2012", _IMAGENET_SPLITS, "label"),
    "imagenet100": ("imagenet2012", _IMAGENET_SPLITS, "label"),
    "imagenet200": ("imagenet2012", _IMAGENET_SPLITS, "label"),
    # The 1% and 10% labelled subsets of SimCLR's semi-supervised protocol.
    "imagenet2012_subset": ("imagenet2012_subset/1pct", {
        "1pct": ("imagenet2012_subset/1pct", "train"),
        "10pct": ("imagenet2012_subset/10pct", "train"),
        "validation": ("imagenet2012_subset/1pct", "validation"),
    }, "label"),
    "voc2007": ("voc/2007", {"train": "train", "validation": "validation",
                             "test": "test"}, "labels"),
}
IMAGENET_SUBSETS = ("imagenet50", "imagenet100", "imagenet200")
MULTI_LABEL_CLASSES = {"voc2007": 20}
DATASETS = ("digits",) + tuple(TFDS_DATASETS)
FOLDER_PREFIX = "folder:"

# TFDS builders that need files the user downloads by hand.
_MANUAL_DOWNLOAD = {
    "imagenet2012": "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar",
    "imagenet2012_subset": "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that has to be downloaded and prepared first."""


def is_dataset_name(name):
    """Whether `name` is a known dataset or a `folder:PATH`."""
    return name in DATASETS or str(name).startswith(FOLDER_PREFIX)


def class_list(name):
    """The WordNet IDs of an ImageNet subset (`imagenet50/100/200`), in
    label order (sorted)."""
    if name not in IMAGENET_SUBSETS:
        raise ValueError(f"No class list for {name!r}; available: {list(IMAGENET_SUBSETS)}.")
    path = os.path.join(os.path.dirname(__file__), "class_lists", f"{name}.txt")
    with open(path) as f:
        return sorted(line.split()[0] for line in f if line.strip())


def _tfds_dir(data_dir):
    return data_dir or os.environ.get(
        "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def splits_of(name):
    """The split names `load` accepts for a dataset name."""
    if name == "digits":
        return tuple(DIGITS_SPLITS)
    if name in TFDS_DATASETS:
        return tuple(TFDS_DATASETS[name][1])
    raise ValueError(f"Unknown dataset {name!r}; available: {list(DATASETS)} or 'folder:PATH'.")


def _check_split(name, split):
    splits = splits_of(name)
    if split not in splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; available: {list(splits)}."
        )


def _not_prepared(name, builder_name, data_dir):
    base = builder_name.split("/")[0]
    if name == "fashion_mnist":
        return DatasetNotFoundError(fashion_mnist.missing_message(data_dir))
    if base in _MANUAL_DOWNLOAD:
        return DatasetNotFoundError(
            f"Dataset {name!r} is not prepared in {data_dir}. ImageNet cannot be "
            f"downloaded automatically: get {_MANUAL_DOWNLOAD[base]} from "
            f"https://image-net.org, put them in {data_dir}/downloads/manual/, "
            f"then run `tfds build {builder_name} --data_dir={data_dir} "
            f"--manual_dir={data_dir}/downloads/manual` and pass "
            f"--config.data_dir={data_dir}."
        )
    return DatasetNotFoundError(
        f"Dataset {name!r} is not prepared in {data_dir}. On a machine "
        f"with internet run `tfds build {builder_name} --data_dir="
        f"{data_dir}` (or python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{builder_name}', data_dir='{data_dir}')"
        f".download_and_prepare()\") and copy that directory here, then "
        f"pass --config.data_dir={data_dir}."
    )


def _tfds_split(name, split, data_dir):
    import tensorflow_datasets as tfds

    default_builder, splits, _ = TFDS_DATASETS[name]
    target = splits[split]
    builder_name, tfds_split = target if isinstance(target, tuple) else (default_builder, target)
    builder = tfds.builder(builder_name, data_dir=data_dir)
    try:
        return builder, builder.as_dataset(split=tfds_split)
    except tfds.core.DatasetNotFoundError:
        pass
    except AssertionError as e:  # TFDS's way of saying "not prepared"
        if "could not find data" not in str(e):
            raise
    raise _not_prepared(name, builder_name, data_dir) from None


def load(name, split, data_dir=None):
    """A `tf.data.Dataset` of `(image uint8 (H, W, 3), label)` (module
    docstring for the names, splits and labels)."""
    if str(name).startswith(FOLDER_PREFIX):
        return load_folder(name[len(FOLDER_PREFIX):], split)
    _check_split(name, split)
    import tensorflow as tf

    if name == "digits" or _fashion_mnist_from_debian(name):
        images, labels = load_numpy(name, split)
        return tf.data.Dataset.from_tensor_slices((images, labels.astype("int64")))
    data_dir = _tfds_dir(data_dir)
    builder, ds = _tfds_split(name, split, data_dir)
    label_key = TFDS_DATASETS[name][2]

    def to_rgb(image):
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        return image

    if name in MULTI_LABEL_CLASSES:
        classes = MULTI_LABEL_CLASSES[name]

        def to_pair(example):
            # Multi-hot over every object of the image, difficult ones too.
            present = tf.reduce_max(
                tf.one_hot(example[label_key], classes, dtype=tf.float32), axis=0
            )
            return to_rgb(example["image"]), tf.ensure_shape(present, (classes,))

        return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(
        lambda example: (to_rgb(example["image"]), tf.cast(example[label_key], tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if name in IMAGENET_SUBSETS:
        names = builder.info.features[label_key].names
        wanted = class_list(name)
        missing = set(wanted) - set(names)
        if missing:
            raise ValueError(f"{name}: {len(missing)} classes are not in imagenet2012, e.g. {sorted(missing)[:3]}.")
        index = {wnid: i for i, wnid in enumerate(names)}
        # imagenet2012 label -> subset label (-1: not in the subset).
        remap = np.full(len(names), -1, dtype="int64")
        for subset_label, wnid in enumerate(wanted):
            remap[index[wnid]] = subset_label
        remap = tf.constant(remap)
        ds = ds.map(lambda image, label: (image, tf.gather(remap, label)))
        ds = ds.filter(lambda image, label: label >= 0)
    return ds


def _fashion_mnist_from_debian(name):
    return name == "fashion_mnist" and fashion_mnist.debian_available(fashion_mnist.DEBIAN_DIR)


def _spread(count, max_images):
    """Indices of at most `max_images` of `count` images, evenly spread."""
    if not max_images or count <= max_images:
        return slice(None)
    return np.linspace(0, count - 1, max_images).round().astype("int64")


def load_numpy(name, split, data_dir=None, image_size=None, max_images=None):
    """A whole split in memory: `(uint8 (N, H, W, 3) images, labels)`,
    labels int32 (float32 multi-hot for `voc2007`). Without `image_size`
    the images must share one size; with it every image is resized (and a
    non-square one centre-cropped) to `image_size` square, as the original
    view of `views` does, so folders of mixed sizes load too.

    `max_images` keeps at most that many, evenly spread over the split (a
    fixed subset; ImageNet's whole train split is 190 GB at 224 px): the
    split streams through once and only those are kept."""
    if name == "digits":  # no TensorFlow needed at the bundled size
        _check_split(name, split)
        images, labels = load_digits(split)
        keep = _spread(len(images), max_images)
        images, labels = images[keep], labels[keep]
        if image_size is None or images.shape[1:3] == (image_size, image_size):
            return images, labels
        return _resized(images, image_size), labels
    if _fashion_mnist_from_debian(name):  # nor here, at the files' size
        _check_split(name, split)
        images, labels = fashion_mnist.load_fashion_mnist(split, fashion_mnist.DEBIAN_DIR)
        keep = _spread(len(images), max_images)
        images, labels = images[keep], labels[keep]
        if image_size is None or images.shape[1:3] == (image_size, image_size):
            return images, labels
        return _resized(images, image_size), labels
    ds = load(name, split, data_dir)
    if max_images:
        count = int(ds.cardinality())
        if count < 0:  # unknown (a filtered folder): count the files' entries once
            count = int(ds.reduce(0, lambda n, _: n + 1))
        keep = _spread(count, max_images)
        if not isinstance(keep, slice):
            import tensorflow as tf

            wanted = tf.constant(np.isin(np.arange(count), keep))
            ds = (ds.enumerate()
                  .filter(lambda i, element: tf.gather(wanted, i))
                  .map(lambda i, element: element))
    if image_size is not None:
        import tensorflow as tf

        from mvmr_keras.data.views import original_view

        ds = ds.map(lambda image, label: (_to_uint8(original_view(image, image_size)), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
    images, labels = [], []
    for image, label in ds.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError(f"Split {split!r} of {name!r} is empty.")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Split {split!r} of {name!r} has images of {len(shapes)} sizes "
            f"(e.g. {sorted(shapes)[:2]}); pass image_size to resize them"
        )
    dtype = "float32" if name in MULTI_LABEL_CLASSES else "int32"
    return np.stack(images), np.asarray(labels, dtype=dtype)


def _to_uint8(image):
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _resized(images, image_size):
    from mvmr_keras.data.views import original_view

    return np.asarray(_to_uint8(original_view(images, image_size)))
