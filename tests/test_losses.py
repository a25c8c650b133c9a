"""Golden-value tests of every loss and penalty (models/losses.py, penalties.py).

A shared mixin holds the fixed inputs; each loss supplies only its golden
numbers, derived by hand from the formulas (softplus(x) = log(1 + e^x)).
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from models import losses
from models import penalties

REAL = [2.0, -1.0, 0.5]
FAKE = [-0.5, 1.5, 0.0]


class _LossGoldenMixin:
  """Subclasses set generator_fn, discriminator_fn and the golden values."""
  generator_fn = None
  discriminator_fn = None
  expected_d = None
  expected_g = None

  def test_discriminator_golden(self):
    got = type(self).discriminator_fn(tf.constant(REAL), tf.constant(FAKE))
    self.assertEqual(got.shape, (3,))
    self.assertAllClose(got, self.expected_d, atol=1e-6)

  def test_generator_golden(self):
    got = type(self).generator_fn(tf.constant(FAKE))
    self.assertEqual(got.shape, (3,))
    self.assertAllClose(got, self.expected_g, atol=1e-6)

  def test_constant_patches_equal_single_logits(self):
    # A patch discriminator whose patches all agree gives the per-image loss.
    real = tf.tile(tf.reshape(tf.constant(REAL), [3, 1, 1, 1]), [1, 4, 4, 1])
    fake = tf.tile(tf.reshape(tf.constant(FAKE), [3, 1, 1, 1]), [1, 4, 4, 1])
    self.assertAllClose(type(self).discriminator_fn(real, fake), self.expected_d, atol=1e-6)
    self.assertAllClose(type(self).generator_fn(fake), self.expected_g, atol=1e-6)

  def test_no_batch_reduction(self):
    # Example i's loss depends on example i only.
    real, fake = tf.constant(REAL), tf.constant(FAKE)
    base = type(self).discriminator_fn(real, fake).numpy()
    changed = type(self).discriminator_fn(real, tf.constant([9.0, 1.5, 0.0])).numpy()
    self.assertAllClose(base[1:], changed[1:])


class BceTest(_LossGoldenMixin, tf.test.TestCase):
  generator_fn = losses.modified_generator_loss
  discriminator_fn = losses.minimax_discriminator_loss
  # softplus(-r) + softplus(f): softplus(-2) + softplus(-0.5) = 0.126928 + 0.474077
  expected_d = [0.6010049952, 3.0146749655, 1.1672241647]
  # softplus(-f): softplus(0.5), softplus(-1.5), softplus(0) = log 2
  expected_g = [0.9740769842, 0.2014132780, 0.6931471806]


class BceMinimaxTest(_LossGoldenMixin, tf.test.TestCase):
  generator_fn = losses.minimax_generator_loss
  discriminator_fn = losses.minimax_discriminator_loss
  expected_d = BceTest.expected_d
  # log(1 - sigmoid(f)) = -softplus(f)
  expected_g = [-0.4740769842, -1.7014132780, -0.6931471806]


class WassersteinTest(_LossGoldenMixin, tf.test.TestCase):
  generator_fn = losses.wasserstein_generator_loss
  discriminator_fn = losses.wasserstein_discriminator_loss
  expected_d = [-2.5, 2.5, -0.5]  # f - r
  expected_g = [0.5, -1.5, 0.0]  # -f


class HingeTest(_LossGoldenMixin, tf.test.TestCase):
  generator_fn = losses.hinge_generator_loss
  discriminator_fn = losses.hinge_discriminator_loss
  # relu(1 - r) + relu(1 + f): 0 + 0.5, 2 + 2.5, 0.5 + 1
  expected_d = [0.5, 4.5, 1.5]
  expected_g = [0.5, -1.5, 0.0]

  def test_hinge_is_taken_per_patch(self):
    real = tf.constant([[3.0, -1.0]])  # relu(-2) = 0, relu(2) = 2 -> mean 1
    fake = tf.constant([[-3.0, 1.0]])  # relu(-2) = 0, relu(2) = 2 -> mean 1
    self.assertAllClose(losses.hinge_discriminator_loss(real, fake), [2.0])


class LeastSquaresTest(_LossGoldenMixin, tf.test.TestCase):
  generator_fn = losses.least_squares_generator_loss
  discriminator_fn = losses.least_squares_discriminator_loss
  # 0.5 (r - 1)^2 + 0.5 f^2: 0.5 + 0.125, 2 + 1.125, 0.125 + 0
  expected_d = [0.625, 3.125, 0.125]
  expected_g = [1.125, 0.125, 0.5]  # 0.5 (f - 1)^2


class RegistryTest(tf.test.TestCase):

  def test_unknown_loss_lists_valid(self):
    with self.assertRaisesRegex(ValueError, "unknown loss 'l1'; valid: bce, hinge"):
      losses.get("l1")
    with self.assertRaisesRegex(ValueError, "unknown penalty 'r2'; valid: r1, wgan_gp"):
      penalties.get("r2")


class GradientPenaltyTest(tf.test.TestCase, parameterized.TestCase):
  """A linear critic D(x) = <w, x> has gradient w at every point, so the
  expected penalty is known whatever interpolation point is drawn."""

  def _linear(self, w):
    w = tf.constant(w, tf.float32)
    return lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])

  @parameterized.parameters(
      # ||w|| = 3 (w = [2, 2, 1]):  (3 - 1)^2 = 4
      ([2.0, 2.0, 1.0], False, 4.0, 3.0),
      # ||w|| = 0.5: (0.5 - 1)^2 = 0.25; one-sided: 0
      ([0.3, 0.4, 0.0], False, 0.25, 0.5),
      ([0.3, 0.4, 0.0], True, 0.0, 0.5),
      ([2.0, 2.0, 1.0], True, 4.0, 3.0),
  )
  def test_linear_critic(self, w, one_sided, expected, expected_norm):
    rng = np.random.default_rng(0)
    real = tf.constant(rng.normal(size=(4, 1, 1, 3)), tf.float32)
    fake = tf.constant(rng.normal(size=(4, 1, 1, 3)), tf.float32)
    alpha = tf.constant(rng.uniform(size=4), tf.float32)
    penalty, norm = penalties.wasserstein_gradient_penalty(
        self._linear(np.reshape(w, (1, 1, 1, 3))), real, fake, alpha, one_sided=one_sided)
    self.assertEqual(penalty.shape, (4,))
    self.assertAllClose(penalty, [expected] * 4, atol=1e-5)
    self.assertAllClose(norm, [expected_norm] * 4, atol=1e-5)

  def test_interpolate_golden(self):
    real = tf.fill([2, 1, 1, 1], 4.0)
    fake = tf.zeros([2, 1, 1, 1])
    # 0.25 * 4 + 0.75 * 0 = 1; 1.0 * 4 = 4
    self.assertAllClose(tf.reshape(penalties.interpolate(real, fake, [0.25, 1.0]), [-1]),
                        [1.0, 4.0])

  def test_epsilon_keeps_gradient_finite_at_zero_norm(self):
    w = tf.Variable(tf.zeros([1, 1, 1, 3]))
    x = tf.ones([2, 1, 1, 3])
    with tf.GradientTape() as tape:
      penalty, _ = penalties.wasserstein_gradient_penalty(
          lambda v: tf.reduce_sum(v * w, axis=[1, 2, 3]), x, x, tf.constant([0.5, 0.5]))
      total = tf.reduce_sum(penalty)
    grad = tape.gradient(total, w)
    self.assertIsNotNone(grad)
    self.assertTrue(np.all(np.isfinite(grad.numpy())))

  def test_patch_outputs_summed_per_example(self):
    # D(x) = [<w,x>, <w,x>] per example: the summed output has gradient 2w.
    w = tf.constant([[[[0.3, 0.4, 0.0]]]])
    d = lambda x: tf.stack([tf.reduce_sum(x * w, axis=[1, 2, 3])] * 2, axis=1)
    _, norm = penalties.wasserstein_gradient_penalty(d, tf.ones([3, 1, 1, 3]),
                                                     tf.zeros([3, 1, 1, 3]), tf.fill([3], 0.5))
    self.assertAllClose(norm, [1.0] * 3, atol=1e-5)


if __name__ == "__main__":
  tf.test.main()
