"""Peak memory of linear evaluation against the size of the train split.

    python bench/evaluation_memory.py [--sizes=2000,20000] [--image_size=64]

Generates an image-folder dataset per size (`N` train images and a fixed
1,000 test images of 10 classes, PNG, `--image_size` px), saves the digits
config's untrained encoder at that size, and runs
`evaluate.py --mode=linear` on each in a fresh process under
`/usr/bin/time -v`. Prints a table of the peak resident memory per size,
and what the train images alone would take as float32 arrays in memory
(the growth a streaming evaluation must stay far below).
"""

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

TEST_IMAGES = 1000
CLASSES = 10


def make_folder(root, num_train, image_size, seed=0):
    """`root/{train,test}/class_<k>/<i>.png`: noise around a per-class
    colour, so the classes are learnable."""
    from PIL import Image

    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, (CLASSES, 3))
    for split, count in (("train", num_train), ("test", TEST_IMAGES)):
        for i in range(count):
            label = i % CLASSES
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            pixels = rng.normal(colours[label], 40, (image_size, image_size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
                os.path.join(folder, f"{i:06d}.png"))
    open(done, "w").close()
    return root


def config_overrides(root, image_size):
    return [f"--config.dataset=folder:{root}", "--config.probe_train_split=train",
            "--config.test_split=test", f"--config.image_size={image_size}"]


def save_encoder(path, image_size):
    if os.path.exists(path):
        return path
    code = (
        "import keras\n"
        "from mvmr_keras import training\n"
        "from mvmr_keras.configs import digits\n"
        f"config = digits.get_config(); config.image_size = {image_size}\n"
        "keras.utils.set_random_seed(0)\n"
        f"training.build_model(config).encoder.save({path!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT,
                   env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    return path


def peak_rss_mb(command, log_path):
    start = time.time()
    with open(log_path, "w") as log:
        result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ,
                                                                   PYTHONPATH=REPO_ROOT))
    text = open(log_path).read()
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log_path}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    top1 = re.search(r"\| top1 +\| ([\d.]+)%", text)
    return kb / 1024, time.time() - start, float(top1.group(1)) if top1 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--root", default="/tmp/mvmr_evaluation_memory")
    parser.add_argument("--extra", default="", help="more evaluate.py flags, comma-separated")
    args = parser.parse_args()
    import keras

    os.makedirs(args.root, exist_ok=True)
    encoder = save_encoder(os.path.join(args.root, f"encoder_{args.image_size}.keras"),
                           args.image_size)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        root = make_folder(os.path.join(args.root, f"data_{size}_{args.image_size}"), size,
                           args.image_size)
        workdir = os.path.join(args.root, f"eval_{size}")
        command = [sys.executable, "evaluate.py", "--mode=linear", f"--encoder={encoder}",
                   "--config=configs/digits.py", f"--workdir={workdir}", "--overwrite",
                   "--quiet", "--baselines=", *config_overrides(root, args.image_size),
                   *[e for e in args.extra.split(",") if e]]
        rss, seconds, top1 = peak_rss_mb(command, os.path.join(args.root, f"log_{size}.txt"))
        as_float32 = size * args.image_size ** 2 * 3 * 4 / 2 ** 20
        rows.append((size, rss, seconds, top1, as_float32))
        print(f"{size} images: peak RSS {rss:.0f} MB in {seconds:.0f} s", flush=True)
    print(f"\nLinear evaluation (evaluate.py --mode=linear, digits config's evaluation block, "
          f"{args.image_size} px, backend {keras.backend.backend()}, untrained encoder)\n")
    print("| train images | peak RSS (MB) | growth from the first (MB) | train images as "
          "float32 (MB) | seconds | top-1 |")
    print("|---|---|---|---|---|---|")
    for size, rss, seconds, top1, as_float32 in rows:
        print(f"| {size} | {rss:.0f} | {rss - rows[0][1]:+.0f} | {as_float32:.0f} | "
              f"{seconds:.0f} | {'' if top1 is None else f'{top1:.1f}%'} |")


if __name__ == "__main__":
    main()
