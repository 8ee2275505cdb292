"""The evaluation protocols of spec section 8, end to end: `evaluate(...)`.

`evaluate.py` is a flag parser around `evaluate(mode, encoder_path,
config, workdir)`. Each mode loads the encoder (saved on any backend),
checks it against the config, computes frozen features once per view (the
images stream through `tf.data`, the features go to `workdir/features/`
and are read back by rows, so splits larger than memory work), trains what
the protocol trains, prints a results table and writes
`workdir/results_<mode>.json`. Accuracies are fractions in [0, 1].

| mode | what trains | on what | reports |
| --- | --- | --- | --- |
| linear | a linear layer, Adam + cosine | frozen features: original view + `augmented_passes` precomputed augmented passes | top1, top5 (+ ten_crop_top1/5) |
| knn | nothing | frozen features, weighted kNN (`knn_k`, `knn_temperature`) | top1, top5 |
| finetune | encoder + linear head | `label_fraction` of the train labels | top1, top5 |
| voc07 | a linear multi-label layer | frozen features, multi-hot labels | map (mean AP over classes) |
| embedding | t-SNE (UMAP if installed) | test features | embedding.png, projector/ |

Linear, kNN and VOC07 also run on two baselines (`baselines`, reported
under `results["baselines"]`): the raw pixels (resized, normalised,
flattened: `baselines.pixel_encoder`) and the config's model at random
initialisation (`training.build_model` under `config.seed`).

The settings come from the config's `evaluation` block (configs/digits.py).

Example:

>>> results = evaluate("linear", "runs/digits/encoder.keras",
...                    configs.digits.get_config(), "runs/digits")
>>> results["top1"]
0.95
"""

import json
import os
import time

import numpy as np

from mvmr_keras.evaluation import features as features_lib
from mvmr_keras.evaluation.feature_file import chunks
from mvmr_keras.evaluation.encoders import EvaluationError, check_image_size, load_encoder
from mvmr_keras.evaluation.finetune import finetune, label_subset
from mvmr_keras.evaluation.knn import knn_accuracy
from mvmr_keras.evaluation.linear import predict_logits, train_linear_classifier
from mvmr_keras.evaluation.metrics import mean_average_precision, top_k_accuracy

MODES = ("linear", "knn", "finetune", "voc07", "embedding")
# Frozen features of the views, on disk while a protocol runs (workdir/features/).
FEATURE_DIR = "features"
# What a score is compared with (`evaluate(..., baselines=...)`): the same
# protocol on the raw pixels and on the config's untrained encoder.
BASELINES = ("pixels", "random_init")
BASELINE_MODES = ("linear", "knn", "voc07")
# --mode=embedding: test images in the 2-D map (t-SNE is quadratic).
DEFAULT_EMBEDDING_POINTS = 2000
SETTINGS = (
    "batch_size", "epochs", "learning_rate", "augmented_passes", "crop_scale", "flip",
    "ten_crop", "standardize", "knn_k", "knn_temperature", "label_fraction",
    "finetune_epochs", "finetune_learning_rate", "finetune_batch_size",
)


def settings_of(config):
    """The config's `evaluation` block as a dict, checked."""
    block = config.get("evaluation") if hasattr(config, "get") else None
    if block is None:
        raise EvaluationError(
            "the config has no `evaluation` block; derive it from configs/digits.py"
        )
    settings = block.to_dict() if hasattr(block, "to_dict") else dict(block)
    missing = [s for s in SETTINGS if s not in settings]
    if missing:
        raise EvaluationError(f"the config's evaluation block lacks {', '.join(missing)}")
    for name in ("batch_size", "epochs", "finetune_epochs", "finetune_batch_size", "knn_k"):
        if settings[name] < 1:
            raise EvaluationError(f"evaluation.{name} must be >= 1; got {settings[name]}")
    if settings["augmented_passes"] < 0:
        raise EvaluationError(
            f"evaluation.augmented_passes must be >= 0; got {settings['augmented_passes']}"
        )
    if not 0 < settings["label_fraction"] <= 1:
        raise EvaluationError(
            f"evaluation.label_fraction must be in (0, 1]; got {settings['label_fraction']}"
        )
    return settings


