"""Time of a distillation epoch with the live teacher vs with cached embeddings.

The teacher is a ViT-B/16-sized CLIP vision tower (12 layers, width 768,
patch 16, 224 px, projection 512) built from config with random weights and
loaded through `CLIPTeacher` from a preset saved to a temporary directory;
the student is a ResNet50 MV-MR model. Both runs train on the same random
images with the same seed; the first epoch (compilation) is reported apart
and the timed epochs follow it. The one-off cost of filling the cache is
reported too.

    source /work/venv/bin/activate
    KERAS_BACKEND=tensorflow python bench/distillation.py --images=64 --json=out.json

Goal (issue 6): the cached epoch at least 3x faster than the live one.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from gpu import gpu_name  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def student(args, teacher):
    from mvmr_keras import MVMR, ImageEncoder, ResNetBackbone

    keras.utils.set_random_seed(0)
    backbone = ResNetBackbone.from_name(
        "resnet50",
        small_kernel_stem=args.small_kernel_stem,
        image_shape=(args.image_size, args.image_size, 3),
    )
    model = MVMR(ImageEncoder(backbone), projector=args.projector,
                 teacher=teacher, teacher_weight=1.0)
    model.build((None, args.image_size, args.image_size, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    return model


def tf_data_views(args, images, embeddings, mode):
    import tensorflow as tf

    from mvmr_keras import data

    if mode == "live":
        source = images
    else:
        source = tf.data.Dataset.from_tensor_slices(
            (images, np.zeros(args.images, "int64"), embeddings))
    return data.views(source, "custom", image_size=args.image_size,
                      batch_size=args.batch_size, seed=0).repeat()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--timed_epochs", type=int, default=1)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--projector", default="8192-8192-8192")
    parser.add_argument("--small_kernel_stem", type=int, default=1,
                        help="1: the STL10 config's 3x3 stride-1 stem; 0: the 7x7 one")
    parser.add_argument("--feed", choices=("tf.data", "numpy", "auto"), default="auto",
                        help="tf.data: views from mvmr_keras.data.views (needs "
                             "TensorFlow); numpy: the same fixed views every epoch, "
                             "from memory (for machines without TensorFlow, like "
                             "a GPU box with only JAX or PyTorch); auto: tf.data "
                             "if TensorFlow imports")
    parser.add_argument("--mixed_precision", type=int, default=0,
                        help="1: mixed_float16 for student and live teacher (the "
                             "reference configs train this way)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if args.feed == "auto":
        try:
            import tensorflow  # noqa: F401
            args.feed = "tf.data"
        except ImportError:
            args.feed = "numpy"
    from mvmr_keras.teachers import CLIPTeacher
    from mvmr_keras.teachers.cache import EmbeddingCache, cache_key
    from mvmr_keras.teachers.testing import VIT_B16, save_clip_preset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.image_size, args.image_size, 3),
                          dtype=np.uint8)
    steps = args.images // args.batch_size
    result = {
        "backend": keras.backend.backend(),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
                   f"{', GPU ' + gpu_name() if gpu_name() else ''}",
        "args": vars(args),
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        preset = save_clip_preset(os.path.join(tmp, "clip_b16"), image_size=224, **VIT_B16)
        teacher = CLIPTeacher(preset, image_size=224)
        result["teacher_params"] = int(sum(np.prod(w.shape) for w in teacher.weights))

        key = cache_key(preset, 224, "bilinear", "random", "train", args.image_size)
        cache = EmbeddingCache(os.path.join(tmp, "cache"), key, chunk_size=args.images)
        start = time.perf_counter()
        cache.precompute(teacher, images, batch_size=args.batch_size, verbose=0)
        result["cache_fill_seconds"] = time.perf_counter() - start
        embeddings = cache.load()

        for mode in ("live", "cached"):
            model = student(args, teacher if mode == "live" else None)
            timer = EpochTimer()
            if args.feed == "tf.data":
                fit_inputs = dict(x=tf_data_views(args, images, embeddings, mode),
                                  steps_per_epoch=steps)
            else:
                # Original view and a flipped copy as the augmented view;
                # the third element is the cached embedding, as in training.
                fit_inputs = dict(x=images.astype("float32"),
                                  y=images[:, :, ::-1].astype("float32"),
                                  sample_weight=embeddings if mode == "cached" else None,
                                  batch_size=args.batch_size, shuffle=False)
            model.fit(epochs=1 + args.timed_epochs, verbose=0, callbacks=[timer],
                      **fit_inputs)
            result[mode] = {
                "first_epoch_seconds": timer.seconds[0],
                "epoch_seconds": timer.seconds[1:],
                "median_epoch_seconds": float(np.median(timer.seconds[1:])),
            }
            print(f"{mode}: first epoch {timer.seconds[0]:.1f} s, timed epochs "
                  f"{[round(s, 1) for s in timer.seconds[1:]]} s", flush=True)
            del model
    result["load_average_end"] = load_average()
    result["speedup"] = (result["live"]["median_epoch_seconds"]
                         / result["cached"]["median_epoch_seconds"])
    result["goal_met"] = result["speedup"] >= 3.0
    print(f"{result['backend']} backend, {result['machine']}, feed {args.feed}, "
          f"{'3x3 stride-1' if args.small_kernel_stem else '7x7 stride-2'} student stem, "
          f"{keras.mixed_precision.global_policy().name}")
    print(f"| mode | epoch ({args.images} images, batch {args.batch_size}) s | first epoch s |")
    print("| --- | ---: | ---: |")
    for mode in ("live", "cached"):
        r = result[mode]
        print(f"| {mode} | {r['median_epoch_seconds']:.1f} | {r['first_epoch_seconds']:.1f} |")
    print(f"cache fill (one-off): {result['cache_fill_seconds']:.1f} s; speed-up "
          f"{result['speedup']:.2f}x (goal >= 3x: {'met' if result['goal_met'] else 'not met'}); "
          f"load average {result['load_average_start']} -> {result['load_average_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
