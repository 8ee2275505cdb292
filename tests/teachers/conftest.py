"""Tiny CLIP presets built from config (no download), shared by the teacher tests."""

import pytest

from mvmr_keras.teachers.testing import save_clip_preset


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    """A 2-layer, width-32 CLIP at 32 px saved with save_to_preset."""
    return save_clip_preset(tmp_path_factory.mktemp("tiny_clip"), image_size=32, seed=0)


@pytest.fixture(scope="session")
def other_preset(tmp_path_factory):
    """The same architecture with other random weights."""
    return save_clip_preset(tmp_path_factory.mktemp("other_clip"), image_size=32, seed=1)


@pytest.fixture(scope="session")
def tiny_dinov2_preset(tmp_path_factory):
    """A 2-layer, width-32 DINOv2 (patch 8, two registers) at 32 px."""
    from mvmr_keras.teachers.testing import save_preset

    return save_preset("dinov2", tmp_path_factory.mktemp("tiny_dinov2"), image_size=32, seed=0)
