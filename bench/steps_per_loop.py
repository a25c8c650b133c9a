"""python -m bench.steps_per_loop --algos=sngan,dcgan,wgan_gp --k=10 --rounds=6

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
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from bench import child  # pylint: disable=wrong-import-position
from bench import loops  # pylint: disable=wrong-import-position
from bench import timing  # pylint: disable=wrong-import-position

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

  def calls(fn, n, *args):
    def run():
      for _ in range(n):
        fn(*args)
        loops.host_reads(t)
    return run

  one, many = tf.constant(1, tf.int64), tf.constant(k, tf.int64)
  return {"call1": calls(t.train_loop, k, one), "range": calls(t.train_loop, 1, many),
          "range_pi1": calls(range_pi1, 1, many), "unrolled": calls(unrolled, 1),
          "single": calls(single, k)}


def measure(algo, args):
  with tempfile.TemporaryDirectory(prefix="bench_spl_", ignore_cleanup_errors=True) as work:
    t = loops.built_trainer(algo, os.path.join(work, "run"), data=args.data,
                            precision=args.precision)
    variants = {n: f for n, f in _variants(t, args.k).items() if n in args.variants}
    compile_s = {}
    for name, fn in variants.items():  # Trace, optimize and warm every variant.
      start = time.perf_counter()
      fn()
      compile_s[name] = time.perf_counter() - start
      fn()
    return t.precision, compile_s, timing.take_turns(variants, args.rounds, args.k)


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
      ratio = f"{statistics.median(ts) / base:.3f}" if base else "-"
      print(f"| {name} | {timing.ms_with_range(ts)} | {ratio} | {compile_s[name]:.1f} |")
    sys.stdout.flush()
  child.exit_now(0)


if __name__ == "__main__":
  main()
