"""Dynamic loss scaling that is correct under every tf.distribute strategy.

Keras 3's `keras.optimizers.LossScaleOptimizer` decides whether a step is
finite from each replica's *own* gradients, before they are all-reduced; under
MirroredStrategy it then takes replica 0's answer for all (see
`../shared/notes/tf-distribute-facts.md`, pinned in tests/test_tf_facts.py).
An `inf` on replica 1 alone is applied: the weights become non-finite and the
scale does not drop.

`LossScaleOptimizer` below is Keras's, with one change: the finite check
all-reduces the count of non-finite gradient values over every replica (and
every worker) first, so all replicas take the same branch: skip the step and
halve the scale, or apply it (the scale doubles after `dynamic_growth_steps`
finite steps in a row). It also counts the skipped steps, for TensorBoard.

Where the scale enters the loss (the trainer, `_replica_update`):
    grads = tape.gradient(opt.scale_loss(loss), variables)   # scaled
    opt.apply_gradients(zip(grads, variables))                # unscaled here
and the gradient penalty takes its inner gradient of the *scaled* critic
output and divides it by the scale (`models.penalties`, `loss_scale=`), which
TensorFlow issue 48662 shows is needed for the scale not to collapse.
"""

import keras
from keras import ops
from keras.src.utils import tracking  # Keras's own decorator for build().
import tensorflow as tf

__all__ = ["LossScaleOptimizer", "nonfinite_count"]


def nonfinite_count(grads):
  """The number of non-finite values in `grads` (None entries skipped), float32."""
  counts = [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float32))
            for g in grads if g is not None]
  return tf.add_n(counts) if counts else tf.constant(0.0)


class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """Keras's LossScaleOptimizer with a finite check agreed across replicas.

  Args:
    inner_optimizer: the optimizer to wrap.
    initial_scale: the first loss scale (2**15, as Keras and tf-keras).
    dynamic_growth_steps: finite steps in a row before the scale doubles.
  """

  def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000,
               **kwargs):
    super().__init__(inner_optimizer, initial_scale=initial_scale,
                     dynamic_growth_steps=dynamic_growth_steps, **kwargs)

  @tracking.no_automatic_dependency_tracking  # As Keras's build: no attribute tracking.
  def build(self, var_list):
    self.skipped_steps = self.add_variable(
        shape=(), dtype="float32", initializer=keras.initializers.Zeros(),
        aggregation="none", name="skipped_steps")
    super().build(var_list)

  def check_finite(self, grads):
    """True when every replica's gradients are finite.

    Called in a replica context by both of Keras's code paths (directly, or
    through `call_for_each_replica` inside a merge_call), so the all-reduce
    below is a collective that every replica reaches exactly once.
    """
    count = nonfinite_count(grads)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None:  # None only in a cross-replica context, which Keras never uses here.
      count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return ops.equal(count, 0.0)

  def _stateful_handle_non_finite_grads(self):
    self.skipped_steps.assign_add(1.0)
    super()._stateful_handle_non_finite_grads()
