"""DINO's loss, centre, teacher temperature and entropies against NumPy float64."""

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from conftest import to_numpy
from mvmr_keras import dino_loss


def _reference_loss(student, teacher, centre, student_temperature, teacher_temperature):
    """DINO's loop over (teacher crop, student crop) pairs, in float64."""
    student, teacher = np.float64(student), np.float64(teacher)
    targets = softmax((teacher - np.float64(centre)) / teacher_temperature, axis=-1)
    total, pairs = 0.0, 0
    for i in range(len(teacher)):
        for j in range(len(student)):
            if i == j:
                continue
            log_p = log_softmax(student[j] / student_temperature, axis=-1)
            total += np.mean(-np.sum(targets[i] * log_p, axis=-1))
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("num_student", [2, 5])
def test_loss_equals_a_float64_restatement(num_student):
    rng = np.random.default_rng(0)
    student = rng.normal(0, 1, (num_student, 6, 32)).astype("float32")
    teacher = rng.normal(0, 1, (2, 6, 32)).astype("float32")
    centre = rng.normal(0, 0.3, (32,)).astype("float32")
    got = float(to_numpy(dino_loss.dino_loss(student, teacher, centre, 0.1, 0.04)))
    expected = _reference_loss(student, teacher, centre, 0.1, 0.04)
    assert got == pytest.approx(expected, rel=1e-5)
    # The pairs i == j are skipped: counting them gives another value.
    targets = softmax((np.float64(teacher) - centre) / 0.04, axis=-1)
    with_same = np.mean([np.mean(-np.sum(targets[i] * log_softmax(student[j] / 0.1, axis=-1), -1))
                         for i in range(2) for j in range(num_student)])
    assert abs(with_same - expected) > 1e-3


def test_loss_needs_the_teacher_crops_among_the_students():
    with pytest.raises(ValueError, match="fewer than the teacher's"):
        dino_loss.dino_loss(np.zeros((1, 2, 4)), np.zeros((2, 2, 4)), np.zeros(4))


def test_centre_is_a_running_mean_of_both_global_crops():
    rng = np.random.default_rng(1)
    teacher = rng.normal(0, 1, (2, 5, 8)).astype("float32")
    centre = rng.normal(0, 1, (8,)).astype("float32")
    got = to_numpy(dino_loss.updated_centre(centre, teacher, momentum=0.9))
    expected = 0.9 * np.float64(centre) + 0.1 * np.float64(teacher).reshape(-1, 8).mean(axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Over two replicas (an all-reduce that doubles sum and count): the same mean.
    doubled = to_numpy(dino_loss.updated_centre(centre, teacher, 0.9, all_reduce=lambda x: 2 * x))
    np.testing.assert_allclose(doubled, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("warmup_epochs", [0, 1, 4])
def test_teacher_temperature_is_linspace_then_constant(warmup_epochs):
    expected = np.concatenate([np.linspace(0.04, 0.07, warmup_epochs),
                               np.full(6 - warmup_epochs, 0.07)])
    got = [float(to_numpy(dino_loss.teacher_temperature(e, 0.04, 0.07, warmup_epochs)))
           for e in range(6)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_entropies():
    uniform = np.full((3, 16), 1 / 16, "float32")
    one_hot = np.eye(16, dtype="float32")[[0, 1, 2]]
    assert float(to_numpy(dino_loss.entropy(uniform))) == pytest.approx(np.log(16), rel=1e-5)
    assert float(to_numpy(dino_loss.entropy(one_hot))) == pytest.approx(0, abs=1e-5)
    # Three different one-hot targets: each certain, their mean spread over 3.
    assert float(to_numpy(dino_loss.marginal_entropy(one_hot))) == pytest.approx(np.log(3), rel=1e-5)
