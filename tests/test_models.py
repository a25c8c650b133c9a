"""Networks: spectral normalization golden values, shapes, ranges, initialization,
normalization epsilons."""

import random
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from models import dcgan
from models import mlp
from models import spectral_norm
from tests import helpers


class SpectralNormTest(tf.test.TestCase):

  def _dense(self, kernel):
    layer = spectral_norm.SNDense(kernel.shape[1], use_bias=False)
    layer.build((None, kernel.shape[0]))
    layer.kernel.assign(kernel)
    layer.sn_u.assign([[0.6, 0.8]])  # Not aligned with the top singular vector.
    return layer

  def test_power_iteration_finds_largest_singular_value(self):
    layer = self._dense(np.diag([3.0, 1.0]).astype(np.float32))
    for _ in range(30):
      layer.power_iteration()
    self.assertAllClose(layer.sigma(), 3.0, atol=1e-4)
    self.assertAllClose(layer.normalized_kernel(), np.diag([1.0, 1 / 3.0]), atol=1e-4)

  def test_conv_kernel_sigma_matches_svd(self):
    layer = spectral_norm.SNConv2D(5, 3)
    layer.build((None, 8, 8, 4))
    w = np.reshape(layer.kernel.numpy(), (-1, 5))
    for _ in range(100):
      layer.power_iteration()
    self.assertAllClose(layer.sigma(), np.linalg.svd(w, compute_uv=False)[0], rtol=1e-3)
    normalized = np.reshape(layer.normalized_kernel().numpy(), (-1, 5))
    self.assertAllClose(np.linalg.svd(normalized, compute_uv=False)[0], 1.0, rtol=1e-3)

  def test_gradient_flows_through_sigma(self):
    # W = diag(3, 1), u = e1: sigma = ||W u|| = 3. d/dW00 of sum(W / sigma)
    # = 1/sigma - sum(W) / sigma^2 * dsigma/dW00 = 1/3 - 4/9 = -1/9.
    # Without the gradient through sigma it would be 1/3.
    layer = self._dense(np.diag([3.0, 1.0]).astype(np.float32))
    layer.sn_u.assign([[1.0, 0.0]])
    with tf.GradientTape() as tape:
      total = tf.reduce_sum(layer.normalized_kernel())
    grad = tape.gradient(total, layer.kernel)
    self.assertAllClose(grad[0, 0], -1.0 / 9.0, atol=1e-6)
    self.assertAllClose(grad[1, 1], 1.0 / 3.0, atol=1e-6)

  def test_forward_does_not_update_u(self):
    layer = self._dense(np.diag([3.0, 1.0]).astype(np.float32))
    before = layer.sn_u.numpy().copy()
    layer(tf.ones([2, 2]), training=True)
    self.assertAllEqual(layer.sn_u.numpy(), before)

  def test_layers_of_finds_nested_layers(self):
    d = dcgan.DCGANDiscriminator((32, 32, 3), 8, norm="none", spectral_norm=True)
    d(tf.zeros([1, 32, 32, 3]))
    self.assertLen(spectral_norm.layers_of(d), 4)  # 3 convs + the output layer


class ShapesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((28, 1), (32, 3), (48, 3), (64, 1), (128, 3))
  def test_dcgan_sizes(self, size, channels):
    g = dcgan.DCGANGenerator((size, size, channels), 4, num_classes=3)
    d = dcgan.DCGANDiscriminator((size, size, channels), 4, num_classes=3)
    x = g(tf.random.normal([2, 16]), tf.constant([0, 2]))
    self.assertEqual(x.shape, (2, size, size, channels))
    self.assertAllInRange(x, -1.0, 1.0)
    self.assertEqual(d(x, tf.constant([0, 2])).shape, (2,))

  def test_standard_cnn_is_miyato_table_3(self):
    # SNGAN's standard CNN at 32 px, base 64 (Miyato et al. 2018, Table 3),
    # counted by hand. G: dense 128 -> 4x4x512 (no bias, BN), 4x4 deconvs
    # 512->256->128->64 (no bias, BN), 3x3 conv 64->3 with bias; each BN has
    # 4 vectors (gamma, beta, moving mean and variance).
    g = dcgan.DCGANGenerator((32, 32, 3), 64, standard_cnn=True)
    x = g(tf.zeros([2, 128]))
    self.assertEqual(x.shape, (2, 32, 32, 3))
    weights = 128 * 8192 + 16 * (512 * 256 + 256 * 128 + 128 * 64) + 9 * 64 * 3 + 3
    self.assertEqual(g.count_params(), weights + 4 * (512 + 256 + 128 + 64))
    # D: 3x3 and 4x4-stride-2 convs 64, 64, 128, 128, 256, 256, then 3x3 512,
    # dense on 4x4x512; biases everywhere (no BN), plus one spectral-norm u
    # vector per layer (its output width).
    d = dcgan.DCGANDiscriminator((32, 32, 3), 64, norm="none", spectral_norm=True,
                                 standard_cnn=True)
    self.assertEqual(d(x).shape, (2,))
    kernels = (9 * 3 * 64 + 16 * 64 * 64 + 9 * 64 * 128 + 16 * 128 * 128 + 9 * 128 * 256
               + 16 * 256 * 256 + 9 * 256 * 512 + 16 * 512)
    widths = 64 + 64 + 128 + 128 + 256 + 256 + 512 + 1
    self.assertEqual(d.count_params(), kernels + widths + widths)  # + biases + u vectors
    self.assertEqual([c.strides for c in d.convs], [(1, 1), (2, 2)] * 3 + [(1, 1)])
    self.assertLen(spectral_norm.layers_of(d), 8)

  def test_unsupported_size(self):
    with self.assertRaisesRegex(ValueError, r"image size 30x30 is not supported .* \(e\.g\. 28, "
                                "32, 48, 64, 96, 128\)"):
      dcgan.DCGANGenerator((30, 30, 3))

  def test_mlp_vectors_are_unbounded(self):
    g = mlp.MLPGenerator((2,), (8,), tanh_output=False)
    g(tf.zeros([1, 2]))
    for v in g.trainable_variables:
      v.assign(tf.ones_like(v) * 3.0)
    self.assertGreater(float(tf.reduce_max(g(tf.ones([1, 2])))), 1.0)
    self.assertEqual(mlp.MLPDiscriminator((8,), 2)(tf.zeros([3, 2]),
                                                   tf.constant([0, 1, 1])).shape, (3,))


