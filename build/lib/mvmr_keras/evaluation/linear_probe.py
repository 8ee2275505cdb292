"""Offline linear probe: logistic regression on frozen features.

The independent yardstick for what an encoder learned: scikit-learn's
`LogisticRegression` on standardised features of the train split, scored
on the held-out split.
"""

import numpy as np


def extract_features(encoder, images, batch_size=256):
    """Features `(N, D)` float32 of uint8 / [0, 255] images, inference mode."""
    features = encoder.predict(
        np.asarray(images, dtype="float32"), batch_size=batch_size, verbose=0
    )
    return np.asarray(features, dtype="float32")


def linear_probe_top1(train_features, train_labels, test_features, test_labels,
                      max_iter=2000):
    """Top-1 accuracy in [0, 1] of a logistic regression on the features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(train_features, train_labels)
    return float(probe.score(test_features, test_labels))


def encoder_linear_probe_top1(encoder, train, test, batch_size=256):
    """`linear_probe_top1` of an encoder on `(images, labels)` splits."""
    return linear_probe_top1(
        extract_features(encoder, train[0], batch_size),
        train[1],
        extract_features(encoder, test[0], batch_size),
        test[1],
    )
