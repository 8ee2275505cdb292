"""The cosine schedules of DINO (teacher momentum, weight decay) against their formulas."""

import math

import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras import schedules
from tiny_training_config import tiny_config


def test_teacher_momentum_follows_the_cosine_to_one():
    total = 40
    for step in (0, 1, 10, 20, 39, 40, 45):
        expected = 1 - (1 - 0.996) * (math.cos(math.pi * min(step, total) / total) + 1) / 2
        got = float(to_numpy(schedules.teacher_momentum(step, total, 0.996)))
        assert got == pytest.approx(expected, abs=1e-7), step


def test_weight_decay_schedule_is_dinos_cosine():
    schedule = schedules.CosineSchedule(0.04, 0.4, total_steps=100)
    steps = np.arange(100)
    expected = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * steps / 100))  # DINO's cosine_scheduler
    got = [float(to_numpy(schedule(s))) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(to_numpy(schedules.CosineSchedule(1e-4, None, 10)(7))) == pytest.approx(1e-4)
    again = schedules.CosineSchedule.from_config(schedule.get_config())
    assert float(to_numpy(again(30))) == pytest.approx(float(to_numpy(schedule(30))))


def test_learning_rate_schedule_is_shared_with_the_trainer():
    from mvmr_keras import training

    assert training.learning_rate_schedule is schedules.learning_rate_schedule
    schedule = schedules.learning_rate_schedule(tiny_config(epochs=4, warmup_epochs=1), 10)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
