"""When two trainings count as the same: the tolerances, written once, that the
CPU tests (tests/test_speed_paths.py, tests/test_train.py) and the GPU check
(bench/gpu_check.py) compare runs with, and the comparisons themselves.

Each comparison takes `weights(result)` of two `trainer.run` results that
started from the same seed and read the same data and noise.
"""

import numpy as np

# XLA on against XLA off after k steps: the largest |difference| of any weight.
# Measured 1e-7 on CPU (float rounding); other noise or a lost update gives ~1e-3.
XLA_MAX_ABS_DIFF = 1e-5

# Mixed precision against float32 after k steps: ||w_half - w_f32|| as a share
# of how far float32 training moved the weights, ||w_f32 - w_0||. Adam turns a
# rounding difference in a near-zero gradient into a step of about lr, so the
# distance is measured against the movement. Measured 0.03% to 0.6% on CPU; a
# lost update, skipped steps or a wrong loss scale give 100% or more.
MIXED_PRECISION_MAX_SHARE = 0.05

# N replicas against 1 replica on the same global batch: every value within
# `numpy.isclose(two, one, rtol, atol)`.
REPLICAS_RTOL = 1e-4
REPLICAS_ATOL = 1e-5


def weights(result):
  """{name: numpy array} of every weight of the generator, the discriminator
  and the EMA generator of a `trainer.TrainResult` (or a `_Trainer`)."""
  algo = result.algorithm
  out = {}
  for model in (algo.generator, algo.discriminator, algo.ema_generator):
    for v in (model.weights if model is not None else []):
      out[f"{model.name}/{v.path}"] = np.array(v.numpy())
  return out


def replica_copies(strategy, variables):
  """[[numpy copy on each local replica] for each variable]."""
  return [[x.numpy() for x in strategy.experimental_local_results(v.value)]
          for v in variables]


def max_abs_diff(a, b):
  """The largest |a - b| over every weight of two `weights()` dicts."""
  return max(float(np.max(np.abs(a[n] - b[n]))) for n in a)


def norm_diff(a, b):
  """||a - b|| over every weight of two `weights()` dicts, as one vector."""
  return float(np.sqrt(sum(np.sum((a[n] - b[n]) ** 2) for n in a)))


def closeness(a, b, rtol, atol):
  """The largest |a - b| / (atol + rtol |b|) over every value: at most 1 where
  `numpy.allclose(a, b, rtol, atol)` holds, so it says how close to the limit
  the worst value came."""
  return max(float(np.max(np.abs(a[n] - b[n]) / (atol + rtol * np.abs(b[n])))) for n in a)