def _load(config, split):
    from mvmr_keras import data as data_lib

    try:
        return data_lib.load(config.dataset, split, data_dir=config.get("data_dir") or None)
    except data_lib.DatasetNotFoundError as e:
        raise EvaluationError(str(e)) from None
    except ValueError as e:  # unknown dataset or split
        raise EvaluationError(str(e)) from None


def _check_labels(labels, config, split, multilabel):
    labels = np.asarray(labels)
    where = f"dataset {config.dataset!r} split {split!r}"
    if multilabel:
        if labels.ndim != 2:
            raise EvaluationError(
                f"voc07 mode needs multi-hot labels (N, C); {where} gives shape "
                f"{labels.shape[1:] or 'scalar'} labels"
            )
        return
    if labels.ndim != 1:
        raise EvaluationError(
            f"{where} has multi-label targets {labels.shape[1:]}; use --mode=voc07"
        )
    if np.all(labels < 0):
        raise EvaluationError(
            f"{where} has no labels (every label is {labels.min()}); set "
            f"--config.probe_train_split / --config.test_split to labelled splits"
        )
    if np.any(labels < 0):
        raise EvaluationError(f"{where} mixes labelled and unlabelled (label < 0) images")


def _first_labels(dataset, n=64):
    return np.stack([label for _, label in dataset.take(n).as_numpy_iterator()])


class _Run:
    save_heads = True  # baselines' runs keep no classifier files

    def __init__(self, mode, encoder_path, config, verbose, log, feature_dir):
        self.mode, self.config, self.verbose, self.log = mode, config, verbose, log
        # Every view's features go to a file here (read by rows: splits
        # larger than memory), deleted once the protocol is done.
        self.feature_dir = feature_dir
        self.feature_prefix = ""
        self.feature_files = []
        self.settings = settings_of(config)
        self.encoder = load_encoder(encoder_path)
        self.feature_dim = check_image_size(self.encoder, config.image_size)
        self.multilabel = mode == "voc07"
        self.splits = {}
        for role, split in (("train", config.probe_train_split), ("test", config.test_split)):
            ds = _load(config, split)
            _check_labels(_first_labels(ds), config, split, self.multilabel)
            self.splits[role] = (split, ds)

    def features(self, role, augment=None, ten_crop=False, what="original view"):
        split, ds = self.splits[role]
        start = time.time()
        path = os.path.join(self.feature_dir, f"{self.feature_prefix}{role}-"
                            f"{len(self.feature_files)}.f32")
        feats, labels = features_lib.compute_features(
            self.encoder, ds, self.config.image_size, self.settings["batch_size"],
            augment=augment, ten_crop=ten_crop, verbose=self.verbose,
            description=f"{role} split {split!r}, {what}", path=path,
        )
        self.feature_files.append(feats)
        _check_labels(labels, self.config, split, self.multilabel)
        _check_features(feats, role, split, self.log)
        self.log(f"  {len(feats)} x {feats.shape[1]} features of {role} split {split!r} "
                 f"({what}) in {time.time() - start:.1f}s")
        return feats, labels

    def release(self):
        """Deletes the feature files this run wrote."""
        for features in self.feature_files:
            features.delete()
        self.feature_files = []

    def augmentation(self, seed):
        s = self.settings
        return features_lib.eval_augmentation(
            self.config.image_size, tuple(s["crop_scale"]), s["flip"], seed=seed
        )


