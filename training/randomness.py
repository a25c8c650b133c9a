"""Per-example random draws that do not depend on the number of replicas.

A `tf.random.Generator` in the strategy scope gives every replica its own
stream, so the global batch's noise would change with the replica count.
Here every draw is a pure function of (seed, step, phase, repeat, stream name,
global example index): each replica draws the whole global batch with a
stateless op and keeps its own rows. The draws are small ([B, z_dim] latents,
[B] interpolation factors and labels), so drawing B rows costs nothing.

The draws are the same inside and outside an XLA-compiled function: the
seeds are folded with `alg="philox"` (`auto_select` differs under XLA), and
every float is made here from integer draws, because TensorFlow's own float
draws differ under XLA on CPU even with philox (tests/test_tf_facts.py).
Because the step counter is in the checkpoint, a resumed run draws exactly
the numbers the uninterrupted run would have drawn.
"""

import math
import zlib

import tensorflow as tf


_UNIT_BITS = 1 << 24  # float32 represents k / 2^24 exactly for every k < 2^24.


def _unit(bits):
  """[...] ints in [0, 2^24) -> U[0, 1) float32, exactly k / 2^24."""
  return tf.cast(bits, tf.float32) * (1.0 / _UNIT_BITS)


def stream_id(name):
  """A stable int for a stream name (Python's hash() is salted per process)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def fold(seed, *values):
  """Folds ints or int tensors into a [2] int64 seed."""
  for v in values:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(v, tf.int64), alg="philox")
  return seed


class StepRandomness:
  """The random draws of one replica in one step.

  Args:
    seed: [2] int64, already folded with the step, phase and repeat.
    global_batch: examples per step across all replicas.
    offset: index of this replica's first example in the global batch.
    local_batch: examples on this replica.
    loss_scale: the phase's current loss scale (float32 scalar) under
      mixed_float16, else None. It is not random, but like the draws it is
      what a loss needs to know about the step it runs in: a gradient taken
      inside the loss (the gradient penalty) must scale and unscale with it.
    step: the generator step (int64 scalar), or None outside the trainer;
      for schedules inside a loss (lazy R1).
  """

  def __init__(self, seed, global_batch, offset, local_batch, loss_scale=None, step=None):
    self.seed = seed
    self.global_batch = global_batch
    self.offset = offset
    self.local_batch = local_batch
    self.loss_scale = loss_scale
    self.step = step

  def rows(self, full):
    """This replica's rows of a tensor over the global batch."""
    return full[self.offset:self.offset + self.local_batch]

  def normal(self, name, shape=()):
    """N(0, 1) of shape [local_batch, *shape] (Box-Muller on `_unit` draws)."""
    u = _unit(self._bits(name, [2, self.global_batch, *shape]))
    radius = tf.sqrt(-2.0 * tf.math.log(1.0 - u[0]))  # 1 - u in (0, 1]: log is finite.
    return self.rows(radius * tf.cos(2.0 * math.pi * u[1]))

  def uniform(self, name, shape=(), minval=0.0, maxval=1.0):
    """U[minval, maxval) of shape [local_batch, *shape]."""
    u = _unit(self._bits(name, [self.global_batch, *shape]))
    return self.rows(minval + (maxval - minval) * u)

  def _bits(self, name, shape):
    """Uniform ints in [0, 2^24): the same numbers with and without XLA.

    TensorFlow's float draws (`stateless_normal`, float `stateless_uniform`)
    give other numbers inside an XLA-compiled function on CPU, even with
    `alg="philox"`; its integer draws do not (tests/test_tf_facts.py). So
    every float here is made from integer draws, with the same arithmetic
    whether compiled or not.
    """
    return tf.random.stateless_uniform(shape, seed=fold(self.seed, stream_id(name)), minval=0,
                                       maxval=_UNIT_BITS, dtype=tf.int32, alg="philox")

  def labels(self, name, num_classes):
    """Uniform class labels, int32 [local_batch]."""
    full = tf.random.stateless_uniform([self.global_batch], seed=fold(self.seed, stream_id(name)),
                                       minval=0, maxval=num_classes, dtype=tf.int32,
                                       alg="philox")
    return self.rows(full)
