"""A 2-D map of frozen features, and TensorBoard projector files.

`evaluate.py --mode=embedding` computes the test split's features, maps up
to `embedding_points` of them to 2-D with UMAP when `umap-learn` is
installed, else scikit-learn's t-SNE (after PCA to 50 dimensions, for
speed), plots them coloured by label (`embedding.png`) and writes the
features for TensorBoard's projector (`projector/`: `tensorboard
--logdir=W/projector`, then the Projector tab).

Example:

>>> points, method = embed_2d(features, seed=0)
>>> write_projector(features, labels, "runs/digits/projector")
"""

import os

import numpy as np

METHODS = ("auto", "tsne", "umap")


def _umap_available():
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embed_2d(features, method="auto", seed=0):
    """`(points (N, 2) float32, method used)`: UMAP when installed (or asked
    for), else t-SNE."""
    if method not in METHODS:
        raise ValueError(f"unknown embedding method {method!r}; available: {list(METHODS)}")
    features = np.asarray(features, dtype="float32")
    if len(features) < 5:
        raise ValueError(f"need at least 5 points for a 2-D map; got {len(features)}")
    if method == "auto":
        method = "umap" if _umap_available() else "tsne"
    if method == "umap":
        import umap

        points = umap.UMAP(n_components=2, random_state=seed).fit_transform(features)
        return np.asarray(points, dtype="float32"), "umap"
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    reduced = StandardScaler().fit_transform(features)
    if reduced.shape[1] > 50:
        reduced = PCA(n_components=50, random_state=seed).fit_transform(reduced)
    perplexity = min(30.0, (len(features) - 1) / 3.0)
    points = TSNE(n_components=2, init="pca", perplexity=perplexity,
                  random_state=seed).fit_transform(reduced)
    return np.asarray(points, dtype="float32"), "tsne"


def write_projector(features, labels, folder, class_names=None, tensor_name="features"):
    """TensorBoard projector files in `folder`: `tensors.tsv` (one row per
    point), `metadata.tsv` (its label, and class name when given) and the
    `projector_config.pbtxt` that points at them. Returns the folder."""
    features = np.asarray(features, dtype="float32")
    labels = np.asarray(labels).reshape(-1)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    os.makedirs(folder, exist_ok=True)
    np.savetxt(os.path.join(folder, "tensors.tsv"), features, delimiter="\t", fmt="%.6g")
    with open(os.path.join(folder, "metadata.tsv"), "w") as f:
        if class_names is None:  # one column: no header line
            f.writelines(f"{int(label)}\n" for label in labels)
        else:
            f.write("label\tname\n")
            f.writelines(f"{int(label)}\t{class_names[int(label)]}\n" for label in labels)
    with open(os.path.join(folder, "projector_config.pbtxt"), "w") as f:
        f.write(
            "embeddings {\n"
            f'  tensor_name: "{tensor_name}"\n'
            '  tensor_path: "tensors.tsv"\n'
            '  metadata_path: "metadata.tsv"\n'
            "}\n"
        )
    return folder
