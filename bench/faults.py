"""Soak test of resumption: SIGKILL a small digits run at random instants.

    KERAS_BACKEND=jax python bench/faults.py [--kills=20] [--epochs=6] [--seed=0]

Runs a small digits training (width 8, one block per stage, pixels only,
4 steps of 32 images per epoch, the online probe on) once without
interruption, then again in another workdir, killing it with SIGKILL
`--kills` times and rerunning the same training after each kill. Every
save instant sleeps `MVMR_SAVE_DELAY_S` (0.25 s by default here) so that
random kills often land inside a save; the child prints each save instant
it reaches, which tells where each kill landed. A few kills land during
start-up (data, model, restore); the rest at a uniformly random time in
the epoch that is running.

Checks, after the killed run finishes: `history.json` has every epoch
exactly once, TensorBoard holds each epoch's step once, and the encoder
equals the uninterrupted run's (largest weight and feature differences
printed). Exits non-zero if a check fails.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def soak_config(epochs):
    from mvmr_keras.configs import digits

    config = digits.get_config()
    config.backbone_width = 8
    config.backbone_depths = (1, 1, 1, 1)
    config.projector = "64-64"
    config.representations = "pixels"
    config.batch_size = 32
    config.steps_per_epoch = 4
    config.epochs = epochs
    config.warmup_epochs = 1
    config.evaluation.knn_every_n_epochs = 0
    config.evaluation.after_training = ""
    return config


def child(workdir, epochs):
    """One training session that reports its progress on stdout."""
    import keras

    from mvmr_keras import training
    from mvmr_keras import workdir as workdir_lib

    delay = float(os.environ.get(workdir_lib.FAULT_DELAY_ENV) or 0)

    def report(name):
        print(f"POINT {name}", flush=True)
        if delay:
            time.sleep(delay)

    workdir_lib.fault_point = report

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            print(f"EPOCH {epoch}", flush=True)

    training.train(soak_config(epochs), workdir, verbose=0, log=lambda m: print(m, flush=True),
                   callbacks=[Progress()])
    print("DONE", flush=True)


def _start(workdir, epochs, env):
    return subprocess.Popen(
        [sys.executable, __file__, "--child", workdir, f"--epochs={epochs}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT,
    )


class _Lines:
    """Reads a child's stdout in a thread; remembers the last save instant."""

    def __init__(self, process):
        self.lines, self.started = [], threading.Event()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process):
        for line in process.stdout:
            self.lines.append(line.strip())
            if line.startswith("EPOCH"):
                self.started.set()

    def last_point(self):
        for line in reversed(self.lines):
            if line.startswith(("POINT", "EPOCH")):
                return line
        return "start-up"


def run_to_end(workdir, epochs, env):
    start = time.time()
    process = _start(workdir, epochs, env)
    lines = _Lines(process)
    process.wait()
    lines.thread.join()
    if process.returncode != 0 or "DONE" not in lines.lines:
        raise SystemExit(f"run in {workdir} failed: {lines.lines[-5:]}")
    first_epoch = next(i for i, line in enumerate(lines.lines) if line.startswith("EPOCH"))
    return time.time() - start, lines.lines, first_epoch


def tensorboard_steps(workdir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for root, _, files in os.walk(os.path.join(workdir, "tensorboard")):
        for name in sorted(files):
            for event in EventFileLoader(os.path.join(root, name)).Load():
                steps += [event.step for v in event.summary.value if v.tag == "epoch_loss"]
    return sorted(steps)


def compare_encoders(a, b):
    import keras
    import numpy as np

    import mvmr_keras  # noqa: F401
    from mvmr_keras import data

    ea, eb = keras.saving.load_model(a), keras.saving.load_model(b)
    weights = max(float(np.max(np.abs(x - y))) if x.size else 0.0
                  for x, y in zip(ea.get_weights(), eb.get_weights()))
    images = data.load_digits("test")[0][:256].astype("float32")
    fa, fb = ea.predict(images, verbose=0), eb.predict(images, verbose=0)
    features = float(np.max(np.abs(fa - fb)))
    scale = float(np.max(np.abs(fa)))
    return weights, features, features / scale


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default=None)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--startup_kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save_delay", type=float, default=0.25)
    parser.add_argument("--keep", action="store_true", help="keep the workdirs")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    rng = random.Random(args.seed)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3",
               MVMR_SAVE_DELAY_S=str(args.save_delay))
    root = tempfile.mkdtemp(prefix="mvmr-faults-")
    reference, killed = os.path.join(root, "reference"), os.path.join(root, "killed")
    seconds, lines, _ = run_to_end(reference, args.epochs, env)
    epoch_times = [i for i, line in enumerate(lines) if line.startswith("EPOCH")]
    print(f"uninterrupted run: {seconds:.1f}s for {args.epochs} epochs")
    # Start-up (imports, data, model, probe, compilation) and one epoch, timed.
    t0 = time.time()
    process = _start(os.path.join(root, "timing"), 2, env)
    reader = _Lines(process)
    reader.started.wait()
    startup = time.time() - t0
    while not any(line == "EPOCH 1" for line in reader.lines) and process.poll() is None:
        time.sleep(0.05)
    epoch_seconds = time.time() - t0 - startup
    process.kill()
    process.wait()
    print(f"start-up {startup:.1f}s, one epoch (with its save) {epoch_seconds:.1f}s")
    del epoch_times

    where = []
    sessions = 0
    for k in range(args.kills):
        process = _start(killed, args.epochs, env)
        sessions += 1
        reader = _Lines(process)
        if k < args.startup_kills:
            time.sleep(rng.uniform(0.5, startup))
        else:
            if not reader.started.wait(timeout=600):
                raise SystemExit("a session never started an epoch")
            time.sleep(rng.uniform(0, epoch_seconds))
        if process.poll() is not None:  # finished before the kill
            reader.thread.join()
            where.append("finished")
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        reader.thread.join()
        where.append(reader.last_point())
        done = 0
        state_dir = os.path.join(killed, "checkpoints")
        if os.path.isdir(state_dir):
            from mvmr_keras import workdir as workdir_lib

            done = workdir_lib.EpochCheckpoint(killed, log=lambda m: None).completed_on_disk()
        print(f"kill {k + 1:2d}: after '{where[-1]}', {done} epochs committed", flush=True)
    if where and where[-1] != "finished":
        run_to_end(killed, args.epochs, env)
        sessions += 1

    history = json.load(open(os.path.join(killed, "history.json")))
    lengths = {name: len(values) for name, values in history.items()}
    complete = all(n == args.epochs for n in lengths.values()) and None not in history["loss"]
    steps = tensorboard_steps(killed)
    weights, features, relative = compare_encoders(
        os.path.join(reference, "encoder.keras"), os.path.join(killed, "encoder.keras"))
    inside = [w for w in where if w.startswith("POINT") and w != "POINT tensorboard_written"]
    import keras

    print(f"backend {keras.backend.backend()}: {len([w for w in where if w != 'finished'])} kills, "
          f"{len(inside)} inside a save (after one save instant, before the last), "
          f"{sessions} sessions")
    print(f"history: every epoch once: {complete} ({lengths['loss']} loss entries)")
    print(f"TensorBoard epoch_loss steps: {steps} (duplicates: {len(steps) - len(set(steps))})")
    print(f"encoder vs uninterrupted: max |weight difference| {weights:.3g}, "
          f"max |feature difference| {features:.3g} (relative {relative:.3g})")
    ok = complete and steps == list(range(args.epochs)) and relative <= 1e-4
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"workdirs kept in {root}")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
