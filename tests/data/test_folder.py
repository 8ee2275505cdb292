"""`folder:PATH` datasets from real PNG/JPEG files."""

import io

import numpy as np
import pytest
from PIL import Image

from mvmr_keras import data


def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def class_folder(tmp_path):
    """cat/ (2 RGB JPEG + 1 grayscale PNG), dog/ (1 RGBA PNG, 1 corrupt,
    1 truncated JPEG), and a text file that is no image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for i in range(2):
        _save(root / "cat" / f"c{i}.jpg", rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), "JPEG")
    _save(root / "cat" / "gray.png", rng.integers(0, 255, (20, 20), dtype=np.uint8), "PNG")
    _save(root / "dog" / "rgba.png", rng.integers(0, 255, (24, 36, 4), dtype=np.uint8), "PNG")
    (root / "dog" / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_class_folders_give_sorted_labels_rgb_images_and_one_warning(class_folder):
    with pytest.warns(UserWarning, match=r"Skipped 2 unreadable or truncated") as record:
        ds = data.load(f"folder:{class_folder}", "train")
        pairs = list(ds.as_numpy_iterator())
    assert len([w for w in record if "Skipped" in str(w.message)]) == 1
    assert [int(label) for _, label in pairs] == [0, 0, 0, 1]  # cat, cat, cat, dog
    shapes = [image.shape for image, _ in pairs]
    assert shapes == [(40, 30, 3), (40, 30, 3), (20, 20, 3), (24, 36, 3)]
    gray = pairs[2][0]
    assert gray.dtype == np.uint8 and np.array_equal(gray[..., 0], gray[..., 2])


def test_a_folder_feeds_views_for_two_epochs(class_folder):
    with pytest.warns(UserWarning):
        ds = data.load(f"folder:{class_folder}", "train")
    pipeline = data.views(ds.repeat(4), "custom", image_size=32, batch_size=8, seed=0)
    for _ in range(2):  # two epochs, no crash on the bad files
        (original, augmented), = list(pipeline)[:1]
        assert original.shape == augmented.shape == (8, 32, 32, 3)


def test_flat_folder_has_label_minus_one_and_split_folders(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        _save(tmp_path / "flat" / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), "PNG")
    labels = [int(l) for _, l in data.load(f"folder:{tmp_path / 'flat'}", "train").as_numpy_iterator()]
    assert labels == [-1, -1, -1]
    _save(tmp_path / "split" / "train" / "a" / "0.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    _save(tmp_path / "split" / "test" / "a" / "0.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    assert len(list(data.load(f"folder:{tmp_path / 'split'}", "test"))) == 1
    with pytest.raises(ValueError, match=r"Unknown split 'validation'.*\['train', 'test'\]"):
        data.load(f"folder:{tmp_path / 'split'}", "validation")


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"No readable images .*class folders: \['cls'\]"):
        data.load(f"folder:{tmp_path / 'empty'}", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'nope'}", "train")


def test_load_numpy_keeps_an_evenly_spread_subset(tmp_path):
    # 2 classes x 10 images, each image's first pixel its index in the split.
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(10):
            pixels = np.full((8, 8, 3), 10 * (i + 10 * (label == "b")), np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    images, labels = data.load_numpy(f"folder:{tmp_path}", "train", max_images=5)
    index = images[:, 0, 0, 0] // 10
    np.testing.assert_array_equal(index, np.linspace(0, 19, 5).round())
    np.testing.assert_array_equal(labels, index >= 10)
    whole, _ = data.load_numpy(f"folder:{tmp_path}", "train", max_images=50)
    assert len(whole) == 20
    digits, digit_labels = data.load_numpy("digits", "test", max_images=100, image_size=16)
    all_digits, all_labels = data.load_numpy("digits", "test")
    keep = np.linspace(0, len(all_digits) - 1, 100).round().astype(int)
    assert digits.shape == (100, 16, 16, 3)
    np.testing.assert_array_equal(digit_labels, all_labels[keep])
