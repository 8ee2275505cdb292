import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.models import Projector
from mvmr_keras.models.projector import parse_sizes


def test_layers_follow_the_spec():
    projector = Projector("64-48-32")
    out = projector(np.random.default_rng(0).normal(size=(8, 16)).astype("float32"), training=True)
    assert tuple(out.shape) == (8, 32)
    assert [(d.units, d.use_bias) for d, _ in projector.hidden] == [(64, False), (48, False)]
    assert projector.output_dense.units == 32 and not projector.output_dense.use_bias
    # Two hidden kernels, four BatchNorm variables each, the output kernel.
    assert len(projector.weights) == 2 + 2 * 4 + 1


def test_hidden_activations_are_relu():
    projector = Projector("16-4")
    x = np.random.default_rng(1).normal(size=(32, 8)).astype("float32")
    projector.build(x.shape)
    kernel = np.eye(16, 4, dtype="float32")
    projector.output_dense.kernel.assign(kernel)  # pass four hidden units through
    out = to_numpy(projector(x, training=True))
    assert out.min() >= 0.0 and out.max() > 0.0


@pytest.mark.parametrize("sizes, expected", [("8192-8192-8192", (8192,) * 3), ([4, 2], (4, 2))])
def test_parse_sizes(sizes, expected):
    assert parse_sizes(sizes) == expected


@pytest.mark.parametrize("sizes", ["8192x8192", "", "0-4", [-1]])
def test_bad_sizes_are_rejected(sizes):
    with pytest.raises(ValueError):
        parse_sizes(sizes)


def test_config_round_trip():
    projector = Projector("8-4", name="proj")
    assert Projector.from_config(projector.get_config()).sizes == (8, 4)


def test_batchnorm_uses_the_reference_settings():
    # The reference's nn.BatchNorm1d: eps 1e-5, momentum 0.1 (Keras's 0.9).
    projector = Projector("16-16-8")
    projector.build((None, 4))
    for _, bn in projector.hidden:
        assert bn.epsilon == 1e-5 and bn.momentum == 0.9


def test_batchnorm_settings_round_trip():
    projector = Projector("8-4", batchnorm_epsilon=1e-3, batchnorm_momentum=0.99)
    restored = Projector.from_config(projector.get_config())
    bn = restored.hidden[0][1]
    assert (bn.epsilon, bn.momentum) == (1e-3, 0.99)
