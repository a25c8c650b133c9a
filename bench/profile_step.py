"""Where a trainer step's time goes: TensorFlow op types by share of kernel time.

    python -m bench.profile_step --algo=dcgan --precision=auto

Runs `training.trainer.run` twice on `builtin:shapes` (32x32x3, one device):
first `--warmup_steps` steps to trace the step and fill the caches, then,
resumed from that run, `--steps` more under the TensorFlow profiler. It reads
the profile (the XSpace protobuf the profiler writes, no TensorBoard plugin
needed) and prints the op types that ran on TensorFlow's compute threads,
each with its share of their summed kernel time and its calls per step.

The shares are ratios inside one run, so they survive the noise of a shared
machine; the summed kernel time can exceed the wall time, since two ops run
at once on two inter-op threads. Host-side events (checkpoint restore and
save, tf.data) are listed apart.
"""

import argparse
import collections
import dataclasses
import glob
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=wrong-import-position
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=wrong-import-position

from bench import child  # pylint: disable=wrong-import-position
from bench import loops  # pylint: disable=wrong-import-position
from training import config as config_lib  # pylint: disable=wrong-import-position
from training import trainer  # pylint: disable=wrong-import-position


def _op_times(logdir):
  """{(thread kind, op type): [summed ms, calls]} from the profile under logdir."""
  paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
  if not paths:
    raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
  space = xplane_pb2.XSpace()
  with open(paths[0], "rb") as f:
    space.ParseFromString(f.read())
  times = collections.defaultdict(lambda: [0.0, 0])
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      kind = "compute" if line.name.startswith("tf_Compute") else "host"
      for event in line.events:
        name = names.get(event.metadata_id, "").strip()
        if ":" not in name:  # Op events are "op_name:OpType".
          continue
        entry = times[(kind, name.rsplit(":", 1)[1])]
        entry[0] += event.duration_ps / 1e9
        entry[1] += 1
  return times


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--algo", default="dcgan")
  p.add_argument("--precision", default="auto")
  p.add_argument("--steps", type=int, default=20, help="Profiled generator steps.")
  p.add_argument("--warmup_steps", type=int, default=10)
  p.add_argument("--top", type=int, default=15, help="Op types listed.")
  p.add_argument("--steps_per_loop", type=int, default=None,
                 help="The trainer's --steps_per_loop (default: its default).")
  p.add_argument("--data", default=None, help="The trainer's --data (default: the algorithm's).")
  p.add_argument("--base_channels", type=int, default=None,
                 help="The trainer's --base_channels (default: its default; the papers' 64).")
  p.add_argument("--global_batch_size", type=int, default=None,
                 help="The trainer's --global_batch_size (default: its default).")
  args = p.parse_args(argv)
  work = tempfile.mkdtemp(prefix="profile_step_")
  try:
    config = config_lib.TrainConfig(
        algo=args.algo, model_dir=os.path.join(work, "run"), strategy="one_device",
        precision=args.precision, train_steps=args.warmup_steps, log_every=args.warmup_steps,
        sample_every=loops.NEVER, checkpoint_every=loops.NEVER,
        **({"steps_per_loop": args.steps_per_loop} if args.steps_per_loop else {}),
        **({"data": args.data} if args.data else {}),
        base_channels=args.base_channels, global_batch_size=args.global_batch_size)
    first = trainer.run(config)
    logdir = os.path.join(work, "profile")
    tf.profiler.experimental.start(logdir)
    trainer.run(dataclasses.replace(config, train_steps=args.warmup_steps + args.steps))
    tf.profiler.experimental.stop()
    times = _op_times(logdir)
    # "Process" is no op: where TensorFlow runs its Eigen kernels (CPUs
    # without oneDNN's default, e.g. AVX2 only) the executor wraps the ops of
    # a compute thread in "Process" events, whose time is theirs counted
    # again (measured 2026-12-04: 13.8 s of "Process", 13.8 s of ops inside).
    compute = {op: t for (kind, op), t in times.items()
               if kind == "compute" and op != "Process"}
    total = sum(ms for ms, _ in compute.values())
    print(f"{args.algo}, precision {args.precision} -> {first.precision}, {args.steps} profiled "
          f"steps, batch {first.config.global_batch_size}, width "
          f"{first.config.base_channels}: {total:,.0f} ms of kernel time on the compute threads"
          f" ({total / args.steps:.1f} ms per step); steps_per_loop "
          f"{first.config.steps_per_loop}")
    print(f"{'op type':40s} {'share':>7s} {'calls/step':>10s}")
    for op, (ms, calls) in sorted(compute.items(), key=lambda kv: -kv[1][0])[:args.top]:
      print(f"{op:40s} {ms / total:7.1%} {calls / args.steps:10.1f}")
    conv = sum(ms for op, (ms, _) in compute.items() if "Conv2D" in op)
    print(f"{'all Conv2D kernels (forward and backward)':40s} {conv / total:7.1%}")
    print(f"Amdahl from these shares: with every other op free, the step would run at most "
          f"about {total / conv:.2f}x as fast")
    host = {op: t for (kind, op), t in times.items() if kind == "host"}
    top_host = sorted(host.items(), key=lambda kv: -kv[1][0])[:5]
    print("host side (not in the shares): "
          + ", ".join(f"{op} {ms:,.0f} ms" for op, (ms, _) in top_host))
  finally:
    shutil.rmtree(work, ignore_errors=True)
  child.exit_now(0)


if __name__ == "__main__":
  main()
