"""Per-example random draws that do not depend on the number of replicas.

A `tf.random.Generator` in the strategy scope gives every replica its own
stream, so the global batch's noise would change with the replica count.
Here every draw is a pure function of (seed, step, phase, repeat, stream name,
global example index): each replica draws the whole global batch with a
stateless op and keeps its own rows. The draws are small ([B, z_dim] latents,
[B] interpolation factors and labels), so drawing B rows costs nothing.

`alg="philox"` is explicit because `auto_select` gave other numbers under XLA.
Because the step counter is in the checkpoint, a resumed run draws exactly
the numbers the uninterrupted run would have drawn.
"""

import zlib

import tensorflow as tf


def stream_id(name):
  """A stable int for a stream name (Python's hash() is salted per process)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def fold(seed, *values):
  """Folds ints or int tensors into a [2] int64 seed."""
  for v in values:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(v, tf.int64))
  return seed


class StepRandomness:
  """The random draws of one replica in one step.

  Args:
    seed: [2] int64, already folded with the step, phase and repeat.
    global_batch: examples per step across all replicas.
    offset: index of this replica's first example in the global batch.
    local_batch: examples on this replica.
  """

  def __init__(self, seed, global_batch, offset, local_batch):
    self.seed = seed
    self.global_batch = global_batch
    self.offset = offset
    self.local_batch = local_batch

  def rows(self, full):
    """This replica's rows of a tensor over the global batch."""
    return full[self.offset:self.offset + self.local_batch]

  def normal(self, name, shape=()):
    """N(0, 1) of shape [local_batch, *shape]."""
    full = tf.random.stateless_normal([self.global_batch, *shape],
                                      seed=fold(self.seed, stream_id(name)), alg="philox")
    return self.rows(full)

  def uniform(self, name, shape=(), minval=0.0, maxval=1.0):
    """U[minval, maxval) of shape [local_batch, *shape]."""
    full = tf.random.stateless_uniform([self.global_batch, *shape],
                                       seed=fold(self.seed, stream_id(name)),
                                       minval=minval, maxval=maxval, alg="philox")
    return self.rows(full)

  def labels(self, name, num_classes):
    """Uniform class labels, int32 [local_batch]."""
    full = tf.random.stateless_uniform([self.global_batch], seed=fold(self.seed, stream_id(name)),
                                       minval=0, maxval=num_classes, dtype=tf.int32,
                                       alg="philox")
    return self.rows(full)
