"""pipeline.export of runs trained on volumes: the SavedModel's signature is
one rank up (sampling: z -> [B, D, H, W, C]; translation: [B, D, H, W, C] of
any size, padded to the stride along D, H and W and cropped back), it loads
with TensorFlow alone and reproduces the generator.

The algorithms are fakes around small 3-D Keras networks, and around
models/'s own 3-D DCGAN generator and U-Net."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import base
from inference import export
from models import dcgan
from models import pix2pix

PATCH = 8


class _Generator3D(keras.Model):
  """z [B, 8] -> [B, 8, 8, 8, 1] in [-1, 1], with the `(z, labels, training)` interface."""

  def __init__(self):
    super().__init__(name="generator")
    self.dense = keras.layers.Dense(4 * 4 * 4 * 2)
    self.up = keras.layers.Conv3DTranspose(1, 4, strides=2, padding="same", activation="tanh")

  def call(self, z, labels=None, training=False):
    del labels, training
    return self.up(tf.reshape(self.dense(z), (-1, 4, 4, 4, 2)))


class _FakeSampling:
  inference = "sampling"
  ema_generator = None
  num_classes = 0

  def __init__(self, generator=None, shape=(PATCH, PATCH, PATCH, 1)):
    self.config = type("Config", (), {"algo": "dcgan", "z_dim": 8})()
    self.data = base.DataInfo("image", shape, 0, "fake")
    self.generator = generator or _Generator3D()
    self.generator(tf.zeros((1, 8)))


class _FakeTranslation:
  """A 3-D translation model of stride 2: one strided convolution down, one up."""
  inference = algorithms.TRANSLATION
  stride = 2

  def __init__(self, net=None, patch=PATCH):
    self.config = type("Config", (), {"algo": "pix2pix"})()
    self.data = base.DataInfo("paired", (patch, patch, patch, 1), 0, "fake")
    self.net = net or keras.Sequential([
        keras.layers.Conv3D(4, 4, strides=2, padding="same"),
        keras.layers.Conv3DTranspose(1, 4, strides=2, padding="same", activation="tanh")])
    self.stride = getattr(net, "stride", 2)
    self.net(tf.zeros((1, patch, patch, patch, 1)))

  def translation_direction(self, direction):
    return direction or "AtoB", False

  def translate(self, x, reverse=False):
    del reverse
    return self.net(x, training=False)

  def translation_networks(self):
    return [self.net]


def _signature_shape(serve):
  (spec,) = serve.structured_input_signature[1].values()
  return spec.shape.as_list()


def test_sampling_signature_gives_volumes(tmp_path):
  algorithm = _FakeSampling()
  out = os.path.join(tmp_path, "exported")
  info = export.export(algorithm, out, step=5)
  assert info["output_shape"] == [None, PATCH, PATCH, PATCH, 1]
  serve = tf.saved_model.load(out).signatures["serving_default"]
  assert _signature_shape(serve) == [None, 8]
  z = tf.random.stateless_normal((3, 8), seed=(1, 2))
  y = serve(z=z)["images"]
  assert y.shape == (3, PATCH, PATCH, PATCH, 1)
  np.testing.assert_allclose(y, algorithm.generator(z), atol=1e-6)


def _reflect_to_stride(x, stride):
  """numpy's reflection padding at the end of D, H and W to multiples of `stride`."""
  pad = [(0, 0)] + [(0, -s % stride) for s in x.shape[1:-1]] + [(0, 0)]
  return np.pad(x, pad, mode="reflect")


def test_translation_signature_takes_volumes_of_any_size(tmp_path):
  algorithm = _FakeTranslation()
  out = os.path.join(tmp_path, "exported")
  info = export.export(algorithm, out, step=5)
  assert info["patch_size"] == [PATCH] * 3
  assert info["inputs"] == {"images": "[None, None, None, None, 1] float32 in [-1, 1]"}
  with open(os.path.join(out, export.INFO_NAME), encoding="utf-8") as f:
    assert json.load(f)["patch_size"] == [PATCH] * 3
  serve = tf.saved_model.load(out).signatures["serving_default"]
  assert _signature_shape(serve) == [None, None, None, None, 1]
  rng = np.random.default_rng(0)
  # A training patch: the generator's own output.
  x = rng.uniform(-1, 1, (2, PATCH, PATCH, PATCH, 1)).astype(np.float32)
  np.testing.assert_allclose(serve(images=tf.constant(x))["images"], algorithm.net(x), atol=1e-6)
  # Odd sizes: reflected to the stride along D, H and W, translated, cropped back.
  x = rng.uniform(-1, 1, (1, 5, 7, 9, 1)).astype(np.float32)
  y = serve(images=tf.constant(x))["images"].numpy()
  assert y.shape == x.shape
  expected = algorithm.net(_reflect_to_stride(x, 2)).numpy()[:, :5, :7, :9]
  np.testing.assert_allclose(y, expected, atol=1e-6)


def test_models_3d_networks_export_and_reproduce(tmp_path):
  """models/'s 3-D DCGAN generator (z -> 16^3) and 3-D U-Net (16^3 patches,
  stride 16) through the export, loaded back."""
  sampler = _FakeSampling(dcgan.DCGANGenerator((16, 16, 16, 1), base_channels=4), (16, 16, 16, 1))
  out = os.path.join(tmp_path, "dcgan")
  assert export.export(sampler, out)["output_shape"] == [None, 16, 16, 16, 1]
  z = tf.random.stateless_normal((2, 8), seed=(3, 4))
  y = tf.saved_model.load(out).signatures["serving_default"](z=z)["images"]
  assert y.shape == (2, 16, 16, 16, 1)
  np.testing.assert_allclose(y, sampler.generator(z, None, training=False), atol=1e-5)

  translator = _FakeTranslation(pix2pix.UNetGenerator(1, image_size=(16, 16, 16),
                                                      base_channels=4), patch=16)
  assert translator.stride == 16
  out = os.path.join(tmp_path, "unet")
  export.export(translator, out)
  serve = tf.saved_model.load(out).signatures["serving_default"]
  x = np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 16, 1)).astype(np.float32)
  np.testing.assert_allclose(serve(images=tf.constant(x))["images"],
                             translator.net(x, training=False), atol=1e-5)
  x = x[:, :12, :16, :10]  # Reflected to 16 along D and W inside, cropped back.
  y = serve(images=tf.constant(x))["images"].numpy()
  expected = translator.net(_reflect_to_stride(x, 16), training=False).numpy()[:, :12, :, :10]
  np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 5, 7, 9, 2), (2, 1, 6, 3, 1), (1, 4, 4, 1)])
def test_pad_to_stride_of_any_rank_matches_numpy(shape):
  x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
  stride = 4
  small = any(-s % stride >= s for s in shape[1:-1])  # Too small to reflect: the edge.
  pad = [(0, 0)] + [(0, -s % stride) for s in shape[1:-1]] + [(0, 0)]
  expected = np.pad(x, pad, mode="edge" if small else "reflect")
  np.testing.assert_array_equal(export.pad_to_stride(tf.constant(x), stride), expected)
