"""Pins the TF 2.21 / Keras 3.15 behaviours the trainer's design relies on.

Each test states a fact from ../shared/notes/tf-distribute-facts.md (or found
while building the trainer) and what in the code depends on it. When an
upgrade changes a fact, its test fails and points at the code to revisit.
"""

import os

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
    # trainer._trackable_items saves models' weights by path because of this.
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
    # models/dcgan.py relies on this for N replicas == 1 replica.
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


if __name__ == "__main__":
  tf.test.main()
