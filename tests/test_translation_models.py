"""Image-to-image networks (pix2pix, CycleGAN, UNIT) and their loss terms.

Shapes on small images (base_channels 4 to 8), fully convolutional use, dropout
only in training, the PatchGAN's receptive field measured from a gradient,
UNIT's weight sharing measured from the variables each domain touches, unique
weight paths, and golden values of the per-example loss terms.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from models import cyclegan
from models import losses
from models import pix2pix
from models import unit
from training import randomness


def _rng(seed, global_batch, offset=0, local_batch=None):
  return randomness.StepRandomness(tf.constant([seed, 0], tf.int64), global_batch, offset,
                                   local_batch or global_batch)


def _paths(model):
  return [v.path for v in model.weights]


def _used_paths(model, fn):
  """Paths of the model's variables that fn reads (the model must be built)."""
  by_id = {id(v.value): v.path for v in model.weights}
  with tf.GradientTape() as tape:
    fn()
  return {by_id[id(v)] for v in tape.watched_variables() if id(v) in by_id}


class UNetTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((32, 1, 3, 5), (64, 3, 3, 6), (48, 3, 1, 4))
  def test_shapes_and_range(self, size, in_channels, out_channels, levels):
    g = pix2pix.UNetGenerator(out_channels, image_size=size, base_channels=4)
    self.assertEqual((g.levels, g.stride), (levels, 2 ** levels))
    y = g(tf.random.normal([2, size, size, in_channels]), training=True)
    self.assertEqual(y.shape, (2, size, size, out_channels))
    self.assertAllInRange(y, -1.0, 1.0)

  def test_levels(self):
    self.assertEqual(pix2pix.unet_levels(256), 8)  # down to 1x1, as in the paper
    self.assertEqual(pix2pix.unet_levels(512), 8)  # capped: a 2x2 bottleneck
    self.assertEqual(pix2pix.unet_levels(32), 5)
    self.assertEqual(pix2pix.unet_levels((64, 96)), 5)
    with self.assertRaisesRegex(ValueError, r"image size 30x30 .* divisible by 4"):
      pix2pix.unet_levels(30)
    with self.assertRaisesRegex(ValueError, "image_size or levels"):
      pix2pix.UNetGenerator(3)

  def test_paper_channels(self):
    g = pix2pix.UNetGenerator(3, levels=8, base_channels=64)
    self.assertEqual([c.filters for c in g.downs], [64, 128, 256, 512, 512, 512, 512, 512])
    self.assertEqual([c.filters for c in g.ups], [512, 512, 512, 512, 256, 128, 64])
    self.assertEqual([d is not None for d in g.up_dropouts], [True] * 3 + [False] * 4)

  def test_fully_convolutional_on_other_sizes(self):
    g = pix2pix.UNetGenerator(3, image_size=32, base_channels=4, norm="instance")
    self.assertEqual(g(tf.zeros([1, 32, 32, 3])).shape, (1, 32, 32, 3))
    self.assertEqual(g(tf.zeros([1, 64, 96, 3])).shape, (1, 64, 96, 3))

  def test_dropout_only_in_training(self):
    g = pix2pix.UNetGenerator(3, image_size=16, base_channels=4)
    x = tf.random.normal([2, 16, 16, 3], seed=1)
    self.assertNotAllClose(g(x, training=True), g(x, training=True))
    self.assertAllEqual(g(x), g(x))
    no_dropout = pix2pix.UNetGenerator(3, image_size=16, base_channels=4, dropout=0.0)
    self.assertAllEqual(no_dropout(x, training=True), no_dropout(x, training=True))

  def test_dropout_rng_masks_are_per_example(self):
    # Masks drawn from StepRandomness repeat with the seed and do not depend
    # on how the global batch is split into replicas. Instance norm: batch
    # statistics would couple the examples.
    g = pix2pix.UNetGenerator(3, image_size=16, base_channels=4, norm="instance")
    x = tf.random.normal([4, 16, 16, 3], seed=2)
    full = g(x, training=True, dropout_rng=_rng(7, 4))
    self.assertAllEqual(full, g(x, training=True, dropout_rng=_rng(7, 4)))
    self.assertNotAllClose(full, g(x, training=True, dropout_rng=_rng(8, 4)))
    second_replica = g(x[2:], training=True, dropout_rng=_rng(7, 4, offset=2, local_batch=2))
    self.assertAllClose(full[2:], second_replica, atol=1e-6)


class PatchDiscriminatorTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((32, 1, 2), (64, 3, 6))
  def test_shapes(self, size, channels, out_size):
    d = pix2pix.PatchDiscriminator(8)
    self.assertEqual(d(tf.zeros([2, size, size, channels]), training=True).shape,
                     (2, out_size, out_size, 1))

  def test_paper_output_size(self):
    # The 70x70 PatchGAN on 256x256 images gives a 30x30 map.
    d = pix2pix.PatchDiscriminator(2, norm="none")
    self.assertEqual(d(tf.zeros([1, 256, 256, 1])).shape, (1, 30, 30, 1))

  def test_conditional(self):
    d = pix2pix.PatchDiscriminator(4, norm="instance", conditional=True)
    x, condition = tf.random.normal([2, 32, 32, 3]), tf.random.normal([2, 32, 32, 1])
    logits = d(x, condition)
    self.assertEqual(logits.shape, (2, 2, 2, 1))
    self.assertEqual(d.convs[0].kernel.shape[2], 4)  # condition and x on channels
    self.assertNotAllClose(logits, d(x, condition * 0.0))
    with self.assertRaisesRegex(ValueError, "conditional=True but condition is missing"):
      d(x)
    with self.assertRaisesRegex(ValueError, "conditional=False but condition is given"):
      pix2pix.PatchDiscriminator(4)(x, condition)

  @parameterized.parameters((1, 16), (2, 34), (3, 70))
  def test_receptive_field_from_gradient(self, num_layers, expected):
    # The input pixels that one output logit depends on: the support of its
    # gradient. Batch norm at inference is per pixel, so it couples nothing.
    d = pix2pix.PatchDiscriminator(4, num_layers=num_layers)
    x = tf.random.normal([1, 128, 128, 1], seed=3)
    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = d(x, training=False)
      h, w = logits.shape[1] // 2, logits.shape[2] // 2
      pixel = logits[0, h, w, 0]
    grad = tf.abs(tape.gradient(pixel, x))[0, :, :, 0].numpy()
    rows, cols = np.nonzero(grad.sum(axis=1))[0], np.nonzero(grad.sum(axis=0))[0]
    self.assertEqual(pix2pix.patch_receptive_field(num_layers), expected)
    self.assertEqual(d.receptive_field, expected)
    for support in (rows, cols):
      self.assertGreater(support[0], 0)  # the whole field lies inside the input
      self.assertLess(support[-1], 127)
      self.assertEqual(support[-1] - support[0] + 1, expected)
      self.assertLen(support, expected)  # contiguous


class ResnetGeneratorTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((32, 1, 3), (64, 3, 3), (32, 3, 1))
  def test_shapes_and_range(self, size, in_channels, out_channels):
    g = cyclegan.ResnetGenerator(out_channels, base_channels=4, num_blocks=2)
    y = g(tf.random.normal([2, size, size, in_channels]), training=True)
    self.assertEqual(y.shape, (2, size, size, out_channels))
    self.assertAllInRange(y, -1.0, 1.0)
    self.assertEqual(g.stride, 4)

  def test_fully_convolutional_on_other_sizes(self):
    g = cyclegan.ResnetGenerator(3, base_channels=4, num_blocks=1)
    self.assertEqual(g(tf.zeros([1, 32, 32, 3])).shape, (1, 32, 32, 3))
    self.assertEqual(g(tf.zeros([1, 36, 20, 3])).shape, (1, 36, 20, 3))

  def test_default_blocks(self):
    self.assertEqual(cyclegan.default_resnet_blocks(128), 6)
    self.assertEqual(cyclegan.default_resnet_blocks(256), 9)
    self.assertEqual(cyclegan.default_resnet_blocks(512), 9)
    self.assertEqual(cyclegan.default_resnet_blocks((128, 256)), 6)
    g = cyclegan.ResnetGenerator(3, base_channels=4, num_blocks=9)
    self.assertLen(g.res.blocks, 9)


class UNITTest(tf.test.TestCase):

  def _unit(self, **kwargs):
    return unit.UNIT(channels_a=3, channels_b=1, base_channels=4, num_private_blocks=2,
                     num_shared_blocks=1, **kwargs)

  def test_shapes(self):
    u = self._unit()
    x_a, x_b = tf.random.normal([2, 32, 32, 3]), tf.random.normal([2, 32, 32, 1])
    mu_a, mu_b = u.encode(x_a, "a"), u.encode(x_b, "b")
    self.assertEqual(mu_a.shape, (2, 8, 8, 16))
    self.assertEqual(mu_b.shape, (2, 8, 8, 16))
    self.assertEqual(u.decode(mu_a, "b").shape, (2, 32, 32, 1))
    self.assertEqual(u.decode(mu_b, "a").shape, (2, 32, 32, 3))
    self.assertAllInRange(u.decode(mu_b, "a"), -1.0, 1.0)
    self.assertAllClose(u(x_a, source="a", target="b"), u.decode(mu_a, "b"))
    self.assertEqual(u(tf.zeros([1, 24, 40, 1]), source="b", target="b").shape, (1, 24, 40, 1))
    with self.assertRaisesRegex(ValueError, "unknown domain 'c'; valid: a, b"):
      u.encode(x_a, "c")

  def test_shared_layers_are_the_same_variables(self):
    u = self._unit()
    x_a, x_b = tf.random.normal([1, 16, 16, 3]), tf.random.normal([1, 16, 16, 1])
    z = tf.random.normal([1, 4, 4, 16])
    u(x_a, source="a", target="a")
    u(x_b, source="b", target="b")
    enc_a = _used_paths(u, lambda: u.encode(x_a, "a"))
    enc_b = _used_paths(u, lambda: u.encode(x_b, "b"))
    dec_a = _used_paths(u, lambda: u.decode(z, "a"))
    dec_b = _used_paths(u, lambda: u.decode(z, "b"))
    shared_encoder = {v.path for v in u.shared_encoder.trainable_weights}
    shared_decoder = {v.path for v in u.shared_decoder.trainable_weights}
    self.assertNotEmpty(shared_encoder)
    self.assertEqual(enc_a & enc_b, shared_encoder)
    self.assertEqual(dec_a & dec_b, shared_decoder)
    self.assertTrue(all(p.startswith("unit/front_a/") for p in enc_a - shared_encoder))
    self.assertTrue(all(p.startswith("unit/front_b/") for p in enc_b - shared_encoder))
    self.assertTrue(all(p.startswith("unit/back_a/") for p in dec_a - shared_decoder))
    self.assertTrue(all(p.startswith("unit/back_b/") for p in dec_b - shared_decoder))
    # Every variable belongs to one domain's path or to a shared part.
    self.assertEqual(enc_a | enc_b | dec_a | dec_b, {v.path for v in u.trainable_weights})

  def test_paths_do_not_depend_on_the_first_call(self):
    by_methods = self._unit()
    z = by_methods.encode(tf.zeros([1, 16, 16, 3]), "a")
    by_methods.decode(by_methods.encode(tf.zeros([1, 16, 16, 1]), "b"), "b")
    by_methods.decode(z, "a")
    by_call = self._unit()
    by_call(tf.zeros([1, 16, 16, 1]), source="b", target="a")
    by_call(tf.zeros([1, 16, 16, 3]), source="a", target="b")
    self.assertCountEqual(_paths(by_methods), _paths(by_call))
    self.assertTrue(all(p.startswith("unit/") for p in _paths(by_call)))


class WeightPathsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("unet_batch", lambda: pix2pix.UNetGenerator(3, image_size=32, base_channels=4)),
      ("unet_instance", lambda: pix2pix.UNetGenerator(3, levels=3, base_channels=4,
                                                      norm="instance")),
      ("patch_conditional", lambda: pix2pix.PatchDiscriminator(4, conditional=True)),
      ("patch_instance", lambda: pix2pix.PatchDiscriminator(4, norm="instance")),
      ("resnet", lambda: cyclegan.ResnetGenerator(3, base_channels=4, num_blocks=2)),
      ("unit", lambda: unit.UNIT(3, 3, base_channels=4, num_private_blocks=1)))
  def test_unique_paths(self, make):
    model = make()
    x = tf.zeros([1, 32, 32, 3])
    if isinstance(model, unit.UNIT):
      model(x, source="a", target="b")
      model(x, source="b", target="a")
    elif getattr(model, "conditional", False):
      model(x, x)
    else:
      model(x)
    paths = _paths(model)
    self.assertNotEmpty(paths)
    self.assertLen(set(paths), len(paths))
    self.assertTrue(all(p.startswith(model.name + "/") for p in paths))

  def test_unknown_norm(self):
    with self.assertRaisesRegex(ValueError, "unknown normalization 'group'; valid: batch, "
                                "instance, none"):
      cyclegan.ResnetGenerator(3, norm="group")


# Two examples of shape [1, 2, 1] (so [B, H, W, C] inputs are averaged over all
# non-batch axes): a = (1, -2), (0.5, 3); b = (0, 1), (1.5, 1).
A = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32).reshape(2, 1, 2, 1)
B = np.array([[0.0, 1.0], [1.5, 1.0]], np.float32).reshape(2, 1, 2, 1)


class TranslationLossGoldenTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      # (|1 - 0| + |-2 - 1|) / 2 = 2; (|0.5 - 1.5| + |3 - 1|) / 2 = 1.5
      ("l1", losses.l1, [2.0, 1.5]))
  def test_pairwise_golden(self, fn, expected):
    got = fn(tf.constant(A), tf.constant(B))
    self.assertEqual(got.shape, (2,))
    self.assertEqual(got.dtype, tf.float32)
    self.assertAllClose(got, expected, atol=1e-6)
    self.assertAllClose(fn(tf.constant(A, tf.float16), tf.constant(B)), expected, atol=1e-3)
    # Example 1's value depends on example 1 only.
    changed = fn(tf.constant(A), tf.constant(B * [[[[9.0]]], [[[1.0]]]]))
    self.assertAllClose(changed[1], expected[1])

  def test_kl_unit_gaussian_golden(self):
    # The mean of mu^2 over the latent elements (UNIT's code), not 0.5 * sum:
    # (1 + 4) / 2 = 2.5; (0.25 + 9) / 2 = 4.625.
    got = losses.kl_unit_gaussian(tf.constant(A, tf.float16))
    self.assertEqual(got.dtype, tf.float32)
    self.assertAllClose(got, [2.5, 4.625], atol=1e-6)
    # = KL(N(mu, I) || N(0, I)) * 2 / N with KL = 0.5 * sum(mu^2), N = 2.
    kl = 0.5 * np.sum(np.square(A.reshape(2, -1)), axis=1)
    self.assertAllClose(got, kl * 2 / 2, atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
