"""models/resnet.py: sizes and block counts, the projection, conditional batch
norm, spectral norm, per-example D, mixed precision, mimicry's parameter counts."""

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from models import resnet
from models import spectral_norm


def _blocks(model):
  """Names of a model's residual blocks, in order."""
  return [layer.name for layer in model._flatten_layers(include_self=False, recursive=False)  # pylint: disable=protected-access
          if layer.name.startswith("block_")]


def _trainable_count(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


class ShapesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((32, 3, 3), (32, 1, 3), (64, 3, 4), (128, 1, 5), (256, 3, 6),
                            (28, 1, 2), (48, 3, 3))
  def test_sizes_and_block_counts(self, size, channels, ups):
    g = resnet.ResNetGenerator((size, size, channels), base_channels=2)
    d = resnet.ResNetDiscriminator((size, size, channels), base_channels=2)
    x = g(tf.random.normal([2, 16]), training=True)
    self.assertEqual(x.shape, (2, size, size, channels))
    self.assertAllInRange(x, -1.0, 1.0)
    logits = d(x, training=True)
    self.assertEqual(logits.shape, (2,))
    self.assertEqual(logits.dtype, tf.float32)
    self.assertEqual(_blocks(g), [f"block_{i}" for i in range(ups)])  # log2(size / 4) at 2^n.
    self.assertEqual(_blocks(d), [f"block_{i}" for i in range(ups + 1)])

  @parameterized.parameters((32, 8), (64, 4), (128, 4), (256, 4), (28, 7), (48, 6))
  def test_discriminator_final_map(self, size, side):
    d = resnet.ResNetDiscriminator((size, size, 1), base_channels=2)
    x = tf.zeros([1, size, size, 1])
    for block in d.res_blocks:
      x = block(x)
    self.assertEqual(x.shape[1:3], (side, side))

  def test_non_square(self):
    g = resnet.ResNetGenerator((32, 48, 3), base_channels=2)
    x = g(tf.zeros([2, 8]))
    self.assertEqual(x.shape, (2, 32, 48, 3))
    self.assertEqual(resnet.ResNetDiscriminator((32, 48, 3), 2)(x).shape, (2,))

  def test_unsupported_size(self):
    with self.assertRaisesRegex(ValueError, r"image size 30x30 is not supported by the ResNet "
                                r"nets.*\(e\.g\. 28, 32, 48, 64, 96, 128, 256\)"):
      resnet.ResNetGenerator((30, 30, 3))
    with self.assertRaisesRegex(ValueError, "image size 100x100"):
      resnet.ResNetDiscriminator((100, 100, 3))

  def test_conditional_nets_refuse_missing_labels(self):
    with self.assertRaisesRegex(ValueError, "conditional"):
      resnet.ResNetGenerator((32, 32, 3), 2, num_classes=3)(tf.zeros([1, 8]))


class ProjectionTest(tf.test.TestCase):

  def test_label_changes_logit_by_the_projection(self):
    d = resnet.ResNetDiscriminator((32, 32, 3), base_channels=4, num_classes=5)
    x = tf.random.normal([3, 32, 32, 3], seed=1)
    y1, y2 = tf.constant([0, 1, 4]), tf.constant([2, 1, 3])
    d(x, y1)
    for _ in range(3):
      spectral_norm.power_iteration(d)
    h = d.features(x).numpy()
    # The embedding by hand: its kernel over ||W u|| (models/spectral_norm.py).
    w = d.embed.kernel.numpy()
    table = w / np.linalg.norm(w @ d.embed.sn_u.numpy().T)
    expected = np.sum((table[y1.numpy()] - table[y2.numpy()]) * h, axis=-1)
    self.assertAllClose(d(x, y1) - d(x, y2), expected, rtol=1e-4, atol=1e-4)
    self.assertEqual(float(expected[1]), 0.0)  # Same label, same logit.
    self.assertGreater(float(np.min(np.abs(expected[[0, 2]]))), 1e-4)
    # The unconditional part is the output layer on h.
    self.assertAllClose(d(x, y1) - np.sum(table[y1.numpy()] * h, axis=-1),
                        np.squeeze(d.out(h).numpy(), -1), rtol=1e-4, atol=1e-4)


class ConditionalBatchNormTest(tf.test.TestCase):

  def test_labels_matter_only_through_their_own_embedding(self):
    g = resnet.ResNetGenerator((32, 32, 3), base_channels=2, num_classes=3, z_dim=8)
    z = tf.random.normal([4, 8], seed=2)

    def out(label, training):
      # Training-mode calls update the moving statistics; put them back, so
      # that every inference-mode call sees the same ones.
      saved = [v.numpy() for v in g.non_trainable_variables]
      images = g(z, tf.fill([4], label), training=training).numpy()
      for v, value in zip(g.non_trainable_variables, saved):
        v.assign(value)
      return images

    for training in (False, True):
      for label in (1, 2):
        self.assertAllClose(out(label, training), out(0, training), atol=1e-6)
    before = {(c, t): out(c, t) for c in range(3) for t in (False, True)}
    norm = g.res_blocks[1].norm_1
    norm.gamma.embeddings.assign(tf.tensor_scatter_nd_update(
        norm.gamma.embeddings, [[1]], [tf.fill([norm.gamma.output_dim], 1.7)]))
    norm.beta.embeddings.assign(tf.tensor_scatter_nd_update(
        norm.beta.embeddings, [[1]], [tf.fill([norm.beta.output_dim], 0.3)]))
    for training in (False, True):
      self.assertNotAllClose(out(1, training), before[1, training], atol=1e-3)
      for label in (0, 2):
        self.assertAllClose(out(label, training), before[label, training], atol=1e-6)


class SpectralNormTest(tf.test.TestCase):

  def test_every_conv_and_dense_is_normalized_to_sigma_one(self):
    d = resnet.ResNetDiscriminator((32, 32, 3), base_channels=4, num_classes=3)
    d(tf.zeros([1, 32, 32, 3]), tf.zeros([1], tf.int32))
    layers = [l for l in d._flatten_layers(include_self=False)  # pylint: disable=protected-access
              if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    normalized = spectral_norm.layers_of(d)
    self.assertEqual(layers, normalized)
    self.assertLen(normalized, 3 + 3 + 2 + 2 + 2)  # 3 convs in blocks 0, 1; 2 in 2, 3; out; embed.

    @tf.function
    def iterate():
      for _ in tf.range(300):  # A graph loop: unrolled, it takes a minute to trace.
        spectral_norm.power_iteration(d)

    iterate()
    for layer in normalized:
      kernel = np.reshape(layer.normalized_kernel().numpy(), (-1, layer.kernel.shape[-1]))
      self.assertAllClose(np.linalg.svd(kernel, compute_uv=False)[0], 1.0, rtol=1e-3,
                          msg=layer.path)

  def test_without_spectral_norm(self):
    d = resnet.ResNetDiscriminator((32, 32, 3), base_channels=4, spectral_norm=False)
    self.assertEqual(d(tf.zeros([2, 32, 32, 3])).shape, (2,))
    self.assertEmpty(spectral_norm.layers_of(d))


class PerExampleTest(tf.test.TestCase):

  def test_discriminator_treats_examples_independently(self):
    d = resnet.ResNetDiscriminator((64, 64, 3), base_channels=2, num_classes=2)
    x = tf.random.normal([2, 64, 64, 3], seed=3)
    labels = tf.constant([0, 1])
    changed = tf.concat([x[:1], 3.0 * x[1:] + 1.0], axis=0)
    for training in (False, True):
      a, b = d(x, labels, training=training), d(changed, labels, training=training)
      self.assertAllClose(a[0], b[0], rtol=1e-6, atol=1e-6)
      self.assertNotAllClose(a[1], b[1])
    self.assertEmpty([l for l in d._flatten_layers()  # pylint: disable=protected-access
                      if isinstance(l, keras.layers.BatchNormalization)])


class MixedPrecisionTest(tf.test.TestCase):

  def test_float32_outputs_and_variables_under_mixed_bfloat16(self):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
      g = resnet.ResNetGenerator((32, 32, 3), base_channels=2, num_classes=2)
      d = resnet.ResNetDiscriminator((32, 32, 3), base_channels=2, num_classes=2)
      labels = tf.constant([0, 1])
      x = g(tf.zeros([2, 8]), labels, training=True)
      self.assertEqual(x.dtype, tf.float32)
      self.assertEqual(d(x, labels, training=True).dtype, tf.float32)
      for net in (g, d):
        self.assertEqual({v.dtype for v in net.weights}, {"float32"}, net.name)
        hidden = [l for l in net._flatten_layers(include_self=False)  # pylint: disable=protected-access
                  if l.weights and l.compute_dtype == "bfloat16"]
        self.assertNotEmpty(hidden, net.name)
    finally:
      keras.config.set_dtype_policy(previous)


class ParameterCountTest(tf.test.TestCase):
  """Mimicry's SNGAN-32 (ngf 256, ndf 128) and cGAN-PD-32, counted from its source:
  G: l1 128*4096+4096; 3 x (c1, c2 256*256*9+256, c_sc 256*256+256, 2 BN 512)
  (CBN: 2 x 10*512); b5 512; c5 256*3*9+3. D: optimized block 3*128*9+128,
  128*128*9+128, 3*128+128; down block 2 x (128*128*9+128), 128*128+128; two
  blocks 2 x (128*128*9+128); l5 129 (+ embedding 10*128).
  Ours has no G biases before a batch norm (models/resnet.py): 4096 (l1) +
  3 x 3 x 256 fewer."""

  def test_mimicry_sngan_32(self):
    no_bias = 4096 + 3 * 3 * 256
    for classes, g_count, d_count in ((0, 4_276_739 - no_bias, 1_053_825),
                                      (10, 4_304_387 - no_bias, 1_055_105)):
      g = resnet.ResNetGenerator((32, 32, 3), 64, num_classes=classes, z_dim=128)
      d = resnet.ResNetDiscriminator((32, 32, 3), 64, num_classes=classes)
      d(tf.zeros([1, 32, 32, 3]), tf.zeros([1], tf.int32) if classes else None)
      self.assertEqual(_trainable_count(g), g_count)
      self.assertEqual(_trainable_count(d), d_count)

  def test_weights_keep_their_paths(self):
    g = resnet.ResNetGenerator((32, 32, 3), 2, num_classes=2, z_dim=8, name="ema_generator")
    paths = [v.path for v in g.weights]
    self.assertEqual(paths[:2], ["ema_generator/project/kernel",
                                 "ema_generator/block_0/norm_0/norm/moving_mean"])
    self.assertIn("ema_generator/block_2/shortcut/kernel", paths)
    self.assertEqual(paths[-2:], ["ema_generator/to_image/kernel", "ema_generator/to_image/bias"])


if __name__ == "__main__":
  tf.test.main()
