"""The teacher embedding cache: keys, resumption, the command and training."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT
from mvmr_keras.teachers import cache as cache_lib
from mvmr_keras.teachers.cache import CacheError, EmbeddingCache, cache_directory, cache_key
from mvmr_keras.teachers.testing import save_clip_preset


def test_the_key_changes_with_every_field(tiny_preset, other_preset, tmp_path):
    base = dict(preset=tiny_preset, teacher_image_size=224, interpolation="bilinear",
                dataset="stl10", split="train", image_size=96)
    same = cache_directory("w", cache_key(**base))
    assert same == cache_directory("w", cache_key(**base))
    changed = {
        "preset": other_preset,
        "teacher_image_size": 336,
        "interpolation": "bicubic",
        "dataset": "cifar100",
        "split": "test",
        "image_size": 32,
    }
    directories = {same}
    for field, value in changed.items():
        directories.add(cache_directory("w", cache_key(**{**base, field: value})))
    assert len(directories) == 1 + len(changed)
    # The same preset path with new weights written to it is another key.
    path = save_clip_preset(tmp_path / "p", seed=0)
    before = cache_key(**{**base, "preset": path})
    os.utime(os.path.join(path, "model.weights.h5"), ns=(1, 1))
    assert cache_key(**{**base, "preset": path}) != before


class _CountingTeacher:
    """A deterministic stand-in teacher that can fail at a given call."""

    def __init__(self, fail_at=None):
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        batch = np.asarray(batch, "float32")
        return np.stack([batch.mean(axis=(1, 2, 3)), batch.std(axis=(1, 2, 3))], axis=1)


def test_an_interrupted_precomputation_resumes(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3)).astype("uint8")
    key = cache_key("p", 8, "bilinear", "d", "train", 8)
    cache = EmbeddingCache(tmp_path / "c", key, chunk_size=32)
    with pytest.raises(KeyboardInterrupt):
        cache.precompute(_CountingTeacher(fail_at=3), images, batch_size=16, verbose=0)
    progress = cache.progress()
    assert progress["chunks"] == 1 and progress["images"] == 32 and not progress["complete"]
    with pytest.raises(CacheError, match="incomplete"):
        cache.load()
    # A new process (new object) with another chunk size keeps the first one.
    resumed = EmbeddingCache(tmp_path / "c", key, chunk_size=50)
    teacher = _CountingTeacher()
    assert resumed.precompute(teacher, images, batch_size=16, verbose=0) == 100
    assert teacher.calls == 5  # chunks of 32, 32, 4 rows left: 2 + 2 + 1 calls
    fresh = EmbeddingCache(tmp_path / "fresh", key, chunk_size=32)
    fresh.precompute(_CountingTeacher(), images, batch_size=16, verbose=0)
    np.testing.assert_array_equal(resumed.load(expected_images=100), fresh.load())
    assert resumed.precompute(teacher, images, verbose=0) == 100 and teacher.calls == 5
    with pytest.raises(CacheError, match="101 images"):
        resumed.load(expected_images=101)


def test_a_directory_with_other_metadata_is_never_read(tmp_path):
    key = cache_key("p", 8, "bilinear", "d", "train", 8)
    EmbeddingCache(tmp_path / "c", key).precompute(
        _CountingTeacher(), np.zeros((4, 8, 8, 3), "uint8"), verbose=0
    )
    with pytest.raises(CacheError, match="holds embeddings of"):
        EmbeddingCache(tmp_path / "c", {**key, "split": "test"})


def test_the_cache_command(tiny_preset, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mvmr_keras.teachers.cache", "--config=configs/digits.py",
         f"--workdir={tmp_path}", f"--config.teacher.preset={tiny_preset}",
         "--config.teacher.image_size=32", "--splits=test"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "digits/test: 360 embeddings of dimension 16 cached." in result.stdout
    (directory,) = os.listdir(tmp_path / "teacher_cache")
    assert directory.startswith("digits-test-32px-")
    meta = json.load(open(tmp_path / "teacher_cache" / directory / "metadata.json"))
    assert meta["preset"] == tiny_preset and meta["teacher_image_size"] == 32


def test_the_command_without_a_teacher_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mvmr_keras.teachers.cache", "--config=configs/digits.py",
         f"--workdir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the config has no teacher; set --config.teacher.preset"
    )
