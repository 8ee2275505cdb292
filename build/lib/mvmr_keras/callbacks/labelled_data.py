"""Labelled data for the evaluation callbacks: arrays or `tf.data`, as NumPy.

Both callbacks take labelled images as either

- a pair of arrays `(images, labels)`: `images` `(N, H, W, 3)` with values
  in [0, 255], `labels` `(N,)` integers; or
- a `tf.data.Dataset` whose elements are `(images, labels)` or
  `(original, augmented, labels)` (what `data.views(..., labels=True)`
  yields; the original view is used), batched or one image each (then the
  callback batches it).
"""

import numpy as np


def _is_tf_dataset(data):
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _image_and_label(element):
    return element[0], element[-1]


def _batched_tf(dataset, batch_size):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "a labelled dataset must yield (images, labels) or (original, augmented, "
            f"labels); got {spec}"
        )
    dataset = dataset.map(lambda *e: _image_and_label(e))
    if spec[0].shape.rank == 3:  # one image per element
        dataset = dataset.batch(batch_size)
    elif spec[0].shape.rank != 4:
        raise ValueError(f"images must be (H, W, 3) or (B, H, W, 3); got {spec[0].shape}")
    return dataset


def to_arrays(data, batch_size=256):
    """`(images float32, labels)` of a whole labelled set, in memory."""
    if _is_tf_dataset(data):
        images, labels = [], []
        for x, y in _batched_tf(data, batch_size).as_numpy_iterator():
            images.append(x)
            labels.append(y)
        if not images:
            raise ValueError("the labelled dataset is empty")
        return np.concatenate(images).astype("float32"), np.concatenate(labels)
    images, labels = data
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels) or images.ndim != 4:
        raise ValueError(
            f"expected (images (N, H, W, 3), labels (N,)); got {images.shape} and {labels.shape}"
        )
    return images, labels


def cycle_batches(data, batch_size, seed=0):
    """An endless iterator of `(images, labels)` NumPy batches: arrays are
    reshuffled on every pass; a `tf.data.Dataset` is repeated as it is."""
    if _is_tf_dataset(data):
        dataset = _batched_tf(data, batch_size).repeat()
        for x, y in dataset.as_numpy_iterator():
            yield x, y
        return
    images, labels = to_arrays(data)
    if len(images) == 0:
        raise ValueError("the labelled data is empty")
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, len(images))
    while True:
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = np.sort(order[start:start + batch_size])
            yield images[idx].astype("float32"), labels[idx]


def encoder_of(model, encoder=None):
    """The model whose features the callbacks read: `encoder` if given, else
    `model.encoder` (an MVMR), else the model itself."""
    if encoder is not None:
        return encoder
    return getattr(model, "encoder", model)


def predict_features(encoder, images, batch_size=256):
    """Inference-mode features `(N, D)` float32, no gradients (predict)."""
    out = [
        np.asarray(
            encoder.predict_on_batch(np.asarray(images[i:i + batch_size], "float32")),
            dtype="float32",
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)
