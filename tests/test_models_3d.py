"""The networks, blocks and augmentations of models/ on volumes [B, D, H, W, C].

One class serves both ranks (models/blocks.py: `conv_class`), so these tests
pin what changes with the rank: output shapes at 16^3 and 32^3, 3-D spectral
norm against numpy's SVD, golden penalty values for a linear 3-D critic,
DiffAugment's shifts and cutout boxes along D, H and W, instance and
synchronized batch norm on rank-5 tensors, and the receptive fields of the
PatchGAN and the U-Net measured from the gradient, as the 2-D tests
(tests/test_translation_models.py) do. Small channel counts keep it fast.
"""

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from models import augment
from models import blocks
from models import conditioning
from models import dcgan
from models import penalties
from models import pix2pix
from models import resnet
from models import spectral_norm
from training import randomness

TOP = 1.0 - 2.0**-24  # The largest draw StepRandomness makes.
ALL = ("color", "translation", "cutout")


def _support(grad, axis):
  """Indices along `axis` (0, 1, 2 = D, H, W) where a [D, H, W] gradient is nonzero."""
  others = tuple(a for a in range(3) if a != axis)
  return np.nonzero(np.abs(grad).sum(axis=others))[0]


class ShapesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(16, 32)
  def test_dcgan(self, size):
    shape = (size, size, size, 1)
    labels = tf.constant([0, 2])
    g = dcgan.DCGANGenerator(shape, 4, num_classes=3)
    x = g(tf.random.normal([2, 8], seed=1), labels, training=True)
    self.assertEqual(x.shape, (2, size, size, size, 1))
    self.assertAllInRange(x, -1.0, 1.0)
    self.assertIsInstance(g.ups[0], keras.layers.Conv3DTranspose)
    for kwargs in ({}, {"norm": "none", "spectral_norm": True, "standard_cnn": True}):
      d = dcgan.DCGANDiscriminator(shape, 4, num_classes=3, **kwargs)
      self.assertEqual(d(x, labels, training=True).shape, (2,))
      self.assertEqual(d.convs[0].kernel.shape[:4], (3, 3, 3, 1 + 3) if kwargs else
                       (4, 4, 4, 1 + 3))  # the label maps on channels
    self.assertIsInstance(d.convs[1], spectral_norm.SNConv3D)
    self.assertEqual(d.convs[1].strides, (2, 2, 2))

  # Spectrally normalized layers of D: the optimized block's 3 convs, 3 in
  # each other block that halves (16 -> 8 at 32^3), 2 in each block that
  # keeps the 8^3 map, the output layer and the class embedding.
  @parameterized.parameters((16, 3 + 2 + 2 + 2), (32, 3 + 3 + 2 + 2 + 2))
  def test_resnet(self, size, sn_layers):
    shape = (size, size, size, 2)
    labels = tf.constant([1, 0])
    g = resnet.ResNetGenerator(shape, 4, num_classes=2)
    x = g(tf.random.normal([2, 8], seed=1), labels, training=True)
    self.assertEqual(x.shape, (2, size, size, size, 2))
    self.assertAllInRange(x, -1.0, 1.0)
    d = resnet.ResNetDiscriminator(shape, 4, num_classes=2)
    logits = d(x, labels, training=True)
    self.assertEqual((logits.shape, logits.dtype), ((2,), tf.float32))
    self.assertLen(spectral_norm.layers_of(d), sn_layers)

  @parameterized.parameters((16, 4), (32, 5))
  def test_unet(self, size, levels):
    g = pix2pix.UNetGenerator(1, image_size=(size, size, size), base_channels=4)
    self.assertEqual((g.rank, g.levels), (3, levels))
    y = g(tf.random.normal([2, size, size, size, 2], seed=2), training=True)
    self.assertEqual(y.shape, (2, size, size, size, 1))
    self.assertAllInRange(y, -1.0, 1.0)

  @parameterized.parameters((16, 1, 6), (16, 2, 2), (32, 3, 2))
  def test_patch_discriminator(self, size, num_layers, side):
    # side = size / 2^num_layers - 2 along each axis.
    d = pix2pix.PatchDiscriminator(4, num_layers=num_layers, conditional=True, rank=3)
    x = tf.zeros([2, size, size, size, 1])
    self.assertEqual(d(x, x, training=True).shape, (2, side, side, side, 1))

  def test_patch_discriminator_minimum_input(self):
    for num_layers, side in ((1, 6), (2, 12)):
      self.assertEqual(pix2pix.min_patch_input(num_layers), side)
      d = pix2pix.PatchDiscriminator(4, num_layers=num_layers, rank=3)
      self.assertEqual(d(tf.zeros([1, side, side, side, 1])).shape, (1, 1, 1, 1, 1))
    self.assertEqual(pix2pix.min_patch_input(3), 24)  # the 2-D docstring's "at least 24 px"

  def test_non_cubic(self):
    g = pix2pix.UNetGenerator(1, image_size=(16, 32, 16), base_channels=4)
    self.assertEqual(g(tf.zeros([1, 16, 32, 16, 1])).shape, (1, 16, 32, 16, 1))
    g = dcgan.DCGANGenerator((16, 24, 16, 1), 4)
    self.assertEqual(g(tf.zeros([1, 8])).shape, (1, 16, 24, 16, 1))

  def test_plans(self):
    self.assertEqual(dcgan.upsampling_plan(16, 16, 16), (2, 4, 4, 4))
    self.assertEqual(dcgan.upsampling_plan(32, 32, 32), (3, 4, 4, 4))
    self.assertEqual(dcgan.upsampling_plan(28, 28), (2, 7, 7))  # the 2-D signature
    self.assertEqual(resnet.plan(16, 24, 16), (2, 4, 6, 4))
    self.assertEqual(pix2pix.unet_levels((16, 16, 16)), 4)
    self.assertEqual(pix2pix.unet_levels((16, 64, 64)), 4)

  def test_errors_name_the_bad_value(self):
    # 16 = 2 * 8 and 32 = 4 * 8 need k = 3, where 16 gives s = 2 < 3.
    with self.assertRaisesRegex(ValueError, r"image size 16x32x32 is not supported by the conv "
                                r"nets: each side must be s \* 2\^k"):
      dcgan.DCGANGenerator((16, 32, 32, 1))
    with self.assertRaisesRegex(ValueError, "image size 16x32x32 is not supported by the ResNet"):
      resnet.ResNetDiscriminator((16, 32, 32, 1))
    with self.assertRaisesRegex(ValueError, r"image shape \(16, 16\) is neither \(H, W, C\) "
                                r"nor \(D, H, W, C\)"):
      dcgan.DCGANDiscriminator((16, 16))
    with self.assertRaisesRegex(ValueError, "image size 16x16x6 is too small or odd"):
      pix2pix.unet_levels((16, 16, 6))
    with self.assertRaisesRegex(ValueError, r"image_size \(4, 16, 16, 16\) is neither \(H, W\) "
                                r"nor \(D, H, W\)"):
      pix2pix.UNetGenerator(1, image_size=(4, 16, 16, 16))
    with self.assertRaisesRegex(ValueError, r"rank 4 is not supported; valid: 2 \(images "
                                r"\[B, H, W, C\]\) or 3 \(volumes \[B, D, H, W, C\]\)"):
      pix2pix.PatchDiscriminator(4, rank=4)


