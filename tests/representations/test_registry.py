"""The name registry and the config spec parser."""

import pytest

from mvmr_keras import representations

SPEC_NAMES = [
    "pixels",
    "augmented_pixels",
    "scattering",
    "hog",
    "local_std",
    "dct",
    "patch_scattering",
]


def test_every_spec_name_is_registered():
    assert set(SPEC_NAMES) <= set(representations.available())
    for name in representations.available():
        layer = representations.get(name)
        assert isinstance(layer, representations.Representation)
        assert layer.name == name


def test_default_set_is_the_references():
    assert representations.DEFAULT_REPRESENTATIONS == (
        "pixels", "scattering", "augmented_pixels", "hog", "local_std"
    )


def test_get_passes_parameters():
    layer = representations.get("hog", nbins=12, pool=4, name="hog12")
    assert (layer.nbins, layer.pool, layer.name) == (12, 4, "hog12")


def test_parse_names_parameters_and_weights():
    parsed = representations.parse(
        ["pixels", {"name": "scattering", "J": 3, "weight": 0.5}, {"name": "hog", "nbins": 12}]
    )
    assert [(layer.name, weight) for layer, weight in parsed] == [
        ("pixels", 1.0), ("scattering", 0.5), ("hog", 1.0)
    ]
    assert parsed[1][0].J == 3 and parsed[2][0].nbins == 12
    assert [layer.name for layer, _ in representations.parse("pixels, local_std")] == [
        "pixels", "local_std"
    ]


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown representation 'sift'.*available.*scattering"):
        representations.get("sift")
