"""python bench/steps_per_loop.py --algos=sngan,dcgan,wgan_gp --k=10 --rounds=6

How the trainer's generator steps should be grouped into `tf.function` calls
(`--steps_per_loop`), measured in one process on one built trainer, so that
every variant runs the same networks, weights, input pipeline and data:

- `call1`: K calls of `train_loop(1)` (`--steps_per_loop=1`);
- `range`: one call of `train_loop(K)`, the `tf.range` loop (a `While` op);
- `range_pi1`: the same loop with `parallel_iterations=1`;
- `unrolled`: one `tf.function` whose Python loop traces the step K times
  (no `While` op; one graph holding K steps);
- `single`: K calls of a `tf.function` that traces the step once (no `While`
  op, one step per call).

After every call the host does what `trainer._host_loop` does between calls:
it reads the step and the metric sums. The variants take turns (the order
rotates every round), and the table gives each one's median seconds per
generator step and its ratio to `call1`, so the noise of a shared machine
falls on every variant alike.
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

VARIANTS = ("call1", "range", "range_pi1", "unrolled", "single")


def _variants(t, k):
  """{name: callable running k generator steps the way that variant does}."""
  one_step = t.one_step
  feed = t.feed  # Every variant reads as train_loop does: one fetch ahead, within a call.

  @tf.function
  def range_pi1(num_steps):
    pending = feed.fetch()
    for i in tf.range(num_steps):
      tf.autograph.experimental.set_loop_options(parallel_iterations=1)
      pending = one_step(pending, i + 1 == num_steps)

  @tf.function
  def unrolled():
    pending = feed.fetch()
    for i in range(k):
      pending = one_step(pending, i + 1 == k)

  @tf.function
  def single():
    one_step(feed.fetch(), True)

  def host():  # What _host_loop reads after every call.
    int(t.step.numpy())
    return {n: float(v.numpy()) for n, v in t.metric_sums.items()}

  def calls(fn, n, *args):
    def run():
      for _ in range(n):
        fn(*args)
        host()
    return run

  one, many = tf.constant(1, tf.int64), tf.constant(k, tf.int64)
  return {"call1": calls(t.train_loop, k, one), "range": calls(t.train_loop, 1, many),
          "range_pi1": calls(range_pi1, 1, many), "unrolled": calls(unrolled, 1),
          "single": calls(single, k)}


def measure(algo, args):
  work = tempfile.mkdtemp(prefix="bench_spl_")
  try:
    config = config_lib.TrainConfig(
        algo=algo, data=args.data, model_dir=os.path.join(work, "run"),
        strategy="one_device", precision=args.precision, train_steps=10**9,
        log_every=10**9, sample_every=10**9, checkpoint_every=10**9)
    t = trainer_lib._Trainer(config)  # pylint: disable=protected-access
    variants = {n: f for n, f in _variants(t, args.k).items() if n in args.variants}
    compile_s = {}
    for name, fn in variants.items():  # Trace, optimize and warm every variant.
      start = time.perf_counter()
      fn()
      compile_s[name] = time.perf_counter() - start
      fn()
    times = {n: [] for n in variants}
    names = list(variants)
    for r in range(args.rounds):
      order = names[r % len(names):] + names[:r % len(names)]
      for name in order:
        start = time.perf_counter()
        variants[name]()
        times[name].append((time.perf_counter() - start) / args.k)
    return t.precision, compile_s, times
  finally:
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  p.add_argument("--algos", default="sngan,dcgan,wgan_gp")
  p.add_argument("--data", default="builtin:shapes")
  p.add_argument("--precision", default="auto")
  p.add_argument("--k", type=int, default=10, help="Generator steps per measurement.")
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--variants", default=",".join(VARIANTS))
  args = p.parse_args(argv)
  args.variants = args.variants.split(",")
  logging.set_verbosity(logging.WARNING)
  for algo in args.algos.split(","):
    precision, compile_s, times = measure(algo, args)
    base = statistics.median(times["call1"]) if "call1" in times else None
    print(f"\n{algo}, {args.data}, precision {args.precision} -> {precision}, K={args.k}, "
          f"{args.rounds} rounds (median; min-max in brackets)")
    print("| variant | ms per G step | vs call1 (time ratio, <1 faster) | first call s |")
    print("|---|---|---|---|")
    for name, ts in times.items():
      med = statistics.median(ts)
      ratio = f"{med / base:.3f}" if base else "-"
      print(f"| {name} | {1e3 * med:.1f} [{1e3 * min(ts):.1f}-{1e3 * max(ts):.1f}] | {ratio} "
            f"| {compile_s[name]:.1f} |")
    sys.stdout.flush()
  sys.stdout.flush()
  os._exit(0)  # pylint: disable=protected-access  (TF's exit-time teardown can hang)


if __name__ == "__main__":
  main()
