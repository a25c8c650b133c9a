"""training/precision.py: dynamic loss scaling agreed across replicas.

An `inf` gradient on one replica only must skip the step on every replica and
halve the scale (Keras 3's own LossScaleOptimizer gets this wrong; the fact is
pinned in test_tf_facts.py); the scale must double after a run of finite
steps; the skipped steps are counted.
"""

import keras
import numpy as np
import tensorflow as tf

from training import precision


def _two_cpus():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                        cross_device_ops=tf.distribute.ReductionToOneDevice())


def _setup(strategy, growth_steps=2000):
  with strategy.scope():
    v = keras.Variable(1.0, name="v")
    opt = precision.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=0.5),
                                        initial_scale=8.0, dynamic_growth_steps=growth_steps)
    opt.build([v])
  return v, opt


def _step_fn(strategy, v, opt):
  @tf.function
  def step(bad_replica):
    def replica_fn():
      ctx = tf.distribute.get_replica_context()
      replica = ctx.replica_id_in_sync_group
      # Each replica's scaled gradient: scale * 1 (so an unscaled sum of
      # num_replicas), or inf on `bad_replica`.
      g = opt.scale_loss(tf.constant(1.0))
      g = tf.where(tf.equal(replica, bad_replica), tf.constant(np.inf), g)
      opt.apply_gradients([(g, v)])
    strategy.run(replica_fn)
  return step


class LossScaleOptimizerTest(tf.test.TestCase):

  def _local(self, strategy, var):
    return [float(x.numpy()) for x in strategy.experimental_local_results(var.value)]

  def test_inf_on_one_replica_skips_the_step_everywhere(self):
    strategy = _two_cpus()
    v, opt = _setup(strategy)
    step = _step_fn(strategy, v, opt)
    step(tf.constant(1))  # inf on replica 1 only
    self.assertEqual(self._local(strategy, v), [1.0, 1.0])  # no replica applied it
    self.assertEqual(float(opt.dynamic_scale.numpy()), 4.0)  # halved
    self.assertEqual(float(opt.skipped_steps.numpy()), 1.0)
    step(tf.constant(0))  # now on replica 0
    self.assertEqual(self._local(strategy, v), [1.0, 1.0])
    self.assertEqual(float(opt.dynamic_scale.numpy()), 2.0)
    self.assertEqual(float(opt.skipped_steps.numpy()), 2.0)
    step(tf.constant(-1))  # finite everywhere: 1 - 0.5 * (1 + 1)
    self.assertEqual(self._local(strategy, v), [0.0, 0.0])
    self.assertEqual(float(opt.dynamic_scale.numpy()), 2.0)
    self.assertEqual(float(opt.skipped_steps.numpy()), 2.0)

  def test_scale_grows_after_a_run_of_finite_steps(self):
    strategy = _two_cpus()
    v, opt = _setup(strategy, growth_steps=3)
    step = _step_fn(strategy, v, opt)
    scales = []
    for _ in range(7):
      step(tf.constant(-1))
      scales.append(float(opt.dynamic_scale.numpy()))
    self.assertEqual(scales, [8.0, 8.0, 16.0, 16.0, 16.0, 32.0, 32.0])
    # Every step applied the unscaled gradient 2 (1 per replica), lr 0.5.
    self.assertAllClose(self._local(strategy, v), [-6.0, -6.0])

  def test_one_replica(self):
    strategy = tf.distribute.get_strategy()
    v, opt = _setup(strategy)
    step = _step_fn(strategy, v, opt)
    step(tf.constant(0))
    self.assertEqual(float(v.numpy()), 1.0)
    self.assertEqual(float(opt.dynamic_scale.numpy()), 4.0)
    step(tf.constant(-1))
    self.assertEqual(float(v.numpy()), 0.5)


if __name__ == "__main__":
  tf.test.main()
