"""Tuning aids: a learning-rate range test and the largest batch that fits.

    python -m mvmr_keras.tune --config=configs/digits.py --workdir=W --find=learning_rate
    python -m mvmr_keras.tune --config=configs/stl10.py --workdir=W --find=batch_size

`--find=learning_rate` trains the config's model from scratch for
`--num_steps` steps (default 200) while the learning rate grows
exponentially from `--min_lr` to `--max_lr`, stopping early once the
smoothed loss exceeds 4x its best. It suggests the learning rate at the
steepest descent of the smoothed loss against log(lr) before its lowest
point (PyTorch Lightning's `lr_find`, behind the official code's
`--auto_lr`, takes the steepest descent anywhere),
writes `W/lr_find.json` and `W/lr_find.png` (loss against learning rate,
log scale, the suggestion marked) and prints `--config.learning_rate=...`.

`--find=batch_size` finds the largest batch that fits in memory with a
margin (`--memory_margin`, default 20%), on synthetic images of the
config's size (so it needs no data):

- on an accelerator it doubles the batch, then bisects, until two
  training steps raise the engine's out-of-memory error;
- on a CPU, where running out of memory kills the process instead, it
  measures the peak resident memory of two training steps at a few small
  batches (each in a fresh process), fits `peak = a + b * batch` and
  extrapolates to the available RAM; then it runs two steps at the answer,
  again in a fresh process, to check it. The training data's in-memory
  cache and shuffle buffer are counted when the dataset can be opened.

It prints `--config.batch_size=...` and how to scale the learning rate,
and writes `W/batch_size.json`.

Example (library):

>>> found = find_learning_rate(config, "runs/lr", num_steps=100)
>>> found["suggestion"]
0.00063...
"""

import json
import math
import os
import sys
import tempfile

import numpy as np

FIND_MODES = ("learning_rate", "batch_size")


class TuneError(ValueError):
    """A tuning run that cannot go on; the message says why."""


# --------------------------------------------------------------------------
# Learning-rate range test.


def smooth(losses, beta=0.9):
    """Bias-corrected exponential moving average (as in Adam's moments)."""
    out, average = [], 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return np.asarray(out)


