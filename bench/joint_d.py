"""python bench/joint_d.py --algos=sngan,wgan_gp --rounds=10

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
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from training import config as config_lib  # pylint: disable=wrong-import-position
from training import trainer as trainer_lib  # pylint: disable=wrong-import-position


def _trainer(algo, args, model_dir, joint):
  config = config_lib.TrainConfig(
      algo=algo, data=args.data, model_dir=model_dir, strategy="one_device",
      precision=args.precision, base_channels=args.base_channels,
      global_batch_size=args.global_batch_size, train_steps=10**9, log_every=10**9,
      sample_every=10**9, checkpoint_every=10**9)
  t = trainer_lib._Trainer(config)  # pylint: disable=protected-access
  if not joint:
    t.algorithm._joint_d = False  # pylint: disable=protected-access
  return t


def _run(t, k):
  t.train_loop(tf.constant(k, tf.int64))
  int(t.step.numpy())  # What the host loop reads after every call.
  return {n: float(v.numpy()) for n, v in t.metric_sums.items()}


def measure(algo, args):
  work = tempfile.mkdtemp(prefix="bench_joint_d_")
  try:
    trainers = {name: _trainer(algo, args, os.path.join(work, name), name == "joint")
                for name in ("joint", "separate")}
    joint = trainers["joint"].algorithm._joint_d  # pylint: disable=protected-access
    for t in trainers.values():  # Trace, optimize and warm both.
      _run(t, args.k)
      _run(t, args.k)
    times = {n: [] for n in trainers}
    names = list(trainers)
    for r in range(args.rounds):
      for name in (names if r % 2 == 0 else names[::-1]):
        start = time.perf_counter()
        _run(trainers[name], args.k)
        times[name].append((time.perf_counter() - start) / args.k)
    c = trainers["joint"].config
    return joint, trainers["joint"].precision, c, times
  finally:
    shutil.rmtree(work, ignore_errors=True)


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
          f"{1e3 * j:.1f} [{1e3 * min(times['joint']):.1f}-{1e3 * max(times['joint']):.1f}] | "
          f"{1e3 * s:.1f} [{1e3 * min(times['separate']):.1f}-"
          f"{1e3 * max(times['separate']):.1f}] | {j / s:.3f} |", flush=True)
  sys.stdout.flush()
  os._exit(0)  # pylint: disable=protected-access  (TF's exit-time teardown can hang)


if __name__ == "__main__":
  main()
