"""bench/mokd_vs_dino.py trains each run from its data set's configs, on
MOKD's views, and summarises the seeds per model (training is faked here:
the runs' results.json are written by a stand-in for train.py)."""

import importlib.util
import json
import os

import numpy as np
import pytest

from conftest import REPO_ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "mokd_vs_dino", os.path.join(REPO_ROOT, "bench", "mokd_vs_dino.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_results(name, seed):
    """A results.json as train.py writes it; scores depend on run and seed."""
    def scores(model_offset):
        value = 0.5 + model_offset + 0.01 * seed
        return {"knn_top1": value, "linear_probe_top1": value + 0.1,
                "random_init_knn_top1": 0.3, "random_init_linear_probe_top1": 0.4,
                "pixels_knn_top1": 0.86, "pixels_linear_probe_top1": 0.83}
    if name == "mokd":  # the first model at the top level, the second under its name
        return {**scores(0.1), "models": ["resnet", "vit"], "vit": scores(0.2)}
    return scores(0.0 if name == "dino_resnet" else 0.05)


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_each_run_trains_its_data_sets_config_on_mokds_views(dataset, tmp_path, monkeypatch):
    bench = load_bench()
    commands = []

    def fake_train(command, **kwargs):
        commands.append(command)
        workdir = next(a for a in command if a.startswith("--workdir=")).split("=", 1)[1]
        name, seed = os.path.basename(workdir).rsplit("_seed", 1)
        os.makedirs(workdir)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(fake_results(name, int(seed)), f)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(bench.subprocess, "run", fake_train)
    bench.main([f"--workdir={tmp_path}", f"--dataset={dataset}", "--seeds=0,1"])

    assert len(commands) == 6  # 3 runs x 2 seeds
    epochs = bench.DATASETS[dataset]
    views = bench.mokd_views(dataset)
    for command in commands:
        config = next(a for a in command if a.startswith("--config=")).split("=", 1)[1]
        name = os.path.basename(next(a for a in command if a.startswith("--workdir=")))
        method = "mokd" if name.startswith("mokd") else "dino"
        assert os.path.basename(config).startswith(f"{method}_{dataset}.py")
        assert f"--config.epochs={epochs}" in command
        if method == "dino":  # DINO alone on MOKD's views
            assert f"--config.num_local_crops={views['num_local_crops']}" in command
            assert config.endswith(":" + name.split("_")[1])
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["dataset"] == dataset and summary["epochs"] == epochs
    vit = summary["models"]["vit"]["knn_top1"]
    assert vit["mokd"] == pytest.approx([0.7, 0.71]) and vit["dino"] == pytest.approx([0.55, 0.56])
    assert vit["gain"] == pytest.approx(0.15) and vit["gain_exceeds_spread"] is True
    resnet = summary["models"]["resnet"]["linear_probe_top1"]
    assert resnet["gain"] == pytest.approx(np.mean([0.7, 0.71]) - np.mean([0.6, 0.61]))
    assert resnet["random_init"] == pytest.approx(0.4) and resnet["pixels"] == pytest.approx(0.83)

    # A second call reads the finished runs instead of training them again.
    bench.main([f"--workdir={tmp_path}", f"--dataset={dataset}", "--seeds=0,1"])
    assert len(commands) == 6


def test_the_views_are_the_data_sets_mokd_views():
    bench = load_bench()
    assert bench.mokd_views("digits")["local_crop_size"] == 16
    fashion = bench.mokd_views("fashion_mnist")
    assert fashion["num_local_crops"] == 2 and fashion["global_crop_scale"] == "(0.4,1.0)"


def test_unknown_data_set_and_bad_epochs_are_refused(tmp_path, capsys):
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main([f"--workdir={tmp_path}", "--dataset=cifar10"])
    assert "invalid choice: 'cifar10'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([f"--workdir={tmp_path}", "--epochs=0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err