class SpectralNorm3DTest(tf.test.TestCase):

  def test_sigma_matches_svd_of_the_reshaped_kernel(self):
    layer = spectral_norm.SNConv3D(5, 3)
    layer.build((None, 4, 4, 4, 2))
    w = np.reshape(layer.kernel.numpy(), (-1, 5))  # [3 * 3 * 3 * 2, 5]
    self.assertEqual(w.shape, (54, 5))
    for _ in range(100):
      layer.power_iteration()
    self.assertAllClose(layer.sigma(), np.linalg.svd(w, compute_uv=False)[0], rtol=1e-3)
    normalized = np.reshape(layer.normalized_kernel().numpy(), (-1, 5))
    self.assertAllClose(np.linalg.svd(normalized, compute_uv=False)[0], 1.0, rtol=1e-3)

  def test_forward_uses_the_normalized_kernel(self):
    layer = spectral_norm.SNConv3D(2, 3, padding="same", use_bias=False)
    x = tf.random.normal([1, 4, 4, 4, 3], seed=4)
    y = layer(x)
    expected = tf.nn.conv3d(x, layer.normalized_kernel(), [1] * 5, "SAME")
    self.assertAllClose(y, expected, atol=1e-6)


class Penalty3DTest(tf.test.TestCase):
  """A linear critic D(x) = sum(w * x) on volumes: its input gradient is w at
  every point, whatever the interpolation factor, so the penalties are known
  by hand: sum(w^2) = (0 + 1 + 4 + ... + 49) / 100 = 1.4."""

  W = np.reshape(np.arange(8, dtype=np.float32) / 10.0, [2, 2, 2, 1])  # [D, H, W, C]

  def _critic(self, x):
    return tf.reduce_sum(self.W * x, axis=[1, 2, 3, 4])

  def _data(self):
    real = tf.random.normal([3, 2, 2, 2, 1], seed=5)
    fake = tf.random.normal([3, 2, 2, 2, 1], seed=6)
    return real, fake, tf.constant([0.0, 0.3, 1.0])

  def test_wasserstein_gradient_penalty(self):
    penalty, norm = penalties.wasserstein_gradient_penalty(self._critic, *self._data())
    self.assertAllClose(norm, [np.sqrt(1.4)] * 3, atol=1e-6)
    self.assertAllClose(penalty, [(np.sqrt(1.4 + 1e-10) - 1.0) ** 2] * 3, atol=1e-6)

  def test_r1(self):
    penalty, norm = penalties.r1_penalty(self._critic, *self._data())
    self.assertAllClose(penalty, [1.4] * 3, atol=1e-6)
    self.assertAllClose(norm, [np.sqrt(1.4)] * 3, atol=1e-6)


