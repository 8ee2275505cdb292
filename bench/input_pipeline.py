"""View pairs per second of `mvmr_keras.data.views`, per policy and per core count.

What is measured: the throughput of the whole input pipeline (shuffle,
batch, original view, augmented view, prefetch) on 96 px uint8 images held
in memory (random pixels, the size of STL10's), batch 256, iterated in
Python with nothing consuming the batches. Each row takes `--warmup`
untimed batches (tracing) and then times `--batches` batches.

Rows: every policy with tf.data's default thread pool, and the `custom`
policy with the tf.data private thread pool limited to 1 and to 2 threads
(`tf.data.Options().threading.private_threadpool_size`, intra-op
parallelism capped to match), which is what "cores used" means here.

The `dino` row is `mvmr_keras.data.multicrop_views` (DINO's multi-crop):
its figure is crop sets per second, one set being an image's 2 global and
N local crops (default 2 x 96 px + 6 x 48 px, `--dino-crops`), not view
pairs.

Usage (from the repository root):

    python bench/input_pipeline.py
    python bench/input_pipeline.py --policies custom --batches 10
    python bench/input_pipeline.py --policies dino --batches 5
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pairs_per_second(policy, images, batch_size, warmup, batches, threads=None):
    import tensorflow as tf

    from mvmr_keras import data

    ds = data.views(images, policy, image_size=images.shape[1], batch_size=batch_size, seed=0)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = threads
        ds = ds.with_options(options)
    iterator = iter(ds.repeat())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def crop_sets_per_second(images, batch_size, warmup, batches, global_size, local_size, num_local):
    from mvmr_keras import data

    ds = data.multicrop_views(images, global_size, local_size, num_local, batch_size=batch_size, seed=0)
    iterator = iter(ds.repeat())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--policies", default="custom,cifar,cifar20,randaugment,autoaugment,dino")
    parser.add_argument("--dino-crops", default="96,48,6",
                        help="global size, local size, local crops per image of the dino row")
    args = parser.parse_args()

    import numpy as np

    images = np.random.default_rng(0).integers(
        0, 256, (args.images, args.image_size, args.image_size, 3), dtype=np.uint8
    )
    print(f"{os.cpu_count()} CPU cores; load average before: {os.getloadavg()}")
    print("| policy | threads | view pairs/s (dino: crop sets/s) |")
    print("| --- | --- | ---: |")
    policies = args.policies.split(",")
    rows = [(p, None) for p in policies if p != "dino"]
    if "custom" in policies:
        rows += [("custom", 1), ("custom", 2)]
    for policy, threads in rows:
        rate = pairs_per_second(policy, images, args.batch_size, args.warmup, args.batches, threads)
        print(f"| {policy} | {threads or 'default'} | {rate:.0f} |", flush=True)
    if "dino" in policies:
        global_size, local_size, num_local = (int(v) for v in args.dino_crops.split(","))
        rate = crop_sets_per_second(images, args.batch_size, args.warmup, args.batches,
                                    global_size, local_size, num_local)
        label = f"dino (2 x {global_size} + {num_local} x {local_size})"
        print(f"| {label} | default | {rate:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
