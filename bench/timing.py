"""How the benchmarks time what they compare: side by side, taking turns.

Imports no TensorFlow: bench/torch_train_step.py uses it too.
"""

import math
import statistics
import time


def turns(names, round_index):
  """The order of `names` in round `round_index`: rotated by one each round,
  so that no variant always goes first on a shared machine."""
  shift = round_index % len(names)
  return list(names[shift:]) + list(names[:shift])


def take_turns(variants, rounds, per_call=1):
  """Calls every variant ({name: callable}) once a round, in `turns` order;
  returns {name: [seconds per unit, one a round]}, a call's seconds divided
  by `per_call` (the units of work it does)."""
  names = list(variants)
  times = {name: [] for name in names}
  for r in range(rounds):
    for name in turns(names, r):
      start = time.perf_counter()
      variants[name]()
      times[name].append((time.perf_counter() - start) / per_call)
  return times


def ms_with_range(seconds):
  """'median [min-max]' of `seconds`, in milliseconds."""
  return (f"{1e3 * statistics.median(seconds):.1f} "
          f"[{1e3 * min(seconds):.1f}-{1e3 * max(seconds):.1f}]")


def time_generator_steps(loop, steps, warmup):
  """Times `steps` generator steps of a hand-written GAN loop after `warmup`
  untimed ones.

  Args:
    loop: has `generator_step()`, which returns (d_loss, g_loss), and
      `sync()`, which waits for the device work queued so far.
    steps: timed generator steps.
    warmup: untimed generator steps first.

  Returns:
    The seconds of the timed steps.

  Raises:
    FloatingPointError: the last losses are not finite.
  """
  for _ in range(warmup):
    loop.generator_step()
  loop.sync()
  start = time.perf_counter()
  for _ in range(steps):
    d_loss, g_loss = loop.generator_step()
  loop.sync()
  seconds = time.perf_counter() - start
  losses = (float(d_loss), float(g_loss))
  if not all(math.isfinite(v) for v in losses):
    raise FloatingPointError(f"non-finite losses (d, g) = {losses}")
  return seconds
