"""The learning-rate range test and the batch-size finder."""

import json
import os
import struct

import numpy as np
import pytest

from mvmr_keras import tune
from tiny_training_config import tiny_config


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_suggestion_is_the_steepest_descent():
    learning_rates = np.logspace(-6, 0, 61)
    x = np.log10(learning_rates)
    # Falls fastest at 1e-3, bottoms out near 1e-1, then diverges.
    losses = 2 - np.tanh(2 * (x + 3)) + np.where(x > -1, 30 * (x + 1) ** 2, 0)
    suggestion, smoothed = tune.suggest_learning_rate(learning_rates, losses, beta=0.0)
    assert np.allclose(smoothed, losses)
    assert suggestion == pytest.approx(1e-3, rel=0.3)


def test_a_dip_past_the_lowest_loss_is_not_the_suggestion():
    learning_rates = np.logspace(-6, 0, 61)
    x = np.log10(learning_rates)
    losses = 2 - np.tanh(2 * (x + 4)) + np.where(x > -2, 3 * (x + 2), 0)
    losses[55] -= 1.5  # a lucky batch just before divergence: steep, but above the lowest loss
    suggestion, _ = tune.suggest_learning_rate(learning_rates, losses, beta=0.0)
    assert suggestion == pytest.approx(1e-4, rel=0.3)


def test_a_loss_that_never_falls_suggests_the_start_of_the_sweep():
    learning_rates = np.logspace(-6, 0, 20)
    suggestion, _ = tune.suggest_learning_rate(learning_rates, np.linspace(1.0, 5.0, 20), beta=0.0)
    assert suggestion == pytest.approx(1e-6)  # a tenth of it would lie outside the sweep


def test_smoothing_is_bias_corrected():
    assert np.allclose(tune.smooth([3.0, 3.0, 3.0], beta=0.9), 3.0)


def test_learning_rate_finder_on_digits(tmp_path):
    config = tiny_config()
    found = tune.find_learning_rate(config, str(tmp_path), min_lr=1e-6, max_lr=1.0,
                                    num_steps=10, log=lambda _: None)
    low, high = found["swept"]
    assert low == pytest.approx(1e-6) and high <= 1.0 + 1e-6
    assert np.isfinite(found["suggestion"]) and low <= found["suggestion"] <= high
    rates = np.asarray(found["learning_rates"])
    assert np.allclose(np.diff(np.log(rates)), np.log(1e6) / 9, rtol=1e-4)  # exponential
    assert all(np.isfinite(found["losses"]))
    with open(tmp_path / "lr_find.json") as f:
        assert json.load(f)["suggestion"] == found["suggestion"]
    assert png_size(tmp_path / "lr_find.png") == (640, 400)
    import matplotlib.image

    picture = matplotlib.image.imread(tmp_path / "lr_find.png")
    # The smoothed curve is drawn in matplotlib's first colour (C0, #1f77b4).
    blue = np.all(np.abs(picture[..., :3] - [0x1f / 255, 0x77 / 255, 0xb4 / 255]) < 0.02, axis=-1)
    assert blue.sum() > 200


def test_learning_rate_finder_rejects_a_bad_range(tmp_path):
    with pytest.raises(tune.TuneError, match="min_lr < max_lr"):
        tune.find_learning_rate(tiny_config(), str(tmp_path), min_lr=1.0, max_lr=1e-3)


def test_search_batch_size_doubles_then_bisects():
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= 100

    largest = tune.search_batch_size(fits)
    assert 88 <= largest <= 100 and max(tried) <= 128
    with pytest.raises(tune.TuneError, match="even batch 2"):
        tune.search_batch_size(lambda batch: False)


def test_extrapolation_fits_a_line():
    batches = [4, 8, 16]
    peaks = [2e9 + 50e6 * b for b in batches]
    batch, intercept, slope = tune.extrapolate_batch_size(batches, peaks, 10e9, margin=0.2)
    assert intercept == pytest.approx(2e9) and slope == pytest.approx(50e6)
    assert batch == 120  # (8e9 - 2e9) / 50e6, a multiple of 8
    with pytest.raises(tune.TuneError, match="did not grow"):
        tune.extrapolate_batch_size(batches, [2e9] * 3, 10e9)


def test_margin_rounds_down_to_a_multiple_of_eight():
    assert tune.with_margin(100, 0.2) == 80
    assert tune.with_margin(97, 0.1) == 80
    assert tune.with_margin(3, 0.2) == 2


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123 bytes."),
    type("ResourceExhaustedError", (Exception,), {})("OOM when allocating tensor"),
])
def test_out_of_memory_errors_are_recognised(error):
    assert tune.is_out_of_memory(error)
    assert not tune.is_out_of_memory(ValueError("shapes (2, 3) and (4,) are incompatible"))


def test_accelerator_search_catches_out_of_memory(monkeypatch, tmp_path):
    def train_steps(config, batch_size, steps=2):
        if batch_size > 200:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")

    monkeypatch.setattr(tune, "accelerator_name", lambda: "gpu")
    monkeypatch.setattr(tune, "train_steps", train_steps)
    monkeypatch.setattr(tune, "_free_accelerator_memory", lambda: None)
    found = tune.find_batch_size(tiny_config(batch_size=256), str(tmp_path), memory_margin=0.2,
                                 log=lambda _: None)
    assert 176 <= found["largest_fitting"] <= 200
    assert found["batch_size"] == tune.with_margin(found["largest_fitting"], 0.2)
    assert "--config.learning_rate=" in found["note"]
    assert os.path.exists(tmp_path / "batch_size.json")


def test_other_errors_are_not_taken_for_out_of_memory(monkeypatch, tmp_path):
    def train_steps(config, batch_size, steps=2):
        raise ValueError("a bug, not memory")

    monkeypatch.setattr(tune, "accelerator_name", lambda: "gpu")
    monkeypatch.setattr(tune, "train_steps", train_steps)
    with pytest.raises(ValueError, match="a bug"):
        tune.find_batch_size(tiny_config(), str(tmp_path), log=lambda _: None)


def test_cpu_search_extrapolates_and_checks_in_a_fresh_process(monkeypatch, tmp_path):
    """Probes give a line that puts the answer at 24 images; the check
    then really trains two steps at 24 in a fresh process."""
    real_peak = tune.peak_rss_of_training
    checked = []

    def peak(config, batch_size, steps=2):
        if batch_size in (4, 8):
            return 1e9 + 1e6 * batch_size
        checked.append((batch_size, steps))
        return real_peak(config, batch_size, steps)

    monkeypatch.setattr(tune, "peak_rss_of_training", peak)
    monkeypatch.setattr(tune, "available_memory_bytes", lambda: (1e9 + 24.5e6) / 0.8)
    monkeypatch.setattr(tune, "input_pipeline_bytes", lambda config, log: 0)
    found = tune.find_batch_size(tiny_config(), str(tmp_path), probe_batches=(4, 8),
                                 verify_steps=2, log=lambda _: None)
    assert found["device"] == "cpu"
    assert found["batch_size"] == 24 and checked == [(24, 2)]
    assert found["verified_peak_rss"] > 100 * 2**20  # a whole Keras process, measured


def test_learning_rate_note():
    note = tune.learning_rate_note(tiny_config(batch_size=256, learning_rate=1e-4), 64)
    assert "--config.learning_rate=2.5e-05" in note and "5e-05" in note