class Normalization3DTest(tf.test.TestCase):

  def test_instance_norm_is_per_example_per_channel_over_d_h_w(self):
    # x [B=2, D=2, H=2, W=2, C=2]; gamma 1, beta 0, epsilon e:
    # example 0, channel 0: 1 at d = 0, 3 at d = 1: mean 2, variance 1 -> -+1 / sqrt(1 + e)
    #   (a norm over H, W only would see constant slices and give 0);
    # example 0, channel 1: 10 everywhere -> 0;
    # example 1, channel 0: 0 at h = 0, 4 at h = 1: mean 2, variance 4 -> -+2 / sqrt(4 + e);
    # example 1, channel 1: -1 at w = 0, 1 at w = 1: mean 0, variance 1 -> -+1 / sqrt(1 + e).
    e = blocks.TORCH_EPSILON
    x = np.zeros([2, 2, 2, 2, 2], np.float32)
    x[0, 0, ..., 0], x[0, 1, ..., 0] = 1.0, 3.0
    x[0, ..., 1] = 10.0
    x[1, :, 0, :, 0], x[1, :, 1, :, 0] = 0.0, 4.0
    x[1, :, :, 0, 1], x[1, :, :, 1, 1] = -1.0, 1.0
    expected = np.zeros_like(x)
    expected[0, 0, ..., 0], expected[0, 1, ..., 0] = -1 / np.sqrt(1 + e), 1 / np.sqrt(1 + e)
    expected[1, :, 0, :, 0], expected[1, :, 1, :, 0] = -2 / np.sqrt(4 + e), 2 / np.sqrt(4 + e)
    expected[1, :, :, 0, 1], expected[1, :, :, 1, 1] = -1 / np.sqrt(1 + e), 1 / np.sqrt(1 + e)
    norm = blocks.normalization("instance", "norm", e)
    self.assertAllClose(norm(tf.constant(x)), expected, atol=1e-6)

  def test_synchronized_batch_norm_on_volumes(self):
    # Two replicas, each one [1, 1, 1, 2, 1] volume: (1, 3) and (5, 7). The
    # global batch's mean 4 and variance 5 normalize both: (x - 4) / sqrt(5).
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
      norm = blocks.normalization("batch", "norm", 0.0)
      norm.build((None, 1, 1, 2, 1))
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.reshape(tf.constant([1.0, 3.0]) + 4.0 * float(ctx.replica_id_in_sync_group),
                               [1, 1, 1, 2, 1]))

    @tf.function
    def step(x):
      return strategy.run(lambda x: norm(x, training=True), args=(x,))

    out = np.concatenate([o.numpy() for o in strategy.experimental_local_results(step(values))])
    self.assertAllClose(out.ravel(), (np.array([1, 3, 5, 7]) - 4.0) / np.sqrt(5.0), atol=1e-5)


