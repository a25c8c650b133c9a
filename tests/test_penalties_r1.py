"""Golden tests of the R1 penalty (models/penalties.py, Mescheder et al. 2018)."""

import keras
import numpy as np
import tensorflow as tf

from models import penalties

W = np.array([0.5, -1.0, 2.0, 0.25], np.float32)  # sum(w^2) = 0.25 + 1 + 4 + 0.0625 = 5.3125


def _linear(w=W, b=3.0):
  """D(x) = sum(w * x) + b: gradient w at every x."""
  w = tf.constant(w)
  return lambda x: tf.reduce_sum(x * w, axis=-1) + b


class R1Test(tf.test.TestCase):

  def test_registered(self):
    self.assertIs(penalties.get("r1"), penalties.r1_penalty)

  def test_linear_critic(self):
    real = tf.constant(np.random.default_rng(0).normal(size=(3, 4)), tf.float32)
    penalty, norm = penalties.r1_penalty(_linear(), real)
    self.assertEqual(penalty.shape, (3,))
    self.assertAllClose(penalty, [5.3125] * 3, rtol=1e-6)
    self.assertAllClose(norm, [np.sqrt(5.3125)] * 3, rtol=1e-6)

  def test_quadratic_critic(self):
    # D(x) = sum(x^2): gradient 2x, penalty 4 sum(x^2): 4 * 14 = 56, 4 * 0 = 0, 4 * 0.5 = 2.
    real = tf.constant([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.5, -0.5, 0.0]])
    penalty, norm = penalties.r1_penalty(lambda x: tf.reduce_sum(x * x, axis=1), real)
    self.assertAllClose(penalty, [56.0, 0.0, 2.0])
    self.assertAllClose(norm, [np.sqrt(56.0), 0.0, np.sqrt(2.0)])

  def test_patch_outputs_summed_and_images(self):
    # Two equal patches per example: gradient 2w, penalty 4 sum(w^2).
    w = tf.reshape(tf.constant(W), [1, 2, 2, 1])
    d = lambda x: tf.stack([tf.reduce_sum(x * w, axis=[1, 2, 3])] * 2, axis=1)  # noqa: E731
    penalty, _ = penalties.r1_penalty(d, tf.ones([2, 2, 2, 1]))
    self.assertAllClose(penalty, [4 * 5.3125] * 2)

  def test_common_signature_ignores_fake_and_alpha(self):
    # The call algorithms/gans.py makes: fn, real, fake, alpha, loss_scale=.
    real = tf.constant([[1.0, 2.0, 3.0]])
    quadratic = lambda x: tf.reduce_sum(x * x, axis=1)  # noqa: E731
    got = penalties.r1_penalty(quadratic, real, tf.fill([1, 3], 9.0), tf.constant([0.3]),
                               loss_scale=None)
    self.assertAllClose(got, penalties.r1_penalty(quadratic, real))

  def test_gradient_flows_to_the_critic(self):
    # D(x) = sum(v * x): penalty sum(v^2), d/dv = 2v (a second-order gradient).
    v = tf.Variable(W)
    with tf.GradientTape() as tape:
      penalty, norm = penalties.r1_penalty(lambda x: tf.reduce_sum(x * v, axis=1),
                                           tf.ones([2, 4]))
      total = tf.reduce_sum(penalty) + tf.reduce_sum(norm)  # The norm carries no gradient.
    self.assertAllClose(tape.gradient(total, v), 2 * 2 * W)

  def test_float32_loss_scale_changes_nothing(self):
    real = tf.constant(np.random.default_rng(1).normal(size=(3, 4)), tf.float32)
    plain = penalties.r1_penalty(_linear(), real)
    scaled = penalties.r1_penalty(_linear(), real, loss_scale=tf.constant(1024.0))
    self.assertAllClose(plain, scaled, rtol=1e-6)

  def _dense(self, policy, kernel, layers=1):
    """`layers` Dense layers 16 -> 1 (-> 1 ...), every kernel entry `kernel`, bias 0.1."""
    keras.config.set_dtype_policy(policy)
    try:
      stack = [keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(kernel),
                                  bias_initializer=keras.initializers.Constant(0.1))
               for _ in range(layers)]
      for i, layer in enumerate(stack):
        layer.build((None, 16 if i == 0 else 1))
    finally:
      keras.config.set_dtype_policy("float32")

    def d(x):
      for layer in stack:
        x = layer(x)
      return tf.squeeze(x, -1)
    return d

  def test_float16_critic_with_loss_scale_matches_float32(self):
    # Golden: gradient w = 0.03 per input, penalty 16 * 0.03^2 = 0.0144.
    real = tf.constant(np.random.default_rng(2).uniform(-1, 1, (3, 16)), tf.float32)
    f32, _ = penalties.r1_penalty(self._dense("float32", 0.03), real)
    f16, _ = penalties.r1_penalty(self._dense("mixed_float16", 0.03), real,
                                  loss_scale=tf.constant(2.0**15))
    self.assertEqual(f16.dtype, tf.float32)
    self.assertAllClose(f32, [0.0144] * 3, rtol=1e-5)
    self.assertAllClose(f16, f32, rtol=2e-3)

  def test_float16_underflow_needs_the_scale(self):
    # Two layers with weights 1e-4 (normal in float16; 2e-8 itself would round
    # to 0): the input gradient 1e-4 * 1e-4 = 1e-8 underflows in float16
    # (smallest subnormal 6e-8) and is lost without the scale, kept with it.
    # Golden: 16 * (1e-8)^2 = 1.6e-15. atol=0: assertAllClose's default 1e-6
    # would accept 0.
    d = self._dense("mixed_float16", 1e-4, layers=2)
    real = tf.ones([2, 16])
    lost, _ = penalties.r1_penalty(d, real)
    kept, _ = penalties.r1_penalty(d, real, loss_scale=tf.constant(2.0**15))
    self.assertAllEqual(lost, [0.0] * 2)
    self.assertAllClose(kept, [1.6e-15] * 2, rtol=1e-2, atol=0.0)


if __name__ == "__main__":
  tf.test.main()
