"""MOKD against each of its two models trained alone with DINO.

    python bench/mokd_vs_dino.py --workdir=W [--dataset=digits] [--seeds=0,1,2]
        [--epochs=15] [--runs=mokd,dino_resnet,dino_vit]

For every seed: `configs/mokd_<dataset>.py` (the ResNet and the ViT
together), and `configs/dino_<dataset>.py` with each of the same two models
alone (`resnet`, `vit`), all for `--epochs` epochs at the same batch and on
MOKD's views (DINO alone gets its 2 local crops too): the same budget of
epochs, images and crops. `--dataset` is `digits` (the bundled default, 15
epochs unless `--epochs` says otherwise) or `fashion_mnist` (the configs' CPU
scale, 10 epochs). Each run is `train.py` in a process of its
own, in `W/<run>_seed<N>` (an existing finished run is read, not rerun; an
unfinished one resumes). Prints, per model, the teacher kNN top-1 (k = 20)
and the linear probe top-1 of MOKD and of DINO alone (mean and standard
deviation over the seeds), beside the model's random init and the raw
pixels, and whether MOKD's mean gain exceeds the larger of the two
spreads. Also writes `W/summary.json`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {
    "mokd": "configs/mokd_{dataset}.py",
    "dino_resnet": "configs/dino_{dataset}.py:resnet",
    "dino_vit": "configs/dino_{dataset}.py:vit",
}
# The data sets with both configs, and the epochs each run takes by default.
DATASETS = {"digits": 15, "fashion_mnist": 10}
# DINO alone sees MOKD's views: its local crops too (CAFS needs them; the
# DINO digits config itself has none).
SAME_VIEWS = ("num_local_crops", "local_crop_size", "local_crop_scale", "global_crop_scale")
SCORES = ("knn_top1", "linear_probe_top1")


def run(name, seed, epochs, workdir, dataset="digits"):
    """Trains one run (or reads it when finished); its results.json."""
    path = os.path.join(workdir, f"{name}_seed{seed}")
    results = os.path.join(path, "results.json")
    if not os.path.exists(results):
        started = time.time()
        config = os.path.join(REPO_ROOT, RUNS[name].format(dataset=dataset))
        command = [sys.executable, os.path.join(REPO_ROOT, "train.py"),
                   f"--config={config}", f"--workdir={path}",
                   f"--config.seed={seed}", f"--config.epochs={epochs}"]
        if name != "mokd":
            views = mokd_views(dataset)
            command += [f"--config.{field}={views[field]}" for field in SAME_VIEWS]
        with open(path + ".log", "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        if done.returncode:
            raise SystemExit(f"{name} seed {seed} failed (exit {done.returncode}); see {path}.log")
        print(f"  {name} seed {seed}: {time.time() - started:.0f} s", flush=True)
    with open(results) as f:
        return json.load(f)


def mokd_views(dataset="digits"):
    """The view fields of configs/mokd_<dataset>.py, as flag values."""
    sys.path.insert(0, REPO_ROOT)
    import importlib

    config = importlib.import_module(f"mvmr_keras.configs.mokd_{dataset}").get_config()
    return {field: (str(tuple(config[field])).replace(" ", "")
                    if isinstance(config[field], (tuple, list)) else config[field])
            for field in SAME_VIEWS}


def model_scores(name, results):
    """`{model: {score: value, random_init_<score>, pixels_<score>}}` of a run."""
    if name == "mokd":
        first = results["models"][0]
        return {first: results, **{m: results[m] for m in results["models"][1:]}}
    return {name.split("_", 1)[1]: results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every run (default: 15 on digits, 10 on fashion_mnist)")
    parser.add_argument("--runs", default=",".join(RUNS))
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = DATASETS[args.dataset]
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [n for n in args.runs.split(",") if n]
    unknown = set(names) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; available: {list(RUNS)}")
    os.makedirs(args.workdir, exist_ok=True)
    # scores[model][method][score] = [one value per seed]
    scores, baselines = {}, {}
    for seed in seeds:
        for name in names:
            method = "mokd" if name == "mokd" else "dino"
            for model, found in model_scores(name, run(name, seed, args.epochs, args.workdir,
                                                       args.dataset)).items():
                for score in SCORES:
                    scores.setdefault(model, {}).setdefault(method, {}).setdefault(
                        score, []).append(found[score])
                    for prefix in ("random_init", "pixels"):
                        baselines.setdefault(model, {}).setdefault(
                            f"{prefix}_{score}", []).append(found[f"{prefix}_{score}"])
    print(f"\n{args.dataset}, {args.epochs} epochs, seeds {seeds} (mean +- std over seeds)")
    print(f"{'model':8} {'score':18} {'MOKD':>15} {'DINO alone':>15} {'gain':>7} "
          f"{'> spread':>9} {'random init':>12} {'pixels':>7}")
    summary = {"dataset": args.dataset, "epochs": args.epochs, "seeds": seeds, "models": {}}
    for model in scores:
        for score in SCORES:
            row = scores[model]
            mokd, dino = row.get("mokd", {}).get(score), row.get("dino", {}).get(score)
            cells, gain, beyond = [], None, None
            for values in (mokd, dino):
                cells.append("-" if not values else
                             f"{np.mean(values):.3f}+-{np.std(values):.3f}")
            if mokd and dino:
                gain = float(np.mean(mokd) - np.mean(dino))
                beyond = bool(abs(gain) > max(np.std(mokd), np.std(dino)))
            random_init = np.mean(baselines[model][f"random_init_{score}"])
            pixels = np.mean(baselines[model][f"pixels_{score}"])
            print(f"{model:8} {score:18} {cells[0]:>15} {cells[1]:>15} "
                  f"{'-' if gain is None else f'{gain:+.3f}':>7} "
                  f"{'-' if beyond is None else ('yes' if beyond else 'no'):>9} "
                  f"{random_init:12.3f} {pixels:7.3f}")
            summary["models"].setdefault(model, {})[score] = {
                "mokd": mokd, "dino": dino, "gain": gain, "gain_exceeds_spread": beyond,
                "random_init": float(random_init), "pixels": float(pixels)}
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