class Conditioning3DTest(tf.test.TestCase):

  def test_label_maps_broadcast_over_d_h_w(self):
    code = tf.constant([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0]])
    maps = conditioning.label_maps(code, tf.zeros([2, 2, 3, 4, 1]))
    self.assertEqual(maps.shape, (2, 2, 3, 4, 3))
    self.assertAllEqual(maps, np.broadcast_to(code.numpy()[:, None, None, None, :], maps.shape))

  def test_projection_discriminator_sums_over_d_h_w(self):
    d = resnet.ResNetDiscriminator((16, 16, 16, 1), base_channels=4, num_classes=3)
    x = tf.random.normal([2, 16, 16, 16, 1], seed=7)
    y1, y2 = tf.constant([0, 1]), tf.constant([2, 1])
    d(x, y1)
    spectral_norm.power_iteration(d)
    features = x
    for block in d.res_blocks:
      features = block(features)
    h = np.sum(np.maximum(features.numpy(), 0.0), axis=(1, 2, 3))
    self.assertAllClose(d.features(x), h, rtol=1e-5)
    w = d.embed.kernel.numpy()
    table = w / np.linalg.norm(w @ d.embed.sn_u.numpy().T)
    expected = np.sum((table[y1.numpy()] - table[y2.numpy()]) * h, axis=-1)
    self.assertAllClose(d(x, y1) - d(x, y2), expected, rtol=1e-4, atol=1e-4)
    self.assertEqual(float(expected[1]), 0.0)  # Same label, same logit.

  def test_dcgan_discriminator_reads_the_label(self):
    d = dcgan.DCGANDiscriminator((16, 16, 16, 1), 4, num_classes=3, norm="none")
    x = tf.random.normal([2, 16, 16, 16, 1], seed=8)
    self.assertNotAllClose(d(x, tf.constant([0, 0])), d(x, tf.constant([1, 2])))