_INIT_PROBE = """
import hashlib, keras, numpy as np, tensorflow as tf
from models import cyclegan
keras.utils.set_random_seed(0)
nets = [cyclegan.ResnetGenerator(3, base_channels=4, num_blocks=1, name=n) for n in "ab"]
for net in nets:
  net(tf.zeros([1, 16, 16, 3]))
print(hashlib.sha256(b"".join(v.numpy().tobytes() for n in nets for v in n.weights)).hexdigest())
print(all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(nets[0].weights, nets[1].weights)))
"""


class InitializationTest(tf.test.TestCase):
  """models.blocks.init(): one initializer per layer, seeded by --seed."""

  def test_same_seed_same_weights_in_every_process_and_layers_differ(self):
    random.random()  # Python's random touched before the seed: must not matter.
    out = [subprocess.run([sys.executable, "-c", _INIT_PROBE], env=helpers.subprocess_env(),
                          cwd=helpers.REPO_ROOT, capture_output=True, text=True, check=True
                          ).stdout.split() for _ in range(2)]
    self.assertEqual(out[0][0], out[1][0])  # Was different per process (seed drawn at import).
    self.assertEqual(out[0][1], "False")  # Two generators no longer start identical.


class OutputDtypeTest(tf.test.TestCase):
  """Under a mixed policy every network computes in half precision but returns
  float32 images and logits (its last layer is float32: models.blocks.OUTPUT_DTYPE)."""

  def test_outputs_are_float32_under_mixed_bfloat16(self):
    import keras  # pylint: disable=import-outside-toplevel
    from models import cyclegan, pix2pix, unit  # pylint: disable=import-outside-toplevel
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
      image, z = tf.zeros([2, 16, 16, 3]), tf.zeros([2, 8])
      nets = {
          "dcgan G": (dcgan.DCGANGenerator((16, 16, 3), 4), z),
          "dcgan D (sn)": (dcgan.DCGANDiscriminator((16, 16, 3), 4, norm="none",
                                                    spectral_norm=True), image),
          "mlp G": (mlp.MLPGenerator((2,), (8, 8), tanh_output=False), z),
          "mlp D": (mlp.MLPDiscriminator((8, 8)), tf.zeros([2, 2])),
          "unet": (pix2pix.UNetGenerator(3, image_size=16, base_channels=4), image),
          "patch D": (pix2pix.PatchDiscriminator(4), tf.zeros([2, 32, 32, 3])),
          "resnet G": (cyclegan.ResnetGenerator(3, 4, num_blocks=1), image),
      }
      for name, (net, x) in nets.items():
        self.assertEqual(net(x).dtype, tf.float32, name)
        hidden = [layer for layer in net._flatten_layers(include_self=False)  # pylint: disable=protected-access
                  if layer.weights and layer.compute_dtype == "bfloat16"]
        self.assertNotEmpty(hidden, f"{name}: no half-precision layer")
      u = unit.UNIT(3, 3, 4, num_private_blocks=1)
      self.assertEqual(u(image, source="a", target="b").dtype, tf.float32)
    finally:
      keras.config.set_dtype_policy(previous)


class NormalizationEpsilonTest(tf.test.TestCase):
  """Each family keeps the norm epsilon its checkpoints and golden values were made with:
  Keras's default (1e-3) in DCGAN, PyTorch's (1e-5) in pix2pix, CycleGAN and UNIT."""

  def _epsilons(self, net, *inputs, **kwargs):
    import keras  # pylint: disable=import-outside-toplevel
    net(*inputs, **kwargs)
    layers = net._flatten_layers(include_self=False)  # pylint: disable=protected-access
    norms = [layer for layer in layers if isinstance(
        layer, (keras.layers.BatchNormalization, keras.layers.GroupNormalization))]
    self.assertNotEmpty(norms, net.name)
    return {layer.epsilon for layer in norms}

  def test_epsilon_per_family(self):
    from models import cyclegan, pix2pix, unit  # pylint: disable=import-outside-toplevel
    image, z = tf.zeros([1, 16, 16, 3]), tf.zeros([1, 8])
    self.assertEqual(self._epsilons(dcgan.DCGANGenerator((16, 16, 3), 4), z), {1e-3})
    self.assertEqual(self._epsilons(dcgan.DCGANDiscriminator((16, 16, 3), 4), image), {1e-3})
    for norm in ("batch", "instance"):
      nets = [(pix2pix.UNetGenerator(3, image_size=16, base_channels=4, norm=norm), image),
              (pix2pix.PatchDiscriminator(4, norm=norm), tf.zeros([1, 32, 32, 3])),
              (cyclegan.ResnetGenerator(3, 4, num_blocks=1, norm=norm), image)]
      for net, x in nets:
        self.assertEqual(self._epsilons(net, x), {1e-5}, f"{net.name} {norm}")
      u = unit.UNIT(3, 3, 4, num_private_blocks=1, norm=norm)
      self.assertEqual(self._epsilons(u, image, source="a", target="b"), {1e-5}, norm)


if __name__ == "__main__":
  tf.test.main()