def _check_features(feats, role, split, log):
    """Non-finite features fail in one line; constant ones (a collapsed
    encoder, which scores at chance) are reported."""
    bad, low, high = 0, None, None
    for rows in chunks(feats):  # a FeatureFile on disk: a chunk at a time
        bad += int((~np.isfinite(rows)).sum())
        low = rows.min(axis=0) if low is None else np.minimum(low, rows.min(axis=0))
        high = rows.max(axis=0) if high is None else np.maximum(high, rows.max(axis=0))
    if bad:
        raise EvaluationError(
            f"the encoder's features of the {role} split {split!r} are non-finite "
            f"({bad} of {len(feats) * feats.shape[1]} values are NaN/inf): the encoder diverged"
        )
    if len(feats) > 1 and float(np.max(high - low)) <= 1e-6 * max(
            float(max(np.max(np.abs(low)), np.max(np.abs(high)))), 1.0):
        log(f"warning: the encoder's features of the {role} split {split!r} are the same "
            "for every image (a collapsed encoder); expect chance-level scores")


def _num_classes(*label_arrays):
    return int(max(np.max(labels) for labels in label_arrays)) + 1


def _linear(run, workdir):
    s = run.settings
    train, train_labels = run.features("train")
    views = [train]
    for p in range(s["augmented_passes"]):
        aug, aug_labels = run.features(
            "train", augment=run.augmentation(run.config.seed + p),
            what=f"augmented pass {p + 1}/{s['augmented_passes']}",
        )
        # The dataset is not shuffled, so pass p lines up with the original.
        assert np.array_equal(aug_labels, train_labels)
        views.append(aug)
    test, test_labels = run.features("test")
    num_classes = _num_classes(train_labels, test_labels)
    run.log(f"  training a linear classifier: {s['epochs']} epochs over {len(views)} view(s)")
    head = train_linear_classifier(
        views, train_labels, num_classes, epochs=s["epochs"],
        batch_size=s["batch_size"], learning_rate=s["learning_rate"],
        standardize=s["standardize"], seed=run.config.seed, verbose=2 if run.verbose else 0,
    )
    logits = predict_logits(head, test)
    results = {
        "top1": top_k_accuracy(logits, test_labels, 1),
        "top5": top_k_accuracy(logits, test_labels, 5),
        "num_classes": num_classes, "num_train": len(train), "num_test": len(test),
    }
    if run.save_heads:
        results["head"] = os.path.join(workdir, "linear_head.keras")
        head.save(results["head"])
    if s["ten_crop"]:
        crops, _ = run.features("test", ten_crop=True, what="ten crops, averaged")
        crop_logits = predict_logits(head, crops)
        results["ten_crop_top1"] = top_k_accuracy(crop_logits, test_labels, 1)
        results["ten_crop_top5"] = top_k_accuracy(crop_logits, test_labels, 5)
    return results


def _knn(run, workdir):
    s = run.settings
    train, train_labels = run.features("train")
    test, test_labels = run.features("test")
    # The bank is held in memory: evaluation.knn_bank_size caps it (0 = all)
    # with a fixed random subset of the train split.
    cap = int(s.get("knn_bank_size") or 0)
    bank, bank_labels = train, train_labels
    if cap and cap < len(train):
        chosen = np.sort(np.random.default_rng(run.config.seed).permutation(len(train))[:cap])
        bank, bank_labels = train[chosen], train_labels[chosen]
        run.log(f"  kNN bank: {cap} of the {len(train)} train features (evaluation.knn_bank_size)")
    results = knn_accuracy(np.asarray(bank), bank_labels, test, test_labels, k=s["knn_k"],
                           temperature=s["knn_temperature"],
                           num_classes=_num_classes(train_labels, test_labels))
    results.update(num_train=len(train), num_test=len(test), k=s["knn_k"],
                   temperature=s["knn_temperature"], bank_size=len(bank))
    return results