class Augment3DTest(tf.test.TestCase, parameterized.TestCase):
  # A non-cubic volume (D, H, W) = (8, 16, 32), so that a mixed-up axis shows:
  # largest shifts m = int(size / 8 + 0.5) = 1, 2, 4; cutout sides
  # int(size / 2 + 0.5) = 4, 8, 16.
  SHAPE = (8, 16, 32)

  def _params(self, batch, **given):
    """Neutral draws (no colour change, no shift, no cutout inside) for every op."""
    out = {name: np.full([batch, *shape], 0.5, np.float32)
           for name, shape in augment.param_shapes(ALL, rank=3).items()}
    out["cutout"] = np.zeros([batch, 3], np.float32)
    out.update({k: np.asarray(v, np.float32) for k, v in given.items()})
    return {k: tf.constant(v) for k, v in out.items()}

  def test_param_shapes(self):
    self.assertEqual(augment.param_shapes(ALL, rank=3), {
        "brightness": (1,), "saturation": (1,), "contrast": (1,), "translation": (3,),
        "cutout": (3,), "apply": (3,)})
    self.assertEqual(augment.param_shapes(ALL), augment.param_shapes(ALL, rank=2))
    self.assertEqual(augment.param_shapes(ALL)["translation"], (2,))
    with self.assertRaisesRegex(ValueError, "rank 1 is not supported"):
      augment.param_shapes(ALL, rank=1)

  @parameterized.parameters(
      # shift = floor(u * (2m + 1)) - m, m = (1, 2, 4): u 0 -> -m, 0.5 -> 0, TOP -> +m.
      ((0.0, 0.5, TOP), (3, 5, 7), (2, 5, 11)),
      ((TOP, 0.0, 0.0), (3, 5, 7), (4, 3, 3)),
      ((0.5, TOP, 0.5), (3, 5, 7), (3, 7, 7)),
      ((0.0, 0.5, 0.5), (0, 5, 7), None))  # Shifted out of the volume: all zeros.
  def test_translation_moves_a_voxel(self, u, voxel, expected):
    x = np.zeros([1, *self.SHAPE, 1], np.float32)
    x[(0, *voxel, 0)] = 1.0
    got = augment.translate(tf.constant(x), tf.constant([u], tf.float32)).numpy()[0, ..., 0]
    if expected is None:
      self.assertEqual(np.count_nonzero(got), 0)
    else:
      self.assertEqual(tuple(np.argwhere(got)[0]), expected)
      self.assertEqual(np.count_nonzero(got), 1)

  def test_cutout_box_at_the_drawn_position(self):
    # Centre c = floor(u * (size + 1)), start c - side / 2, along each axis:
    # D: u 0.5, c = floor(4.5) = 4, [2, 6); H: u 0, c = 0, [-4, 4) -> [0, 4);
    # W: u TOP, c = 32, [24, 40) -> [24, 32). 4 * 4 * 8 = 128 voxels.
    got = augment.cutout(tf.ones([1, *self.SHAPE, 2]),
                         tf.constant([[0.5, 0.0, TOP]])).numpy()[0]
    expected = np.ones([*self.SHAPE, 2], np.float32)
    expected[2:6, 0:4, 24:32] = 0.0
    self.assertAllEqual(got, expected)
    self.assertEqual(np.sum(got[..., 0] == 0), 128)

  def test_cutout_whole_cube(self):
    # 16^3: side 8 a side, c = floor(u * 17): 6, 10, 8 -> [2, 10), [6, 14), [4, 12).
    got = augment.cutout(tf.ones([1, 16, 16, 16, 1]),
                         tf.constant([[6.5 / 17, 10.5 / 17, 8.5 / 17]])).numpy()[0, ..., 0]
    expected = np.ones([16, 16, 16], np.float32)
    expected[2:10, 6:14, 4:12] = 0.0
    self.assertAllEqual(got, expected)
    self.assertEqual(np.sum(got == 0), 8 ** 3)

  def test_color_statistics_over_the_whole_volume(self):
    # Contrast draw 0: factor 0.5 about the mean over D, H, W and C; the
    # other draws are neutral (brightness +0, saturation x1).
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 4, 2)).astype(np.float32)
    half, zero = [[0.5], [0.5]], [[0.0], [0.0]]
    got = augment.color(tf.constant(x), half, half, zero)
    mean = x.mean(axis=(1, 2, 3, 4), keepdims=True)
    self.assertAllClose(got, 0.5 * x + 0.5 * mean, atol=1e-6)

  def test_compiles_with_xla_and_is_per_example(self):
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (4, *self.SHAPE, 2)), tf.float32)
    seed = tf.constant([7, 3], tf.int64)

    def draw(offset, local):
      rand = randomness.StepRandomness(seed, 4, offset, local)
      return augment.draw_params(rand.uniform, ALL, "real", rank=3)

    def run(x, params):
      return augment.augment(x, ALL, params, p=0.8)

    params = draw(0, 4)
    self.assertEqual(params["translation"].shape, (4, 3))
    eager = run(x, params)
    self.assertAllClose(tf.function(run, jit_compile=True)(x, params), eager, atol=1e-6)
    # Two replicas' halves of the global batch draw and augment the same rows.
    halves = [run(x[o:o + 2], draw(o, 2)) for o in (0, 2)]
    self.assertAllEqual(tf.concat(halves, 0), eager)

  def test_params_of_the_wrong_rank(self):
    params = {"translation": tf.zeros([1, 2])}
    with self.assertRaisesRegex(ValueError, r"augment param 'translation' has per-example shape "
                                r"\(2,\), but x .* has 3 spatial axes: draw it with "
                                r"param_shapes\(policy, rank=3\), \(3,\)"):
      augment.augment(tf.zeros([1, 4, 4, 4, 1]), ("translation",), params)
    with self.assertRaisesRegex(ValueError, "augment needs .* static spatial sizes"):
      augment.augment(tf.zeros([1, 4, 4, 4, 4, 1]), ("cutout",), {})


