"""python -m bench.joint_d --algos=sngan,wgan_gp --rounds=10

One discriminator call on the concatenated [real; fake] batch against two
calls, in the trainer's own step. `algorithms/gans.py` makes one call when the
discriminator has no batch norm (`models.blocks.per_example`): the logits
are the same (tests/test_small_data.py, JointDiscriminatorTest), but every
call re-normalizes (spectral norm), casts (mixed precision) and lays out every
kernel again, and two small convolutions cost more than one of twice the batch.

Two trainers are built in this process from the same TrainConfig (same data,
seed and weights); in the second, `algorithm._joint_d` is set to False before
its step is traced. The two take turns, `--k` generator steps per turn (one
`train_loop(k)` call and the host reads after it, as the trainer's host loop
does), the order alternating each round; the table gives each one's median
milliseconds per generator step and the ratio, so the load of a shared
machine falls on both alike.
"""

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from bench import child  # pylint: disable=wrong-import-position
from bench import loops  # pylint: disable=wrong-import-position
from bench import timing  # pylint: disable=wrong-import-position


def _trainer(algo, args, model_dir, joint):
  t = loops.built_trainer(algo, model_dir, data=args.data, precision=args.precision,
                          base_channels=args.base_channels,
                          global_batch_size=args.global_batch_size)
  if not joint:
    t.algorithm._joint_d = False  # pylint: disable=protected-access
  return t


def _run(t, k):
  t.train_loop(tf.constant(k, tf.int64))
  return loops.host_reads(t)


def measure(algo, args):
  with tempfile.TemporaryDirectory(prefix="bench_joint_d_", ignore_cleanup_errors=True) as work:
    trainers = {name: _trainer(algo, args, os.path.join(work, name), name == "joint")
                for name in ("joint", "separate")}
    joint = trainers["joint"].algorithm._joint_d  # pylint: disable=protected-access
    for t in trainers.values():  # Trace, optimize and warm both.
      _run(t, args.k)
      _run(t, args.k)
    # Two variants: the order alternates every round.
    times = timing.take_turns({name: lambda t=t: _run(t, args.k) for name, t in trainers.items()},
                              args.rounds, args.k)
    return joint, trainers["joint"].precision, trainers["joint"].config, times


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  p.add_argument("--algos", default="sngan,wgan_gp,dcgan")
  p.add_argument("--data", default="builtin:shapes")
  p.add_argument("--precision", default="auto")
  p.add_argument("--base_channels", type=int, default=None,
                 help="Default: the trainer's (32 for these networks; the papers' 64).")
  p.add_argument("--global_batch_size", type=int, default=None,
                 help="Default: the trainer's (32 for images).")
  p.add_argument("--k", type=int, default=20, help="Generator steps per turn.")
  p.add_argument("--rounds", type=int, default=10)
  args = p.parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  print("| algo | precision | width | batch | one D call? | joint ms/step | separate ms/step "
        "| joint / separate (time, < 1 faster) |")
  print("|---|---|---|---|---|---|---|---|")
  for algo in args.algos.split(","):
    joint, precision, c, times = measure(algo, args)
    j, s = statistics.median(times["joint"]), statistics.median(times["separate"])
    print(f"| {algo} | {precision} | {c.base_channels} | {c.global_batch_size} | "
          f"{'yes' if joint else 'no (batch norm): both rows make two calls'} | "
          f"{timing.ms_with_range(times['joint'])} | {timing.ms_with_range(times['separate'])} "
          f"| {j / s:.3f} |", flush=True)
  child.exit_now(0)


if __name__ == "__main__":
  main()
