"""Pins the TF 2.21 / Keras 3.15 behaviours the trainer's design relies on.

Each test states a fact recorded in docs/tf-facts.md and what in the code
depends on it. When an upgrade changes a fact, its test fails and points at
the code to revisit.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf


def _two_cpus():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                        cross_device_ops=tf.distribute.ReductionToOneDevice())


class DistributeFactsTest(tf.test.TestCase):

  def test_keras_optimizer_sums_replica_gradients_itself(self):
    # trainer._replica_update relies on this and does no manual all-reduce.
    strategy = _two_cpus()
    with strategy.scope():
      v = keras.Variable(0.0)
      opt = keras.optimizers.SGD(learning_rate=1.0)
      opt.build([v])

    @tf.function
    def step():
      def replica_fn():
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group,
                          tf.float32)
        opt.apply_gradients([(1.0 + replica, v)])  # gradients 1 and 2
      strategy.run(replica_fn)

    step()
    self.assertAllClose(v.numpy(), -3.0)  # 0 - lr * (1 + 2): summed, not averaged

  def test_distributed_iterator_is_not_checkpointable(self):
    # The trainer iterates a plain per-worker tf.data iterator instead.
    strategy = _two_cpus()
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.range(10).batch(2))
    with self.assertRaisesRegex(ValueError, "trackable"):
      tf.train.Checkpoint(iterator=iter(dist))
    tf.train.Checkpoint(iterator=iter(tf.data.Dataset.range(10)))  # This one is.

  def test_keras_list_held_layers_miss_tf_checkpoint(self):
    # training/run_dir.trackable_items saves models' weights by path because of this.
    class Net(keras.Model):

      def __init__(self):
        super().__init__()
        self.norms = [keras.layers.BatchNormalization(name="bn")]

      def call(self, x):
        return self.norms[0](x)

    net = Net()
    net(tf.zeros([1, 2]))
    path = tf.train.Checkpoint(net=net).save(os.path.join(self.get_temp_dir(), "c"))
    saved = [k for k in dict(tf.train.list_variables(path)) if "moving" in k]
    self.assertEmpty(saved)

  def test_aggregation_none_variable_assigned_per_replica(self):
    # The spectral-norm vector u is updated this way, in replica context.
    strategy = _two_cpus()
    with strategy.scope():
      layer = keras.layers.Layer()
      u = layer.add_weight(shape=(), initializer="ones", trainable=False, aggregation="none")

    @tf.function
    def step():
      def replica_fn():
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group,
                          tf.float32)
        u.assign(u + 1.0 + replica)
      strategy.run(replica_fn)

    step()
    self.assertAllClose([c.numpy() for c in strategy.experimental_local_results(u.value)],
                        [2.0, 3.0])

  def test_synchronized_batch_norm_uses_global_batch_statistics(self):
    # models/blocks.GlobalBatchNormalization relies on this for N replicas == 1 replica.
    strategy = _two_cpus()
    with strategy.scope():
      bn = keras.layers.BatchNormalization(synchronized=True, center=False, scale=False,
                                           epsilon=0.0)
      bn.build((None, 1))
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([[1.0], [3.0]]) if ctx.replica_id_in_sync_group == 0
        else tf.constant([[5.0], [7.0]]))

    @tf.function
    def step(x):
      return strategy.run(lambda x: bn(x, training=True), args=(x,))

    out = np.concatenate([o.numpy() for o in strategy.experimental_local_results(step(values))])
    # Global mean 4, variance 5: (x - 4) / sqrt(5).
    self.assertAllClose(out[:, 0], (np.array([1, 3, 5, 7]) - 4.0) / np.sqrt(5.0), atol=1e-5)

  def test_stateless_philox_is_the_same_everywhere(self):
    # training/randomness.py: every replica draws the global batch and slices.
    a = tf.random.stateless_normal([4, 3], seed=[1, 2], alg="philox")
    with tf.device("/cpu:1"):
      b = tf.random.stateless_normal([4, 3], seed=[1, 2], alg="philox")
    self.assertAllEqual(a, b)


  def test_keras_loss_scale_optimizer_misses_inf_on_another_replica(self):
    # training/precision.LossScaleOptimizer exists because of this: Keras checks replica 0's
    # gradients before the all-reduce, so replica 1's inf is applied.
    strategy = _two_cpus()
    with strategy.scope():
      v = keras.Variable(1.0)
      opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=0.5),
                                                initial_scale=8.0)
      opt.build([v])

    @tf.function
    def step():
      def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        g = tf.where(tf.equal(replica, 1), tf.constant(np.inf), opt.scale_loss(1.0))
        opt.apply_gradients([(g, v)])
      strategy.run(replica_fn)

    step()
    values = [float(x.numpy()) for x in strategy.experimental_local_results(v.value)]
    self.assertFalse(all(np.isfinite(values)), values)  # the inf reached the weights
    self.assertEqual(float(opt.dynamic_scale.numpy()), 8.0)  # and the scale did not drop


class XlaFactsTest(tf.test.TestCase):
  """Why the trainer compiles the per-replica gradients only (`--xla`)."""

  def test_xla_cannot_compile_collectives_on_cpu(self):
    # The notes saw "Collectives are not yet implemented for CPU devices when
    # compiling with XLA"; TF 2.21 fails earlier, while placing the all-reduce
    # (the same with MultiWorkerMirroredStrategy, checked by hand).
    strategy = _two_cpus()

    @tf.function
    def step():
      @tf.function(jit_compile=True)
      def reduce(x):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, x)
      return strategy.run(reduce, args=(tf.constant(1.0),))

    with self.assertRaises(Exception) as caught:
      step()
    self.assertRegex(str(caught.exception), "destinations can not be empty|Collectives are not yet "
                     "implemented")

  def test_xla_around_strategy_run_fails(self):
    strategy = _two_cpus()
    with strategy.scope():
      v = tf.Variable(1.0)

    @tf.function(jit_compile=True)
    def step():
      return strategy.run(lambda: v * 2.0)

    with self.assertRaises(Exception) as caught:
      step()
    self.assertRegex(str(caught.exception), "(?s)located in device|device|XLA|compil")

  def test_xla_per_replica_gradients_then_apply_outside(self):
    # The split the trainer uses: compiled per-replica gradients, Keras's
    # apply_gradients (all-reduce and update) outside the compiled function.
    strategy = _two_cpus()
    with strategy.scope():
      w = keras.Variable([1.0, 2.0])
      opt = keras.optimizers.SGD(learning_rate=0.1)
      opt.build([w])

    @tf.function(jit_compile=True)
    def grads(x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(w * x))
      return tape.gradient(loss, [w.value])

    @tf.function
    def step():
      def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        g = grads(tf.cast(replica + 1, tf.float32))
        opt.apply_gradients(zip(g, [w]))
      strategy.run(replica_fn)

    step()
    # d/dw sum((w x)^2) = 2 w x^2: x=1 and x=2 summed -> 2 w (1 + 4) = 10 w.
    self.assertAllClose(w.numpy(), [1.0 - 0.1 * 10.0, 2.0 - 0.1 * 20.0])


  def test_float_stateless_draws_differ_under_xla_integer_ones_do_not(self):
    # training/randomness.py makes its floats from integer draws because of this.
    seed = tf.constant([3, 5], tf.int64)
    normal = lambda s: tf.random.stateless_normal([64], seed=s, alg="philox")  # noqa: E731
    ints = lambda s: tf.random.stateless_uniform(  # noqa: E731
        [64], seed=s, minval=0, maxval=1 << 24, dtype=tf.int32, alg="philox")
    self.assertNotAllClose(tf.function(normal)(seed),
                           tf.function(normal, jit_compile=True)(seed))
    self.assertAllEqual(tf.function(ints)(seed), tf.function(ints, jit_compile=True)(seed))


_HIERARCHICAL_SUMS = """
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 4)
for n in (2, 3, 4):
  s = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)],
                                     cross_device_ops=tf.distribute.HierarchicalCopyAllReduce())
  v = s.experimental_distribute_values_from_function(
      lambda ctx: tf.constant([float(ctx.replica_id_in_sync_group + 1)]))
  r = s.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, [(v, v)])[0]
  print(n, [float(x[0]) for x in s.experimental_local_results(r)])
"""


class HierarchicalCopyFactTest(tf.test.TestCase):

  def test_hierarchical_copy_leaves_a_device_out_of_an_odd_count(self):
    # distribute/strategy.py uses HierarchicalCopyAllReduce over an even split
    # of logical GPUs only. It sums two halves of n // 2 devices; with 3
    # devices holding 1, 2, 3 it returns 1 + 2. Four logical CPUs need a
    # fresh process (this one has two).
    done = subprocess.run([sys.executable, "-c", _HIERARCHICAL_SUMS], capture_output=True,
                          text=True, timeout=300, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    sums = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    self.assertEqual(sums, {"2": "[3.0, 3.0]", "3": "[3.0, 3.0, 3.0]",
                            "4": "[10.0, 10.0, 10.0, 10.0]"})


if __name__ == "__main__":
  tf.test.main()
