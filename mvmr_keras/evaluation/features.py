"""Frozen-encoder features of a labelled `tf.data` split, computed once.

Evaluations of a frozen encoder never need its features twice for the same
view: `compute_features` runs the encoder in inference mode over a split
(optionally augmented, or ten-cropped) and returns NumPy arrays, or
`FeatureFile`s on disk for splits larger than memory, that the classifiers
then train on for as many epochs as they like.

Example:

>>> ds = mvmr_keras.data.load("digits", "train")
>>> features, labels = compute_features(encoder, ds, image_size=32)
>>> features.shape, labels.shape
((1437, 512), (1437,))
"""

import numpy as np

TEN_CROP_RESIZE = 8 / 7  # resize by 256/224 before cutting the ten crops


def eval_augmentation(image_size, crop_scale=(0.08, 1.0), flip=True, seed=None):
    """The linear-evaluation augmentation: random resized crop (+ flip).

    A `keras.layers.Pipeline`, so it runs inside `tf.data` on any backend.
    """
    import keras
    import keras_cv

    steps = [
        keras_cv.layers.RandomCropAndResize(
            (image_size, image_size),
            crop_area_factor=tuple(crop_scale),
            aspect_ratio_factor=(3 / 4, 4 / 3),
            seed=seed,
        )
    ]
    if flip:
        steps.append(keras_cv.layers.RandomFlip("horizontal", seed=seed))
    return keras.layers.Pipeline(steps)


def ten_crops(images, image_size):
    """`(B, 10, S, S, 3)`: the four corners and the centre of the images
    resized to `S * 8 / 7`, and their mirror images (tf ops)."""
    import tensorflow as tf

    big = int(round(image_size * TEN_CROP_RESIZE))
    images = tf.image.resize(images, (big, big))
    offset = big - image_size
    corners = [(0, 0), (0, offset), (offset, 0), (offset, offset),
               (offset // 2, offset // 2)]
    crops = [images[:, y:y + image_size, x:x + image_size, :] for y, x in corners]
    crops += [tf.image.flip_left_right(c) for c in crops]
    return tf.stack(crops, axis=1)


def batched(dataset, image_size, batch_size, augment=None, ten_crop=False):
    """`(float32 images in [0, 255], labels)` batches of a dataset of
    `(image uint8 (H, W, 3), label)` elements, resized to `image_size`;
    `augment` (a Pipeline) or `ten_crop` applied per batch, in order."""
    import tensorflow as tf

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if images.shape[1] != image_size or images.shape[2] != image_size:
            images = tf.image.resize(images, (image_size, image_size))
        if augment is not None:
            images = augment(images)
        if ten_crop:
            images = ten_crops(images, image_size)
        return images, labels

    return (dataset.batch(batch_size)
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _num_batches(dataset, batch_size):
    import tensorflow as tf

    n = int(dataset.cardinality())
    if n in (int(tf.data.INFINITE_CARDINALITY), int(tf.data.UNKNOWN_CARDINALITY)):
        return None
    return -(-n // batch_size)


def compute_features(encoder, dataset, image_size, batch_size=256, augment=None,
                     ten_crop=False, verbose=0, description="features", path=None):
    """Features `(N, D)` float32 and labels of a `(image, label)` dataset.

    The encoder runs in inference mode (`predict_on_batch`: no gradients,
    BatchNorm uses its moving statistics). With `ten_crop`, each image's
    feature is the mean over its ten crops: for a linear classifier that
    is exactly the mean of the ten crops' logits. The images stream
    through; with `path`, so do the features: they are written there and
    returned as a `FeatureFile` (read by rows), else as one array.
    """
    from mvmr_keras.evaluation.feature_file import FeatureFile

    import keras

    target = _num_batches(dataset, batch_size)
    progbar = keras.utils.Progbar(target, verbose=1 if verbose else 0, unit_name="batch")
    if verbose:
        print(f"{description}:")
    store = FeatureFile(path) if path else None
    features, labels = [], []
    for step, (images, batch_labels) in enumerate(
        batched(dataset, image_size, batch_size, augment, ten_crop).as_numpy_iterator()
    ):
        if ten_crop:
            b = images.shape[0]
            out = np.asarray(encoder.predict_on_batch(images.reshape((-1,) + images.shape[2:])))
            out = out.astype("float32").reshape(b, 10, -1).mean(axis=1)
        else:
            out = np.asarray(encoder.predict_on_batch(images), dtype="float32")
        if store is not None:
            store.append(out)
        else:
            features.append(out.astype("float32"))
        labels.append(np.asarray(batch_labels))
        progbar.update(step + 1)
    if not labels:
        if store is not None:
            store.delete()
        raise ValueError(f"{description}: the split holds no images")
    if store is not None:
        return store.close(), np.concatenate(labels)
    return np.concatenate(features), np.concatenate(labels)