class ReceptiveField3DTest(tf.test.TestCase, parameterized.TestCase):
  """The input voxels one output depends on: the support of its gradient."""

  def _field(self, net, x, index):
    with tf.GradientTape() as tape:
      tape.watch(x)
      out = net(x, training=False)[index]
    grad = tape.gradient(out, x)[0, ..., 0].numpy()
    return [_support(grad, axis) for axis in range(3)]

  @parameterized.parameters((1, 32), (2, 48))
  def test_patch_discriminator(self, num_layers, size):
    d = pix2pix.PatchDiscriminator(4, num_layers=num_layers, rank=3)
    x = tf.random.normal([1, size, size, size, 1], seed=9)
    centre = (size // 2 ** num_layers - 2) // 2
    expected = pix2pix.patch_receptive_field(num_layers)
    for support in self._field(d, x, (0, centre, centre, centre, 0)):
      self.assertGreater(support[0], 0)  # the whole field lies inside the input
      self.assertLess(support[-1], size - 1)
      self.assertEqual(support[-1] - support[0] + 1, expected)
      self.assertLen(support, expected)  # contiguous

  def test_unet_sees_the_whole_volume_at_full_depth(self):
    # 16^3 has 4 levels, down to a 1x1x1 bottleneck: every output voxel, a
    # corner too, depends on every input voxel.
    g = pix2pix.UNetGenerator(1, image_size=(16, 16, 16), base_channels=4, norm="none")
    x = tf.random.normal([1, 16, 16, 16, 1], seed=10)
    for support in self._field(g, x, (0, 0, 0, 0, 0)):
      self.assertAllEqual(support, np.arange(16))

  def test_shallow_unet_field_is_the_2d_field_along_each_axis(self):
    # Two levels: a local field, the same along D, H and W as the 2-D net's
    # along H and W (one layer stack, two ranks).
    g3 = pix2pix.UNetGenerator(1, image_size=(32, 32, 32), levels=2, base_channels=4,
                               norm="none")
    g2 = pix2pix.UNetGenerator(1, image_size=(32, 32), levels=2, base_channels=4, norm="none")
    x3 = tf.random.normal([1, 32, 32, 32, 1], seed=11)
    x2 = tf.random.normal([1, 32, 32, 1], seed=11)
    with tf.GradientTape() as tape:
      tape.watch(x2)
      out = g2(x2)[0, 16, 16, 0]
    grad2 = tape.gradient(out, x2)[0, ..., 0].numpy()
    field2 = np.nonzero(np.abs(grad2).sum(axis=1))[0]
    self.assertLess(len(field2), 32)
    for support in self._field(g3, x3, (0, 16, 16, 16, 0)):
      self.assertAllEqual(support, field2)


if __name__ == "__main__":
  tf.test.main()
