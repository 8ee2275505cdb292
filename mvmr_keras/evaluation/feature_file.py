"""Frozen features on disk: written batch by batch, read back by rows.

ImageNet's train split is 1.28 M images: a ResNet50's float32 features
take 10 GB per view, once more for each augmented view the linear
evaluation precomputes. So `features.compute_features` can write them to a
`FeatureFile` under the workdir, and the classifiers read only the rows
each batch needs, through a memory map opened for that one read. The pages
leave the process with the map (the OS's file cache keeps them while memory
allows), so the process's memory does not grow with the split.

A `FeatureFile` reads like a read-only `(N, D)` float32 array: `len`,
`shape`, slicing and integer-array indexing return NumPy arrays, and
`np.asarray(f)` loads it whole (for the small splits that need it).

Example:

>>> features = FeatureFile("runs/x/features/train.f32")
>>> for batch in batches:
...     features.append(encoder.predict_on_batch(batch))
>>> features.close()
>>> features[[3, 1]].shape, features.shape
((2, 512), (20000, 512))
"""

import os

import numpy as np

DTYPE = np.dtype("float32")


class FeatureFile:
    """`(N, D)` float32 rows appended to a raw file (module docstring)."""

    def __init__(self, path):
        self.path = path
        self.count = 0
        self.dim = None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._writer = open(path, "wb")

    def append(self, rows):
        rows = np.ascontiguousarray(rows, dtype=DTYPE)
        if rows.ndim != 2:
            raise ValueError(f"feature rows must be (B, D); got shape {rows.shape}")
        if self.dim is None:
            self.dim = rows.shape[1]
        elif rows.shape[1] != self.dim:
            raise ValueError(f"rows of {rows.shape[1]} features after rows of {self.dim}")
        self._writer.write(rows.tobytes())
        self.count += len(rows)

    def close(self):
        """Ends writing; the file is read-only from here on."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self

    def delete(self):
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)

    # -- reading, as a read-only (N, D) array

    ndim = 2
    dtype = DTYPE

    @property
    def shape(self):
        return (self.count, self.dim or 0)

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if self._writer is not None:
            raise RuntimeError(f"{self.path} is still being written; close() it first")
        if self.count == 0:
            return np.zeros((0, self.dim or 0), DTYPE)[index]
        view = np.memmap(self.path, dtype=DTYPE, mode="r", shape=self.shape)
        try:
            return np.array(view[index], dtype=DTYPE)  # a copy: the map closes now
        finally:
            del view

    def __array__(self, dtype=None, copy=None):
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def chunks(features, size=8192):
    """The rows of an `(N, D)` array or `FeatureFile`, `size` at a time."""
    for start in range(0, len(features), size):
        yield np.asarray(features[start:start + size], dtype=DTYPE)


def mean_and_variance(views, size=8192):
    """Per-feature mean and (population) variance over every row of every
    view (arrays or `FeatureFile`s), in float64, one chunk in memory at a time."""
    total = 0
    mean = sum_sq = None
    for view in views:
        for rows in chunks(view, size):
            rows = rows.astype("float64")
            if mean is None:
                mean = np.zeros(rows.shape[1])
                sum_sq = np.zeros(rows.shape[1])
            # Chan et al.'s pairwise update: stable for large means.
            n, batch_mean = len(rows), rows.mean(axis=0)
            delta = batch_mean - mean
            new_total = total + n
            mean = mean + delta * n / new_total
            sum_sq = sum_sq + ((rows - batch_mean) ** 2).sum(axis=0) + delta ** 2 * total * n / new_total
            total = new_total
    if not total:
        raise ValueError("no feature rows")
    return mean.astype("float32"), (sum_sq / total).astype("float32")
