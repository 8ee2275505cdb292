"""bench/train_step.py compares equal work: every benchmarked implementation's
loss at step 1 equals `mvmr_loss` on that step's own tensors, term by term,
for each benchmarked config (issue 21)."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "bench")
sys.path.insert(0, BENCH)

import train_step  # noqa: E402


def tiny(config_name):
    # The configs as benchmarked (stem, image size, representations), but
    # batch 4, width 16 and a small projector, so that the check takes
    # seconds; the loss terms are the same.
    config = train_step.benchmark_config(config_name, resnet18_96_projector="64-64",
                                         batch_size=4)
    config.backbone_width = 16
    config.projector = "64-64"
    return config


@pytest.mark.parametrize("config_name", train_step.CONFIG_NAMES)
def test_every_row_computes_the_same_loss_terms(config_name):
    config = tiny(config_name)
    assert config.representations == train_step.BENCHMARKED_REPRESENTATIONS


@pytest.mark.parametrize("config_name", train_step.CONFIG_NAMES)
def test_keras_loss_at_step_1_equals_mvmr_loss(config_name):
    config = tiny(config_name)
    _, first_step_check, _ = train_step.keras_step_function(config, jit_compile="auto")
    difference, first_loss = first_step_check()
    assert difference <= train_step.LOSS_CHECK_TOLERANCE
    assert 0.0 < first_loss < 10.0


@pytest.mark.parametrize("config_name", train_step.CONFIG_NAMES)
def test_plain_pytorch_loss_at_step_1_equals_mvmr_loss(config_name):
    pytest.importorskip("torch", reason="torch is in requirements-dev.txt")
    config = tiny(config_name)
    _, first_step_check = train_step.build_plain_pytorch(config)
    difference, first_loss = first_step_check()
    assert difference <= train_step.LOSS_CHECK_TOLERANCE
    assert 0.0 < first_loss < 10.0


def test_the_check_fails_when_a_term_differs():
    reference = {k: 0.5 for k in train_step.REFERENCE_LOSS_TERMS}
    found = dict(reference, dcor_pixels=0.5 + 10 * train_step.LOSS_CHECK_TOLERANCE)
    with pytest.raises(AssertionError, match="dcor_pixels"):
        train_step.compare_terms(found, reference)
    with pytest.raises(AssertionError, match="missing"):
        train_step.compare_terms({"loss": 0.5}, reference)


def test_plain_pytorch_loss_terms_match_on_random_tensors():
    # The torch restatement against the library, away from a real step: a
    # batch where some dimensions sit under the variance margin.
    torch = pytest.importorskip("torch", reason="torch is in requirements-dev.txt")
    import numpy as np

    rng = np.random.default_rng(1)
    z = rng.normal(size=(16, 32)).astype("float32")
    z[:, :8] *= 0.1
    z_aug = (z + 0.5 * rng.normal(size=z.shape)).astype("float32")
    pixels = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    plain = train_step.torch_mvmr_loss(torch.from_numpy(z), torch.from_numpy(z_aug),
                                       torch.from_numpy(pixels).permute(0, 3, 1, 2))
    config = tiny("digits")
    ours = train_step.library_loss_terms(z, z_aug, pixels, config)
    assert train_step.compare_terms({k: float(v) for k, v in plain.items()}, ours) <= 1e-4


def test_summary_calls_a_win_only_outside_the_spread():
    def result(implementation, seconds):
        return {"config": "digits", "implementation": implementation, "step_seconds": seconds,
                "first_loss": 1.0, "loss_check_max_abs_difference": 0.0, "warmup_s": 1.0,
                "load_averages": [1.0] * len(seconds)}

    repetitions = [[result("pytorch", [1.0, 1.0, 1.0, 1.0]),
                    result("jax", [2.0, 2.1, 1.9, 2.0]),
                    result("torch", [0.8, 1.3, 0.9, 1.2])]]
    rows = {r["implementation"]: r for r in train_step.summarise(repetitions, "pytorch")}
    assert rows["jax"]["verdict"].startswith("slower")
    assert rows["jax"]["ratio_median"] == pytest.approx(2.0)
    assert rows["torch"]["verdict"] == "within noise"
    assert rows["pytorch"]["verdict"] == "reference"


@pytest.mark.parametrize("config_name", train_step.DINO_CONFIG_NAMES)
def test_dino_keras_loss_at_step_1_equals_dino_loss(config_name):
    config = train_step.benchmark_config(config_name, batch_size=4)
    config.backbone_width = 12 if config_name == "dino_digits_vit" else 4
    config.num_local_crops = 2
    if config_name == "mokd_digits":
        config.mokd.out_dim = 64
        config.mokd.second.backbone_width = 12
    else:
        config.dino.out_dim = 64
    _, first_step_check, _ = train_step.keras_step_function(config, jit_compile="auto")
    difference, first_loss = first_step_check()
    assert difference <= train_step.LOSS_CHECK_TOLERANCE
    # MOKD's is the sum of both models' four terms; its T-Heads' logits are
    # not L2-normalised, so their first cross-entropies are large.
    assert 0.0 < first_loss < (200.0 if config_name == "mokd_digits" else 20.0)
    # Their ratios divide by keras-jax: plain PyTorch has no DINO step.
    assert train_step.config_reference(config_name, "pytorch") == "jax"
    assert train_step.config_reference("digits", "pytorch") == "pytorch"


def test_the_mokd_table_divides_by_the_sum_of_both_dino_steps():
    def row(config, implementation, seconds):
        return {"config": config, "implementation": implementation, "step_seconds": seconds}

    rows = [row("mokd_digits", "jax", [0.5, 0.6, 0.7]), row("dino_digits", "jax", [0.2]),
            row("dino_digits_vit", "jax", [0.1, 0.2, 0.3]), row("mokd_digits", "torch", [1.0])]
    table = train_step.mokd_against_dino_table(rows).splitlines()
    assert len(table) == 3  # torch lacks its DINO rows
    assert table[2].split("|")[2:6] == [" 600 ", " 200 ", " 200 ", " 1.50x "]
    assert train_step.mokd_against_dino_table(rows[:1]) == ""
