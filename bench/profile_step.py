"""Where a train step's time goes, from each engine's own profiler.

    python bench/profile_step.py --implementations tensorflow,jax,torch,pytorch

For each implementation (the Keras backends and the plain-PyTorch reference
of `bench/train_step.py`, on the same batch and config), in its own process:
a few warm-up steps, then `--steps` steps under the engine's profiler
(`tf.profiler.experimental`, `jax.profiler.trace`, `torch.profiler`). It
prints the ops with the most self time and a summary by kind:

    convolution   forward and both backward convolutions
    layout copy   copies, transposes and permutes (NHWC <-> NCHW)
    matmul        the projector's dense layers and dCor's Gram matrices
    elementwise   everything else: BatchNorm (unfused in Keras's torch
                  backend), activations, the loss, the optimiser update

Shares are of the summed self time of the ops (on a multi-threaded engine
this can exceed the wall time). They stay meaningful on a loaded machine;
the absolute times do not, which is what bench/train_step.py is for.
Results: docs/benchmarks.md, "Where the time goes".
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
IMPLEMENTATIONS = ("tensorflow", "jax", "torch", "pytorch")
KINDS = ("convolution", "layout copy", "matmul", "elementwise")
RESULT_PREFIX = "PROFILE_RESULT "


def op_kind(name):
    """The kind of an op, from its engine-specific name (module docstring)."""
    lowered = name.lower()
    if re.search(r"conv(?!ert)", lowered):  # not XLA's dtype `convert`
        return "convolution"
    if any(word in lowered for word in ("copy", "transpose", "permute", "contiguous")):
        return "layout copy"
    if any(word in lowered for word in ("matmul", "aten::mm", "aten::addmm", "aten::bmm",
                                        "dot", "gemm")):
        return "matmul"
    return "elementwise"


def summarise(op_self_us, steps):
    """{op: total self microseconds} -> (per-step kinds in ms, shares, top ops)."""
    total = sum(op_self_us.values()) or 1.0
    kinds = collections.Counter()
    for name, us in op_self_us.items():
        kinds[op_kind(name)] += us
    per_step = {k: kinds[k] / 1e3 / steps for k in KINDS}
    shares = {k: kinds[k] / total for k in KINDS}
    top = [(name, us / 1e3 / steps, us / total)
           for name, us in collections.Counter(op_self_us).most_common(12)]
    return per_step, shares, top


# ----------------------------------------------------------------------------
# One implementation, in a worker process
# ----------------------------------------------------------------------------


def _step(implementation, config):
    sys.path.insert(0, HERE)
    import train_step

    if implementation == "pytorch":
        return train_step.build_plain_pytorch(config)[0]
    return train_step.keras_step_function(config, jit_compile=implementation == "jax")[0]


def _profile_torch(step, steps):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return {e.key: e.self_cpu_time_total for e in prof.key_averages()}


def _profile_jax(step, steps, folder):
    import jax

    with jax.profiler.trace(folder, create_perfetto_trace=True):
        for _ in range(steps):
            step()
    trace_file = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)[0]
    events = json.load(gzip.open(trace_file))
    events = events["traceEvents"] if isinstance(events, dict) else events
    ops = collections.Counter()
    for event in events:
        name = event.get("name", "")
        # XLA's ops only: not the Python frames ("$file:line") nor the
        # executor's spans that contain the ops.
        if event.get("ph") != "X" or "dur" not in event or name.startswith("$"):
            continue
        if any(name.startswith(p) for p in ("ThunkExecutor", "PjitFunction", "SlinkyThreadPool",
                                              "CommonPjRtLoadedExecutable", "shard_args")):
            continue
        ops[name.split(".")[0]] += event["dur"]
    return ops


def _profile_tensorflow(step, steps, folder):
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    tf.profiler.experimental.start(folder)
    for _ in range(steps):
        step()
    tf.profiler.experimental.stop()
    xplane = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"TensorFlow's profiler gave no op stats: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    ops = collections.Counter()
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] for cell in row["c"])))
        if values["type"] != "IDLE":
            ops[values["type"]] += values["total_self_time"]
    return ops


def run_worker(args):
    sys.path.insert(0, HERE)
    import train_step

    train_step.pin_threads(args.implementation, args.threads or train_step.available_cores())
    config = train_step.benchmark_config(args.config)
    step = _step(args.implementation, config)
    for _ in range(args.warmup):
        step()
    with tempfile.TemporaryDirectory() as folder:
        if args.implementation in ("torch", "pytorch"):
            ops = _profile_torch(step, args.steps)
        elif args.implementation == "jax":
            ops = _profile_jax(step, args.steps, folder)
        else:
            ops = _profile_tensorflow(step, args.steps, folder)
    print(RESULT_PREFIX + json.dumps({"ops": ops, "steps": args.steps}), flush=True)


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------


def run_driver(args):
    rows = []
    for implementation in args.implementations.split(","):
        if implementation not in IMPLEMENTATIONS:
            sys.exit(f"error: unknown implementation {implementation!r}; "
                     f"available: {','.join(IMPLEMENTATIONS)}")
        backend = "torch" if implementation == "pytorch" else implementation
        print(f"profiling {implementation} ({args.config}, {args.steps} steps)...",
              file=sys.stderr, flush=True)
        found = subprocess.run(
            [sys.executable, __file__, "--worker", f"--implementation={implementation}",
             f"--config={args.config}", f"--steps={args.steps}", f"--warmup={args.warmup}",
             f"--threads={args.threads}"],
            env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3"),
            capture_output=True, text=True)
        lines = [l for l in found.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
        if found.returncode or not lines:
            sys.exit(f"error: the {implementation} worker failed:\n{found.stderr[-3000:]}")
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        per_step, shares, top = summarise(result["ops"], result["steps"])
        rows.append((implementation, per_step, shares))
        print(f"\n## {implementation}: top ops by self time (ms per step, share)")
        for name, ms, share in top:
            print(f"  {ms:9.1f}  {share:6.1%}  {op_kind(name):12s} {name[:80]}")
    print(f"\n## {args.config}: self time by kind, ms per step (share)")
    print("| implementation | " + " | ".join(KINDS) + " | total |")
    print("|---" * (len(KINDS) + 2) + "|")
    for implementation, per_step, shares in rows:
        cells = [f"{per_step[k]:.0f} ({shares[k]:.0%})" for k in KINDS]
        print(f"| {implementation} | " + " | ".join(cells) + f" | {sum(per_step.values()):.0f} |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--config", default="digits",
                        help="a bench/train_step.py config (digits, resnet18_96)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per engine (0: the cores available)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        run_worker(arguments)
    else:
        run_driver(arguments)
