"""Soak test of resumption: SIGKILL a small digits run at random instants.

    KERAS_BACKEND=jax python bench/faults.py [--kills=20] [--epochs=10] [--seed=0]

Runs a small digits training (width 8, one block per stage, pixels only,
4 steps of 32 images per epoch, the online probe on) once without
interruption, then again in another workdir, killing it with SIGKILL
`--kills` times and rerunning the same training after each kill. Every
save instant sleeps `MVMR_SAVE_DELAY_S` (0.25 s by default here) and the
child prints each one it reaches (`POINT name`) and each epoch it starts
(`EPOCH n`), which tells where each kill landed.

Kills are timed from the child's observed progress, never from the clock
alone (start-up and compilation vary with the machine's load). Each kill
is one of four kinds, shuffled:

- `start-up`: at a random time within the uninterrupted run's start-up;
- `first epoch`: once the session has started its first epoch, at a
  random time within the uninterrupted run's first epoch (compilation);
- `timed`: once the session has reached its first save instant, at a
  random time within one steady epoch (training or the next save);
- `save point`: at a save instant drawn at random, while the child sleeps
  there (after that instant's write, before the next one's).

Near the end of the run (one epoch left) only kinds that cannot finish it
are drawn, so all `--kills` kills happen. The table printed at the end
says where each kill landed.

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# The save instants of mvmr_keras/workdir.py, in the order a save reaches them.
SAVE_POINTS = ("staging_created", "weights_saved", "part_saved", "staging_complete", "renamed",
               "pointer_moved", "history_published", "tensorboard_written")


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

        def on_train_end(self, logs=None):
            print("TRAINED", flush=True)  # what follows: encoder.keras, scores, results.json

    training.train(soak_config(epochs), workdir, verbose=0, log=lambda m: print(m, flush=True),
                   callbacks=[Progress()])
    print("DONE", flush=True)


def _start(workdir, epochs, env):
    return subprocess.Popen(
        [sys.executable, __file__, "--child", workdir, f"--epochs={epochs}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT,
    )


class _Lines:
    """Reads a child's stdout in a thread, with each line's arrival time;
    `wait_for(test)` blocks until a line passes `test` or the child ends."""

    def __init__(self, process):
        self.process = process
        self.start = time.time()
        self.lines, self.times = [], []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.strip())
                self.times.append(time.time())
                self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    closed = False

    def wait_for(self, test, timeout=1200):
        """Index of the first line passing `test` (None if the child ended first)."""
        deadline = time.time() + timeout
        with self.changed:
            checked = 0
            while True:
                for i in range(checked, len(self.lines)):
                    if test(self.lines[i]):
                        return i
                checked = len(self.lines)
                if self.closed or time.time() > deadline:
                    return None
                self.changed.wait(timeout=1.0)

    def where(self):
        """Where the child was when it stopped: its last progress line."""
        for line in reversed(self.lines):
            if line.startswith("POINT"):
                return line.split()[1]
            if line.startswith("EPOCH"):
                return f"epoch {int(line.split()[1]) + 1}"
            if line in ("TRAINED", "DONE"):
                return {"TRAINED": "after training (final files)", "DONE": "done"}[line]
        return "start-up"


def run_to_end(workdir, epochs, env):
    process = _start(workdir, epochs, env)
    lines = _Lines(process)
    process.wait()
    lines.thread.join()
    if process.returncode != 0 or "DONE" not in lines.lines:
        raise SystemExit(f"run in {workdir} failed: {lines.lines[-5:]}")
    return lines


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


def committed_epochs(workdir):
    from mvmr_keras import workdir as workdir_lib

    return workdir_lib.EpochCheckpoint(workdir, log=lambda m: None).completed_on_disk()


def _epoch_line(line):
    return line.startswith("EPOCH")


def _point_line(line):
    return line.startswith("POINT")


def kill_once(process, reader, kind, rng, timing, delay):
    """Waits for the progress `kind` needs, then SIGKILLs; returns a note on
    the trigger (None if the child finished first)."""
    if kind == "start-up":
        time.sleep(rng.uniform(0.5, timing["startup"]))
        note = "random time in start-up"
    elif kind == "first epoch":
        if reader.wait_for(_epoch_line) is None:
            return None
        time.sleep(rng.uniform(0, timing["first_epoch"]))
        note = "random time after the session's first EPOCH"
    elif kind == "timed":
        if reader.wait_for(_point_line) is None:
            return None
        time.sleep(rng.uniform(0, timing["epoch"]))
        note = "random time after the session's first save instant"
    else:
        point = kind.split(":", 1)[1]
        if reader.wait_for(lambda line: line == f"POINT {point}") is None:
            return None
        time.sleep(rng.uniform(0.1, 0.7) * delay)  # while the child sleeps there
        note = f"at save point {point}"
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGKILL)
    return note


def plan_kills(rng, kills, startup_kills):
    """Kinds of kill, shuffled: a few in start-up, about 40% at a save
    point, the rest timed in an epoch."""
    save = round(0.4 * kills)
    first = max(1, round(0.15 * kills))
    kinds = (["start-up"] * startup_kills
             + [f"save point:{rng.choice(SAVE_POINTS)}" for _ in range(save)]
             + ["first epoch"] * first)
    kinds += ["timed"] * (kills - len(kinds))
    rng.shuffle(kinds)
    return kinds[:kills]


# Kinds that cannot complete the last epoch (its save commits at "renamed").
_NO_PROGRESS = ["start-up"] + [f"save point:{p}" for p in SAVE_POINTS[:4]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default=None)
    parser.add_argument("--epochs", type=int, default=10)
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
    began = time.time()
    lines = run_to_end(reference, args.epochs, env)
    starts = [t for line, t in zip(lines.lines, lines.times) if _epoch_line(line)]
    trained = lines.times[lines.lines.index("TRAINED")]
    epochs = [b - a for a, b in zip(starts, starts[1:] + [trained])]
    timing = {"startup": starts[0] - lines.start, "first_epoch": epochs[0],
              "epoch": statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]}
    print(f"uninterrupted run: {time.time() - began:.1f}s for {args.epochs} epochs; start-up "
          f"{timing['startup']:.1f}s, first epoch (with compilation and its save) "
          f"{timing['first_epoch']:.1f}s, later epochs (with their save) {timing['epoch']:.1f}s "
          "(median)", flush=True)

    table = []
    sessions = 0
    plan = plan_kills(rng, args.kills, args.startup_kills)
    for k, kind in enumerate(plan):
        before = committed_epochs(killed)
        # Near the end, keep the run from finishing before the last kill (a
        # timed kill can commit two epochs, the others one).
        if (before >= args.epochs - 1 and kind not in _NO_PROGRESS
                or before >= args.epochs - 2 and kind == "timed"):
            kind = rng.choice(_NO_PROGRESS)
        process = _start(killed, args.epochs, env)
        sessions += 1
        reader = _Lines(process)
        note = kill_once(process, reader, kind, rng, timing, args.save_delay)
        process.wait()
        reader.thread.join()
        if note is None:
            table.append((kind, "finished before the kill", before, committed_epochs(killed)))
            print(f"kill {k + 1:2d} ({kind}): the run finished first", flush=True)
            break
        after = committed_epochs(killed)
        table.append((kind, reader.where(), before, after))
        print(f"kill {k + 1:2d} ({kind}): landed at '{reader.where()}'; epochs committed "
              f"{before} -> {after}", flush=True)
    if not table or table[-1][1] != "finished before the kill":
        run_to_end(killed, args.epochs, env)
        sessions += 1

    history = json.load(open(os.path.join(killed, "history.json")))
    lengths = {name: len(values) for name, values in history.items()}
    complete = (all(n == args.epochs for n in lengths.values())
                and all(v is not None for v in history["loss"]))
    reference_history = json.load(open(os.path.join(reference, "history.json")))
    history_gap = max(abs(a - b) for a, b in zip(history["loss"], reference_history["loss"]))
    steps = tensorboard_steps(killed)
    weights, features, relative = compare_encoders(
        os.path.join(reference, "encoder.keras"), os.path.join(killed, "encoder.keras"))
    import keras

    kills = [row for row in table if row[1] != "finished before the kill"]
    print()
    print("| # | kill kind | landed at (last progress line) | epochs committed before -> after |")
    print("|---|---|---|---|")
    for i, (kind, where, before, after) in enumerate(table, 1):
        print(f"| {i} | {kind} | {where} | {before} -> {after} |")
    inside = [row for row in kills if row[1] in SAVE_POINTS[:-1]]
    print()
    print(f"backend {keras.backend.backend()}: {len(kills)} kills ({len(inside)} inside a save, "
          f"between two of its writes), {sessions} sessions, {time.time() - began:.0f}s in all")
    print(f"history: every epoch once: {complete} ({lengths['loss']} loss entries); largest "
          f"|loss difference| from the uninterrupted run's history {history_gap:.3g}")
    print(f"TensorBoard epoch_loss steps: {steps} (duplicates: {len(steps) - len(set(steps))})")
    print(f"encoder vs uninterrupted: max |weight difference| {weights:.3g}, "
          f"max |feature difference| {features:.3g} (relative {relative:.3g})")
    ok = (complete and steps == list(range(args.epochs)) and relative <= 1e-4
          and len(kills) == args.kills)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"workdirs kept in {root}")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