def _finetune(run, workdir):
    from mvmr_keras import data as data_lib

    s, config = run.settings, run.config
    try:
        images, labels = data_lib.load_numpy(
            config.dataset, config.probe_train_split, data_dir=config.get("data_dir") or None
        )
    except data_lib.DatasetNotFoundError as e:
        raise EvaluationError(str(e)) from None
    _check_labels(labels, config, config.probe_train_split, False)
    if images.shape[1:3] != (config.image_size, config.image_size):
        import tensorflow as tf

        images = tf.image.resize(images, (config.image_size, config.image_size)).numpy()
    subset = label_subset(labels, s["label_fraction"], seed=config.seed)
    test_ds = run.splits["test"][1]
    test_labels = np.concatenate([y for _, y in test_ds.batch(1024).as_numpy_iterator()])
    num_classes = _num_classes(labels, test_labels)
    run.log(f"  fine-tuning encoder + head on {len(subset)} labelled images "
            f"({s['label_fraction']:.0%} of {len(labels)}), {s['finetune_epochs']} epochs")
    model = finetune(
        run.encoder, images[subset], labels[subset], num_classes,
        epochs=s["finetune_epochs"], batch_size=s["finetune_batch_size"],
        learning_rate=s["finetune_learning_rate"], augment=run.augmentation(config.seed),
        seed=config.seed, verbose=2 if run.verbose else 0,
    )
    logits, test_labels = features_lib.compute_features(
        model, test_ds, config.image_size, s["batch_size"]
    )
    return {
        "top1": top_k_accuracy(logits, test_labels, 1),
        "top5": top_k_accuracy(logits, test_labels, 5),
        "label_fraction": s["label_fraction"], "num_labelled": int(len(subset)),
        "num_test": int(len(test_labels)),
    }


def _voc07(run, workdir):
    s = run.settings
    train, train_targets = run.features("train")
    test, test_targets = run.features("test")
    num_classes = train_targets.shape[1]
    run.log(f"  training a linear multi-label classifier over {num_classes} classes")
    head = train_linear_classifier(
        [train], train_targets, num_classes, epochs=s["epochs"], batch_size=s["batch_size"],
        learning_rate=s["learning_rate"], multilabel=True, standardize=s["standardize"],
        seed=run.config.seed, verbose=2 if run.verbose else 0,
    )
    if run.save_heads:
        head.save(os.path.join(workdir, "voc07_head.keras"))
    mean_ap, per_class = mean_average_precision(predict_logits(head, test), test_targets)
    return {
        "map": mean_ap,
        "per_class_ap": [None if np.isnan(a) else float(a) for a in per_class],
        "num_train": len(train), "num_test": len(test),
    }


def _embedding(run, workdir):
    from mvmr_keras import plots
    from mvmr_keras.evaluation import embedding

    features, labels = run.features("test")
    labels = labels.reshape(-1) if labels.ndim == 1 else np.argmax(labels, axis=1)
    count = int(run.settings.get("embedding_points", DEFAULT_EMBEDDING_POINTS))
    if count < len(features):  # a fixed random subset, every class in proportion
        chosen = np.sort(np.random.default_rng(run.config.seed).permutation(len(features))[:count])
        features, labels = features[chosen], labels[chosen]
    features = np.asarray(features)
    run.log(f"  2-D map of {len(features)} test features")
    points, method = embedding.embed_2d(features, seed=run.config.seed)
    image = plots.plot_embedding(
        points, labels, os.path.join(workdir, "embedding.png"),
        title=f"{run.config.dataset} {run.config.test_split}: {method.upper()} of "
              f"{len(features)} encoder features",
    )
    projector = embedding.write_projector(features, labels, os.path.join(workdir, "projector"))
    return {"method": method, "num_points": len(features), "image": image,
            "projector": projector}


_PROTOCOLS = {"linear": _linear, "knn": _knn, "finetune": _finetune, "voc07": _voc07,
              "embedding": _embedding}


def _baseline_encoder(name, config):
    import keras

    if name == "pixels":
        from mvmr_keras.evaluation.baselines import pixel_encoder

        return pixel_encoder(config.image_size, config.get("normalization", "imagenet"))
    from mvmr_keras import training  # the trainer imports this module: import late

    keras.utils.set_random_seed(config.seed)
    return training.build_model(config).encoder


def _baseline_scores(mode, run, workdir, names):
    """`{name: headline scores}` of the protocol on each baseline encoder."""
    import copy

    found = {}
    for name in names:
        baseline = copy.copy(run)
        baseline.encoder = _baseline_encoder(name, run.config)
        baseline.save_heads = False
        baseline.feature_prefix, baseline.feature_files = f"{name}-", []
        run.log(f"  baseline: {name}")
        try:
            scores = _PROTOCOLS[mode](baseline, workdir)
        finally:
            baseline.release()
        found[name] = {k: scores[k] for k in _HEADLINE if k in scores}
    return found


