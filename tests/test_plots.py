"""curves.png and embedding.png: PNG images of the documented size."""

import numpy as np
import PIL.Image
import pytest

from mvmr_keras import plots


def _open(path):
    image = PIL.Image.open(path)
    image.load()
    return image


def test_curves_png_has_its_size_and_draws_something(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "mse": [0.7, 0.5, 0.4], "dcor_pixels": [0.5, 0.6, 0.7],
               "probe_top1": [0.2, 0.5, 0.7], "probe_top5": [0.6, 0.9, 0.95],
               "knn_top1": [None, None, 0.8], "knn_top5": [None, None, 0.97]}
    path = plots.plot_curves(history, str(tmp_path / "curves.png"), {"raw pixels, kNN": 0.97})
    image = _open(path)
    assert image.format == "PNG" and image.size == plots.CURVES_SIZE
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # lines in several colours


def test_curves_without_accuracies(tmp_path):
    path = plots.plot_curves({"loss": [1.0]}, str(tmp_path / "c.png"))
    assert _open(path).size == plots.CURVES_SIZE


def test_embedding_png_has_its_size_and_colours_each_class(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    points = rng.normal(size=(150, 2)) + 5 * labels[:, None]
    path = plots.plot_embedding(points, labels, str(tmp_path / "e.png"), "test",
                                class_names=["a", "b", "c"])
    image = _open(path)
    assert image.format == "PNG" and image.size == plots.EMBEDDING_SIZE
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype("float64")
    # Each class in its tab10 colour (drawn at alpha 0.8 over white).
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        blended = 0.8 * np.asarray(colour) + 0.2 * 255
        assert np.sum(np.abs(pixels - blended).max(axis=1) < 4) > 100, colour
    assert not np.any(np.abs(pixels - (0.8 * np.array([214, 39, 40]) + 51)).max(axis=1) < 4)


def test_embedding_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"expected \(N, 2\) points and N labels"):
        plots.plot_embedding(np.zeros((4, 3)), np.zeros(4), str(tmp_path / "e.png"))
