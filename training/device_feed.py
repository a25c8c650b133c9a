"""The trainer's input on the devices: each replica's batch is copied to its
device one fetch ahead, while the step before it computes.

Why not the strategy's own distributed iterators (`distribute_datasets_from_function`,
whose `experimental_fetch_to_device` prefetches): they cannot be saved in a
checkpoint (`tf.train.Checkpoint` refuses a `DistributedIterator`; pinned in
tests/test_tf_facts.py), and exact resume needs the input position. So the
trainer keeps a plain, saveable iterator on the host and does the device
prefetch itself, inside the compiled loop:

    pending = fetch()                      # before the loop
    for each fetch of every step:
      batch, pending = pending, fetch()    # the next copy has no data dependency
      run the phase on batch               # ... on this one, so they overlap

`fetch()` reads one per-replica batch per local replica from the host
iterator (replica r of the worker gets the r-th) and copies it onto that
replica's device (`tf.identity` under `tf.device`). The copy for the next
fetch depends only on the iterator, not on the step, so TensorFlow's executor
runs it (a host-to-device copy on its own stream on a GPU) while the phase
computes, as `experimental_fetch_to_device` would.

The prefetch never crosses a call of the loop: the last fetch of a call is
skipped (zeros of the batch's shape stand in, on the device, and are never
used). Between calls, where checkpoints are saved, the host iterator's
position is exactly the data consumed, so a resumed run reads what the
uninterrupted run would, and the checkpoint holds no batch. The cost is one
fetch per call that does not overlap (one in `steps_per_loop` x fetches per
step).
"""

import tensorflow as tf


class DeviceFeed:
  """Per-replica batches from `iterator_fn()`, fetched onto the local replicas'
  devices (used while tracing the trainer's loop).

  Args:
    strategy: the trainer's strategy.
    devices: this worker's replica devices, in local replica order.
    iterator_fn: returns the host iterator (read when the loop is traced, so
      that a replaced iterator is the one the loop reads).
    element_spec: the iterator's element spec (static shapes: the reader
      batches with `drop_remainder`).
  """

  def __init__(self, strategy, devices, iterator_fn, element_spec):
    self.strategy = strategy
    self.devices = tuple(devices)
    self.iterator_fn = iterator_fn
    self.element_spec = element_spec

  def fetch(self):
    """The next batch of every local replica, each on its replica's device."""
    iterator = self.iterator_fn()
    parts = []
    for device in self.devices:
      part = next(iterator)  # On the host, in local replica order.
      with tf.device(device):
        parts.append(tf.nest.map_structure(tf.identity, part))
    return parts

  def _placeholder(self):
    """Zeros shaped like a fetch, on the devices: what stands in for a skipped fetch."""
    parts = []
    for device in self.devices:
      with tf.device(device):
        parts.append(tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype),
                                           self.element_spec))
    return parts

  def advance(self, skip=False):
    """The fetch after the current one; `skip` (a bool tensor, or False) stands
    zeros in for it: the last fetch of a call of the loop."""
    if isinstance(skip, bool):
      return self._placeholder() if skip else self.fetch()
    return tf.cond(skip, self._placeholder, self.fetch)

  def distribute(self, parts):
    """The fetched parts as one distributed value: replica r gets part r % local."""
    num_local = len(self.devices)
    return self.strategy.experimental_distribute_values_from_function(
        lambda ctx: parts[ctx.replica_id_in_sync_group % num_local])