_HEADLINE = ("top1", "top5", "ten_crop_top1", "ten_crop_top5", "map")


def results_table(results):
    """A small Markdown table of a results dict's headline numbers."""
    rows = [("mode", results["mode"]), ("dataset", results["dataset"]),
            ("backend", results["backend"])]
    for key in _HEADLINE:
        if key in results:
            rows.append((key, f"{100 * results[key]:.2f}%"))
    for name, scores in results.get("baselines", {}).items():
        rows += [(f"{key}, {name}", f"{100 * value:.2f}%") for key, value in scores.items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


OUTPUTS = {"linear": ("linear_head.keras",), "voc07": ("voc07_head.keras",)}


def _encoder_tag(encoder_path):
    """'' for `encoder.keras`; '_vit' for MOKD's `encoder_vit.keras`, so the
    second model's results sit beside the first's instead of replacing them."""
    stem = os.path.splitext(os.path.basename(encoder_path))[0]
    return "_" + stem[len("encoder_"):] if stem.startswith("encoder_") else ""


def evaluate(mode, encoder_path, config, workdir=None, verbose=1, log=print, overwrite=False,
             baselines=BASELINES):
    """Runs one protocol (module docstring) and writes
    `workdir/results_<mode>.json` (default workdir: the encoder's folder;
    `results_<mode>_<name>.json` for an `encoder_<name>.keras`).

    For the modes in `BASELINE_MODES`, the same protocol also runs on each
    of `baselines` (names in `BASELINES`; empty for none).

    Existing results of the mode there (e.g. those a training run wrote,
    which its `results.json` quotes) are never replaced unless `overwrite`:
    without it, `EvaluationError` says to pass `--overwrite` or another
    `--workdir`. Raises `EvaluationError` with a one-line reason for bad
    input.
    """
    import keras

    if mode not in MODES:
        raise EvaluationError(f"unknown mode {mode!r}; available: {list(MODES)}")
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise EvaluationError(f"unknown baseline {unknown[0]!r}; available: {list(BASELINES)}")
    workdir = workdir or os.path.dirname(os.path.abspath(encoder_path))
    results_name = f"results_{mode}{_encoder_tag(encoder_path)}.json"
    existing = [os.path.join(workdir, name) for name in (results_name,) +
                OUTPUTS.get(mode, ()) if os.path.exists(os.path.join(workdir, name))]
    if existing and not overwrite:
        raise EvaluationError(
            f"{existing[0]} already exists; pass --overwrite to replace it or "
            "--workdir=DIR to write the results elsewhere"
        )
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise EvaluationError(f"cannot create the output folder {workdir} ({e.strerror})") from None
    start = time.time()
    log(f"Evaluating {encoder_path} ({mode}) on {config.dataset} "
        f"[{keras.backend.backend()}]")
    feature_dir = os.path.join(workdir, FEATURE_DIR)
    run = _Run(mode, encoder_path, config, verbose, log, feature_dir)
    try:
        results = {
            "mode": mode,
            "dataset": config.dataset,
            "train_split": config.probe_train_split,
            "test_split": config.test_split,
            "encoder": os.path.abspath(encoder_path),
            "backend": keras.backend.backend(),
            "feature_dim": run.feature_dim,
            **_PROTOCOLS[mode](run, workdir),
            "settings": run.settings,
        }
        run.release()
        if mode in BASELINE_MODES and baselines:
            results["baselines"] = _baseline_scores(mode, run, workdir, list(baselines))
    finally:
        run.release()
        if os.path.isdir(feature_dir) and not os.listdir(feature_dir):
            os.rmdir(feature_dir)
    results["seconds"] = round(time.time() - start, 1)
    path = os.path.join(workdir, results_name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True, default=_jsonable)
    os.replace(tmp, path)
    log(results_table(results))
    log(f"Results written to {path}")
    return results


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
