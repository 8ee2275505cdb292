"""A linear classifier trained on precomputed frozen features.

Linear evaluation trains only a linear layer on a frozen encoder, so the
features of each view are computed once (`features.compute_features`) and
the classifier trains on them here, with Adam and a cosine decay to 0.

Augmented views: the train split's features are computed for the original
view and for a fixed number of augmented passes (each a fresh random
augmentation of every image); each epoch every image contributes one of its
precomputed views, drawn at random. So `P` passes cost `P + 1` encoder
passes over the data however many epochs the classifier trains (the
reference recomputes a fresh augmentation every epoch; `P` large
approaches it).

Example:

>>> head = train_linear_classifier(features[None], labels, num_classes=10,
...                                epochs=100, batch_size=256)
>>> logits = head.predict(test_features)
"""

import math

import numpy as np


def _feature_bank_class():
    import keras

    class FeatureBank(keras.utils.PyDataset):
        """Batches of one randomly chosen precomputed view per example,
        redrawn and reshuffled every epoch."""

        def __init__(self, views, labels, batch_size, seed=0):
            super().__init__()
            self.views = views  # V arrays or FeatureFiles of (N, D)
            self.labels = labels
            self.batch_size = batch_size
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(self.labels) / self.batch_size)

        def __getitem__(self, index):
            idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
            view = self.view[idx]
            batch = np.empty((len(idx), self.views[0].shape[1]), "float32")
            for v in np.unique(view):
                rows = view == v
                # Ascending rows read a memory-mapped file in order.
                wanted = idx[rows]
                order = np.argsort(wanted)
                batch[np.flatnonzero(rows)[order]] = self.views[v][wanted[order]]
            return batch, self.labels[idx]

        def on_epoch_end(self):
            n = len(self.labels)
            self.order = self.rng.permutation(n)
            self.view = self.rng.integers(0, len(self.views), n)

    return FeatureBank


def linear_head(feature_dim, num_classes, mean=None, variance=None, name="linear_head"):
    """`(B, D)` features -> `(B, C)` logits: a fixed standardisation (when
    `mean`/`variance` are given) then one Dense layer; float32 whatever the
    global dtype policy."""
    import keras

    inputs = keras.Input((feature_dim,), name="features")
    x = inputs
    if mean is not None:
        x = keras.layers.Normalization(
            mean=mean, variance=variance, name="standardize", dtype="float32"
        )(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=name)


def train_linear_classifier(train_views, train_labels, num_classes, epochs=100,
                            batch_size=256, learning_rate=1e-3, multilabel=False,
                            standardize=True, seed=0, verbose=0):
    """Trains and returns a `linear_head` on precomputed features.

    Args:
        train_views: `(V, N, D)` features of V views of N examples (V = 1:
            no augmentation), or `(N, D)`, or a list of V `(N, D)` arrays or
            `FeatureFile`s (read a batch at a time, never whole).
        train_labels: `(N,)` class indices, or `(N, C)` multi-hot targets
            when `multilabel` (sigmoid cross-entropy per class).
        standardize: standardise each feature by its mean and variance over
            the training views first (what scikit-learn's pipeline in
            `linear_probe` does); the result is still linear in the features.
        epochs, batch_size, learning_rate: Adam with the learning rate
            decaying to 0 along a cosine over all steps.
    """
    import keras

    from mvmr_keras.evaluation.feature_file import mean_and_variance

    if isinstance(train_views, (list, tuple)):
        views = list(train_views)
    else:
        views = np.asarray(train_views, dtype="float32")
        views = [views] if views.ndim == 2 else list(views)
    labels = np.asarray(train_labels)
    labels = labels.astype("float32") if multilabel else labels.astype("int32")
    for view in views:
        if len(view) != len(labels):
            raise ValueError(f"{len(view)} feature rows but {len(labels)} labels")
    mean = variance = None
    if standardize:
        mean, variance = mean_and_variance(views)
    keras.utils.set_random_seed(seed)
    head = linear_head(views[0].shape[-1], num_classes, mean, variance)
    bank = _feature_bank_class()(views, labels, batch_size, seed=seed)
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(epochs * len(bank), 1), alpha=0.0
    )
    loss = (keras.losses.BinaryCrossentropy(from_logits=True) if multilabel
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    head.fit(bank, epochs=epochs, verbose=verbose)
    return head


def predict_logits(head, features, batch_size=1024, chunk_size=16384):
    """`(N, C)` logits of an `(N, D)` array or `FeatureFile`, a chunk at a time."""
    from mvmr_keras.evaluation.feature_file import chunks

    out = [np.asarray(head.predict(rows, batch_size=batch_size, verbose=0), dtype="float32")
           for rows in chunks(features, chunk_size)]
    return np.concatenate(out) if out else np.zeros((0, head.output_shape[-1]), "float32")
