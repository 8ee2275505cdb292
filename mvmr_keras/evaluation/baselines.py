"""Baselines beside every score: the raw pixels and the untrained encoder.

A self-supervised encoder is only worth its training if its frozen features
classify better than (1) the same architecture at random initialisation and
(2) the input itself. The raw-pixel baseline runs the very protocol the
encoder gets, on a pixel "encoder": the images resized to the config's
`image_size`, normalised with the encoder's statistics, flattened. On the
bundled digits at 32 px, raw pixels score 0.950 with the linear probe and
0.969 with kNN: an encoder below that has learned nothing a linear
classifier could not read off the pixels.

`frozen_scores` is the trainer's pair of yardsticks (scikit-learn's
logistic regression and weighted kNN, on features computed once);
`evaluate.py` runs its own protocols on `pixel_encoder(...)` directly.

Example:

>>> train, test = load_digits("train"), load_digits("test")
>>> pixel_scores(train, test, image_size=32)
{'linear_probe_top1': 0.95, 'knn_top1': 0.9694444444444444}
"""

import hashlib
import json
import os

import numpy as np

from mvmr_keras.evaluation.knn import knn_accuracy
from mvmr_keras.evaluation.linear_probe import extract_features, linear_probe_top1

# Where pixel baselines are kept between runs (the env var overrides; an
# empty value turns the cache off).
CACHE_ENV = "MVMR_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mvmr_keras")
# Bump when the protocol changes, so that old cached scores are not reused.
PIXEL_PROTOCOL_VERSION = 1

# The keys of `frozen_scores` and their names in the one-line summary.
SCORES = (("linear_probe_top1", "linear probe"), ("knn_top1", "kNN"))


def pixel_encoder(image_size, normalization="imagenet"):
    """A `keras.Model`: `(B, image_size, image_size, 3)` images in [0, 255]
    -> their normalised pixels, flattened to `(B, image_size**2 * 3)`."""
    import keras

    from mvmr_keras.models.encoder import NORMALIZATION_STATS, normalization_layer

    if normalization not in NORMALIZATION_STATS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; available: {sorted(NORMALIZATION_STATS)}."
        )
    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    normalized = normalization_layer(*NORMALIZATION_STATS[normalization])(images)
    return keras.Model(images, keras.layers.Flatten()(normalized), name="pixels")


def resize_images(images, image_size):
    """uint8/float images `(N, H, W, 3)` resized (bilinear) to
    `image_size`, as float32; unchanged in value when already that size."""
    images = np.asarray(images)
    if images.shape[1:3] == (image_size, image_size):
        return images.astype("float32")
    import keras

    return np.asarray(keras.ops.convert_to_numpy(
        keras.ops.image.resize(images.astype("float32"), (image_size, image_size))
    ), dtype="float32")


def frozen_scores(encoder, train, test, knn_k=20, knn_temperature=0.07, batch_size=256):
    """`{"linear_probe_top1", "knn_top1"}` of an encoder on `(images,
    labels)` splits: scikit-learn's logistic regression on standardised
    features and weighted cosine kNN, from one pass of features each."""
    train_features = extract_features(encoder, train[0], batch_size)
    test_features = extract_features(encoder, test[0], batch_size)
    return {
        "linear_probe_top1": linear_probe_top1(train_features, train[1], test_features, test[1]),
        "knn_top1": knn_accuracy(train_features, train[1], test_features, test[1],
                                 k=knn_k, temperature=knn_temperature)["top1"],
    }


def pixel_scores(train, test, image_size, normalization="imagenet", knn_k=20,
                 knn_temperature=0.07, cache_dir=None):
    """`frozen_scores` of the raw pixels (module docstring).

    They depend only on the data and the protocol, and take minutes on a
    large split (12 on Fashion-MNIST's 60,000 images), so they are kept in
    `cache_dir` (default `$MVMR_CACHE_DIR`, else ~/.cache/mvmr_keras; `""`
    turns it off) under a hash of the images, labels and settings: every
    run on the same data and protocol (another seed, another method)
    reuses them.
    """
    settings = {"image_size": image_size, "normalization": normalization, "knn_k": knn_k,
                "knn_temperature": knn_temperature, "version": PIXEL_PROTOCOL_VERSION}
    path = _cache_path(cache_dir, "pixels", settings, train, test)
    if path and os.path.exists(path):
        try:
            with open(path) as f:
                found = json.load(f)
            if all(isinstance(found.get(key), float) for key, _ in SCORES):
                return {key: found[key] for key, _ in SCORES}
        except (OSError, ValueError):
            pass  # unreadable: computed again and rewritten below
    encoder = pixel_encoder(image_size, normalization)
    scores = frozen_scores(
        encoder,
        (resize_images(train[0], image_size), train[1]),
        (resize_images(test[0], image_size), test[1]),
        knn_k=knn_k, knn_temperature=knn_temperature,
    )
    if path:
        from mvmr_keras import workdir as workdir_lib

        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            workdir_lib.write_json(path, dict(scores, settings=settings))
        except OSError:
            pass  # a read-only home: the scores are still returned
    return scores


def _cache_path(cache_dir, kind, settings, *splits):
    """`cache_dir/kind-<sha256 of the splits and settings>.json`, or None."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV, DEFAULT_CACHE_DIR)
    if not cache_dir:
        return None
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for images, labels in splits:
        for array in (np.ascontiguousarray(images), np.ascontiguousarray(labels)):
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(array.tobytes())
    return os.path.join(os.path.expanduser(cache_dir), "baselines",
                        f"{kind}-{digest.hexdigest()[:32]}.json")


def knn_settings(config):
    """The `knn_k` and `knn_temperature` of a config's evaluation block."""
    block = config.get("evaluation") or {}
    return {"knn_k": block.get("knn_k", 20), "knn_temperature": block.get("knn_temperature", 0.07)}


def flat_results(trained, random_init, pixels):
    """The results.json entries: each score of `frozen_scores` for the
    trained encoder (as is), at random init (`random_init_` prefix) and on
    the pixels (`pixels_` prefix). `random_init_top1` stays the linear
    probe's, as in earlier results files."""
    results = dict(trained)
    for key, _ in SCORES:
        results[f"pixels_{key}"] = pixels[key]
        results[f"random_init_{key}"] = random_init[key]
    results["random_init_top1"] = random_init["linear_probe_top1"]
    return results


def reference_lines(results):
    """The raw pixels' scores of `flat_results`, labelled for a plot."""
    return {f"raw pixels, {name}": results[f"pixels_{key}"] for key, name in SCORES}


def summary_line(results):
    """'Linear probe top-1: 0.93 (random init 0.41, raw pixels 0.967); kNN
    top-1: ...' from `flat_results`."""
    parts = []
    for key, name in SCORES:
        parts.append(
            f"{name} top-1: {results[key]:.4f} (random init {results[f'random_init_{key}']:.4f}, "
            f"raw pixels {results[f'pixels_{key}']:.4f})"
        )
    line = "; ".join(parts)
    return line[0].upper() + line[1:]