def suggest_learning_rate(learning_rates, losses, beta=0.9):
    """The learning rate where the smoothed loss falls fastest against
    log(lr), looked for between the first tenth of the sweep (the moving
    average's start-up) and the lowest smoothed loss: past that point the
    loss only rises, and its noise there (a lucky batch just before
    divergence) must not be taken for a descent. A tenth of the lowest
    loss's learning rate when the loss never falls (but not below the sweep's
    start). Returns
    `(suggestion, smoothed_losses)`."""
    learning_rates = np.asarray(learning_rates, "float64")
    smoothed = smooth(losses, beta)
    if len(smoothed) < 4:
        raise TuneError(f"the range test ran only {len(smoothed)} steps; it needs >= 4 "
                        "(raise --num_steps or lower --min_lr)")
    start = max(1, len(smoothed) // 10)
    lowest = int(np.argmin(smoothed))
    if lowest - start < 2:  # never inside the sweep's range: its start at the lowest
        return float(max(learning_rates[lowest] / 10, learning_rates[0])), smoothed
    slopes = np.gradient(smoothed[start:lowest + 1], np.log(learning_rates[start:lowest + 1]))
    return float(learning_rates[start + int(np.argmin(slopes[:-1]))]), smoothed


def _training_batches(config):
    """The config's training views, repeated, as NumPy `(original, augmented)`."""
    from mvmr_keras import data as data_lib
    from mvmr_keras import training

    images, num_images = training.load_train_stream(config)
    if config.batch_size > num_images:
        raise TuneError(f"batch_size {config.batch_size} is larger than the {num_images} "
                        "training images")
    dataset = data_lib.views(images, config.policy, image_size=config.image_size,
                             batch_size=config.batch_size, seed=config.seed,
                             crop_scale=tuple(config.crop_scale))
    return dataset.repeat().as_numpy_iterator()


def _check_config(config):
    from mvmr_keras import training
    from mvmr_keras.teachers import distillation

    training.validate_config(config)
    if distillation.enabled(config):
        raise TuneError("tuning does not run the teacher; set --config.teacher.preset= "
                        "(the tuned values carry over to distillation)")


def find_learning_rate(config, workdir, min_lr=1e-7, max_lr=1.0, num_steps=200,
                       stop_factor=4.0, log=print):
    """Runs the range test and writes `lr_find.json` and `lr_find.png` in
    `workdir`. Returns the JSON's content."""
    import keras

    from mvmr_keras import training

    if not 0 < min_lr < max_lr:
        raise TuneError(f"need 0 < min_lr < max_lr; got {min_lr} and {max_lr}")
    if num_steps < 4:
        raise TuneError(f"num_steps must be >= 4; got {num_steps}")
    _check_config(config)
    plot_module = _pyplot()  # fail before training, not after
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.mixed_precision or "float32")
    try:
        keras.utils.set_random_seed(config.seed)
        batches = _training_batches(config)
        model = training.build_model(config)
        optimizer_class = {"adam": keras.optimizers.Adam,
                           "adamw": keras.optimizers.AdamW}[config.optimizer]
        # lr(t) = min_lr * (max_lr / min_lr) ** (t / (num_steps - 1))
        schedule = keras.optimizers.schedules.ExponentialDecay(
            min_lr, decay_steps=num_steps - 1, decay_rate=max_lr / min_lr)
        model.compile(optimizer=optimizer_class(learning_rate=schedule,
                                                weight_decay=config.weight_decay or None))
        learning_rates, losses, stopped = [], [], "swept the whole range"
        for step in range(num_steps):
            original, augmented = next(batches)[:2]
            logs = model.train_on_batch(original, augmented, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                stopped = f"loss not finite at lr {float(schedule(step)):.3g}"
                break
            learning_rates.append(float(schedule(step)))
            losses.append(loss)
            best = float(np.min(smooth(losses)))
            if step >= 10 and smooth(losses)[-1] > stop_factor * best:
                stopped = f"smoothed loss above {stop_factor:g}x its best"
                break
            if step % 20 == 0:
                log(f"  step {step:4d}  lr {learning_rates[-1]:.3g}  loss {loss:.4f}")
    finally:
        keras.config.set_dtype_policy(previous_policy)
    suggestion, smoothed = suggest_learning_rate(learning_rates, losses)
    result = {
        "suggestion": suggestion,
        "min_loss_learning_rate": learning_rates[int(np.argmin(smoothed))],
        "swept": [learning_rates[0], learning_rates[-1]],
        "requested_range": [min_lr, max_lr],
        "steps": len(losses),
        "stopped": stopped,
        "batch_size": config.batch_size,
        "backend": keras.backend.backend(),
        "learning_rates": learning_rates,
        "losses": losses,
        "smoothed_losses": [float(s) for s in smoothed],
    }
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "lr_find.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot_learning_rates(result, os.path.join(workdir, "lr_find.png"), plot_module)
    return result


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TuneError("the learning-rate plot needs matplotlib: pip install matplotlib") \
            from None
    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    return plt


def plot_learning_rates(result, path, plt=None, size=(6.4, 4.0), dpi=100):
    """Loss (raw and smoothed) against learning rate on a log axis, the
    suggestion marked; a `size * dpi` pixel PNG."""
    plt = plt or _pyplot()
    figure, axes = plt.subplots(figsize=size, dpi=dpi)
    axes.plot(result["learning_rates"], result["losses"], color="0.75", lw=1, label="loss")
    axes.plot(result["learning_rates"], result["smoothed_losses"], color="C0", lw=2,
              label="smoothed")
    axes.axvline(result["suggestion"], color="C3", ls="--",
                 label=f"suggestion {result['suggestion']:.2g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("MV-MR loss")
    axes.set_title(f"Learning-rate range test, batch {result['batch_size']}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


# --------------------------------------------------------------------------
# Batch size.


def accelerator_name():
    """The backend's accelerator (`"gpu"`, `"tpu"`), or `None` on a CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        platform = jax.devices()[0].platform
        return None if platform == "cpu" else platform
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else None
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        if tf.config.list_logical_devices(kind):
            return kind.lower()
    return None


def is_out_of_memory(error):
    """Whether an exception is an engine's out-of-memory error (TensorFlow's
    ResourceExhaustedError, XLA's RESOURCE_EXHAUSTED, torch's
    OutOfMemoryError)."""
    text = f"{type(error).__name__}: {error}".lower()
    return any(s in text for s in ("resourceexhausted", "resource_exhausted",
                                   "outofmemory", "out of memory", "oom when allocating"))


def train_steps(config, batch_size, steps=2):
    """Builds the config's model and runs `steps` training steps on random
    images of the config's size; the memory probe."""
    import keras

    from mvmr_keras import training

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.mixed_precision or "float32")
    model = None
    try:
        model = training.build_model(config)
        model.compile(optimizer=training.build_optimizer(config, steps_per_epoch=100))
        rng = np.random.default_rng(0)
        shape = (batch_size, config.image_size, config.image_size, 3)
        for _ in range(steps):
            original = rng.uniform(0, 255, shape).astype("float32")
            augmented = rng.uniform(0, 255, shape).astype("float32")
            model.train_on_batch(original, augmented)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        del model
        keras.backend.clear_session()


def search_batch_size(fits, start=2, max_batch_size=1 << 16):
    """The largest batch in [start, max_batch_size] for which `fits(batch)`
    is true, assuming it is monotone: doubling, then bisection to within 8
    (or exactly below 16)."""
    if not fits(start):
        raise TuneError(f"even batch {start} runs out of memory")
    good, bad = start, None
    while bad is None and good < max_batch_size:
        trial = min(2 * good, max_batch_size)
        if fits(trial):
            good = trial
        else:
            bad = trial
    while bad is not None and bad - good > max(1, good // 8 if good >= 16 else 1):
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def with_margin(batch_size, margin):
    """`batch_size * (1 - margin)`, rounded down to a multiple of 8 when >= 8."""
    batch = int(batch_size * (1 - margin))
    return max(2, batch - batch % 8 if batch >= 8 else batch)


def extrapolate_batch_size(batches, peaks, available_bytes, margin=0.2):
    """Fits `peak = intercept + slope * batch` (least squares) and returns
    `(batch, intercept, slope)`: the largest batch whose predicted peak is
    within `available_bytes * (1 - margin)`, rounded down to a multiple of 8."""
    batches, peaks = np.asarray(batches, "float64"), np.asarray(peaks, "float64")
    if len(batches) < 2:
        raise TuneError("need peak memory at >= 2 batch sizes to extrapolate")
    slope, intercept = np.polyfit(batches, peaks, 1)
    if slope <= 0:
        raise TuneError(
            f"peak memory did not grow with the batch ({', '.join(f'{b:g}' for b in batches)}); "
            "probe larger batches (--probe_batches)")
    usable = available_bytes * (1 - margin)
    if usable <= intercept + 2 * slope:
        raise TuneError(f"{available_bytes / 2**30:.1f} GiB available is not enough for batch 2 "
                        f"(predicted {(intercept + 2 * slope) / 2**30:.1f} GiB)")
    batch = int((usable - intercept) // slope)
    return (batch - batch % 8 if batch >= 8 else batch), float(intercept), float(slope)


def available_memory_bytes():
    """MemAvailable, or the cgroup's remaining limit when that is lower."""
    available = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read())
        except OSError:
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            available = min(available or 1 << 62, int(limit) - usage)
    if available is None:
        raise TuneError("cannot read the available memory from /proc/meminfo")
    return available


def _probe_child(config_json, batch_size, steps, result_path):
    import resource

    from ml_collections import config_dict

    config = config_dict.ConfigDict(json.loads(config_json))
    train_steps(config, batch_size, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    with open(result_path, "w") as f:
        json.dump({"peak_rss": peak}, f)


def peak_rss_of_training(config, batch_size, steps=2):
    """Peak resident memory (bytes) of a fresh process that builds the
    model and trains `steps` steps at `batch_size`; `None` if the process
    died (e.g. killed for memory)."""
    import multiprocessing

    config_json = json.dumps(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "peak.json")
        process = multiprocessing.get_context("spawn").Process(
            target=_probe_child, args=(config_json, batch_size, steps, result_path))
        process.start()
        process.join()
        if process.exitcode != 0 or not os.path.exists(result_path):
            return None
        with open(result_path) as f:
            return json.load(f)["peak_rss"]


def input_pipeline_bytes(config, log=print):
    """Memory the training input pipeline holds: its in-memory cache and
    shuffle buffer of uint8 images (`mvmr_keras.data.views`); 0 when the
    training data cannot be opened."""
    from mvmr_keras import training
    from mvmr_keras.data import views as views_lib

    try:
        dataset, num_images = training.load_train_stream(config)
    except Exception as e:  # an unprepared dataset: the finder needs no data
        log(f"  training data not available ({str(e).splitlines()[0][:120]}); its cache and "
            "shuffle buffer are not counted")
        return 0
    spec = dataset.element_spec[0] if isinstance(dataset.element_spec, tuple) \
        else dataset.element_spec
    per_image = spec.shape.num_elements() if spec.shape.is_fully_defined() else \
        config.image_size * config.image_size * 3
    total = num_images * per_image
    cache = total if total <= views_lib.DEFAULT_CACHE_BYTES else 0
    shuffle = total if num_images <= 200_000 else 10_000 * per_image
    return cache + shuffle


def learning_rate_note(config, batch_size):
    """How to scale the config's learning rate to a new batch size."""
    if batch_size == config.batch_size:
        return f"the batch size is the config's; keep --config.learning_rate={config.learning_rate:g}"
    ratio = batch_size / config.batch_size
    return (f"the config's learning rate {config.learning_rate:g} is for batch "
            f"{config.batch_size}; scaled linearly to batch {batch_size}: "
            f"--config.learning_rate={config.learning_rate * ratio:.3g} (square-root scaling, "
            f"often better with Adam: {config.learning_rate * math.sqrt(ratio):.3g}); or run "
            "--find=learning_rate at the new batch")


def find_batch_size(config, workdir, memory_margin=0.2, probe_batches=(4, 8, 16),
                    verify_steps=2, max_batch_size=1 << 16, log=print):
    """The largest batch that fits with `memory_margin` to spare (module
    docstring); writes `batch_size.json` in `workdir` and returns it."""
    import keras

    if not 0 <= memory_margin < 1:
        raise TuneError(f"memory_margin must be in [0, 1); got {memory_margin}")
    _check_config(config)
    device = accelerator_name()
    result = {"device": device or "cpu", "backend": keras.backend.backend(),
              "memory_margin": memory_margin}
    if device is not None:
        def fits(batch):
            try:
                train_steps(config, batch, steps=2)
                log(f"  batch {batch}: fits")
                return True
            except Exception as e:  # only the engine's out-of-memory error means "no"
                if not is_out_of_memory(e):
                    raise
                log(f"  batch {batch}: out of memory")
                _free_accelerator_memory()
                return False

        largest = search_batch_size(fits, start=2, max_batch_size=max_batch_size)
        batch = with_margin(largest, memory_margin)
        result.update({"largest_fitting": largest, "batch_size": batch})
    else:
        probe_batches = sorted(int(b) for b in probe_batches)
        peaks = []
        for b in probe_batches:
            peak = peak_rss_of_training(config, b)
            if peak is None:
                raise TuneError(f"the probe at batch {b} died (out of memory?); use smaller "
                                "--probe_batches")
            log(f"  batch {b}: peak RSS {peak / 2**30:.2f} GiB")
            peaks.append(peak)
        available = available_memory_bytes()
        pipeline = input_pipeline_bytes(config, log)
        batch, intercept, slope = extrapolate_batch_size(
            probe_batches, peaks, available - pipeline, memory_margin)
        batch = min(batch, max_batch_size)
        log(f"  fit: peak = {intercept / 2**30:.2f} GiB + {slope / 2**20:.1f} MiB x batch; "
            f"{available / 2**30:.1f} GiB available, {pipeline / 2**30:.1f} GiB for the input "
            f"pipeline, margin {memory_margin:.0%}")
        result.update({
            "probe_batches": probe_batches, "probe_peak_rss": peaks,
            "fit_intercept_bytes": intercept, "fit_slope_bytes_per_image": slope,
            "available_bytes": available, "input_pipeline_bytes": pipeline,
            "batch_size": batch, "predicted_peak_rss": intercept + slope * batch,
        })
        if verify_steps:
            log(f"  checking {verify_steps} training steps at batch {batch} ...")
            peak = peak_rss_of_training(config, batch, steps=verify_steps)
            if peak is None:
                raise TuneError(f"{verify_steps} steps at batch {batch} died (out of memory?); "
                                "raise --memory_margin")
            log(f"  batch {batch}: peak RSS {peak / 2**30:.2f} GiB (predicted "
                f"{result['predicted_peak_rss'] / 2**30:.2f} GiB)")
            result["verified_peak_rss"] = peak
    result["note"] = learning_rate_note(config, result["batch_size"])
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "batch_size.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def _free_accelerator_memory():
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()
    if keras.backend.backend() == "torch":
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------
# Command line.


def main(argv):
    from mvmr_keras import cli, training

    config = cli.config_value(_CONFIG, argv)
    try:
        if _FIND.value == "learning_rate":
            found = find_learning_rate(config, _WORKDIR.value, _MIN_LR.value, _MAX_LR.value,
                                       _NUM_STEPS.value)
            print(f"Swept lr {found['swept'][0]:.3g} to {found['swept'][1]:.3g} in "
                  f"{found['steps']} steps ({found['stopped']}); lowest smoothed loss at "
                  f"{found['min_loss_learning_rate']:.3g}. Plot: "
                  f"{os.path.join(_WORKDIR.value, 'lr_find.png')}")
            print(f"--config.learning_rate={found['suggestion']:.3g}")
        else:
            found = find_batch_size(config, _WORKDIR.value, _MEMORY_MARGIN.value,
                                    [int(b) for b in _PROBE_BATCHES.value])
            print(f"--config.batch_size={found['batch_size']}")
            print(f"Learning rate: {found['note']}")
    except (TuneError, training.ConfigError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags

    from mvmr_keras import cli

    _CONFIG = cli.define_config_flag()
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _FIND = flags.DEFINE_enum("find", None, list(FIND_MODES), "What to find.", required=True)
    _MIN_LR = flags.DEFINE_float("min_lr", 1e-7, "Range test: first learning rate.")
    _MAX_LR = flags.DEFINE_float("max_lr", 1.0, "Range test: last learning rate.")
    _NUM_STEPS = flags.DEFINE_integer("num_steps", 200, "Range test: training steps.")
    _MEMORY_MARGIN = flags.DEFINE_float("memory_margin", 0.2, "Batch size: memory to spare.")
    _PROBE_BATCHES = flags.DEFINE_list("probe_batches", ["4", "8", "16"],
                                       "Batch size on a CPU: batches whose peak memory is fitted.")
    app.run(main, flags_parser=cli.parse_flags)
