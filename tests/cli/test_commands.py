"""The command-line programs: shipped config names, the console commands
declared in pyproject.toml, and the requirements files it reads."""

import os
import re
import subprocess
import sys
import tomllib


from conftest import BACKEND, REPO_ROOT
from mvmr_keras import cli, configs


def _pyproject():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_a_shipped_config_name_becomes_its_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["mvmr-train", "--config=digits", "--config.epochs=1", "--workdir=w"]
    cli.use_shipped_config_names(argv)
    assert argv == ["mvmr-train", f"--config={configs.path('digits')}", "--config.epochs=1",
                    "--workdir=w"]


def test_a_file_here_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").write_text("def get_config(): ...\n")
    for value in ("digits", "nosuch", "configs/digits.py"):
        argv = [f"--config={value}"]
        cli.use_shipped_config_names(argv)
        assert argv == [f"--config={value}"]


def test_the_console_commands_name_functions_that_exist():
    import importlib

    scripts = _pyproject()["project"]["scripts"]
    assert set(scripts) == {"mvmr-train", "mvmr-evaluate", "mvmr-export"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_the_extras_read_the_requirements_files():
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    extras = dynamic["optional-dependencies"]
    assert set(extras) == {"jax", "torch", "dev"}
    for spec in [dynamic["dependencies"], *extras.values()]:
        for name in spec["file"]:
            with open(os.path.join(REPO_ROOT, name)) as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            # setuptools reads plain pinned requirements only (no -r lines).
            assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", ln) for ln in lines)


def test_the_train_command_runs_from_another_directory_with_a_shipped_name(tmp_path):
    # What `mvmr-train` runs; --helpshort stops after parsing, so this
    # checks the module, the default config and the flags, not training.
    env = dict(os.environ, KERAS_BACKEND=BACKEND,
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "mvmr_keras.cli.train", "--config=digits", "--helpshort"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "--workdir" in result.stdout and configs.path("digits") in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "mvmr_keras.cli.train", "--config=nosuch", "--workdir=w"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1].startswith("error: ")
