"""2-D maps and TensorBoard projector files of frozen features."""

import os

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from mvmr_keras.evaluation import embedding


def _blobs(n_per_class=40, classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_tsne_keeps_separated_classes_apart():
    features, labels = _blobs()
    points, method = embedding.embed_2d(features, method="tsne", seed=0)
    assert method == "tsne" and points.shape == (len(labels), 2) and points.dtype == np.float32
    # Neighbours in the map share their label (leave-one-out 1-NN).
    knn = KNeighborsClassifier(n_neighbors=2).fit(points, labels)
    neighbour = knn.kneighbors(points, return_distance=False)[:, 1]
    assert np.mean(labels[neighbour] == labels) > 0.95


def test_auto_is_tsne_without_umap_installed():
    features, _ = _blobs(n_per_class=5)
    expected = "umap" if embedding._umap_available() else "tsne"
    assert embedding.embed_2d(features)[1] == expected


def test_embed_2d_errors():
    with pytest.raises(ValueError, match="unknown embedding method 'pca'"):
        embedding.embed_2d(np.zeros((10, 3)), method="pca")
    with pytest.raises(ValueError, match="at least 5 points"):
        embedding.embed_2d(np.zeros((3, 3)))


def test_projector_files_round_trip(tmp_path):
    features, labels = _blobs(n_per_class=3)
    folder = embedding.write_projector(features, labels, str(tmp_path / "p"),
                                       class_names=["a", "b", "c", "d"])
    np.testing.assert_allclose(np.loadtxt(os.path.join(folder, "tensors.tsv")), features,
                               rtol=1e-5)
    rows = open(os.path.join(folder, "metadata.tsv")).read().splitlines()
    assert rows[0] == "label\tname" and rows[1:] == [f"{y}\t{'abcd'[y]}" for y in labels]
    config = open(os.path.join(folder, "projector_config.pbtxt")).read()
    assert 'tensor_path: "tensors.tsv"' in config and 'metadata_path: "metadata.tsv"' in config
    # The projector's own parser accepts it.
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    parsed = text_format.Parse(config, projector_config_pb2.ProjectorConfig())
    assert parsed.embeddings[0].tensor_path == "tensors.tsv"


def test_projector_single_column_metadata_has_no_header(tmp_path):
    folder = embedding.write_projector(np.ones((3, 2)), [2, 0, 1], str(tmp_path))
    assert open(os.path.join(folder, "metadata.tsv")).read() == "2\n0\n1\n"
    with pytest.raises(ValueError, match="3 feature rows but 2 labels"):
        embedding.write_projector(np.ones((3, 2)), [0, 1], str(tmp_path))
