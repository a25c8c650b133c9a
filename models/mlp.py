"""Fully connected generator and discriminator (the original GAN, CGAN, and the
MLPs of the 2-D benchmarks).

Interfaces shared by every network family:
- generator(z [B, Z], labels [B] int or None, training) -> samples of
  `data_shape`: images in [-1, 1] (tanh) or vectors (linear output);
- discriminator(x, labels [B] or None, training) -> raw logits [B].
Conditioning concatenates a label code (one-hot, or a learned embedding) to the
input ("cgan", Mirza & Osindero 2014). Models never see the distribution strategy.
"""

import math

import keras
from keras import ops

from models import blocks
from models import conditioning
from models import spectral_norm


class MLPGenerator(keras.Model):
  """z (and a one-hot label) -> ReLU MLP -> `data_shape`.

  Args:
    data_shape: output shape per example, e.g. (2,) or (28, 28, 1).
    hidden: widths of the hidden layers.
    num_classes: > 0 for a conditional generator.
    label_embedding: 0 for one-hot labels, else a learned embedding's size.
    tanh_output: squash to [-1, 1] (images); False for 2-D vectors.
  """

  def __init__(self, data_shape, hidden=(512, 512, 512), num_classes=0, tanh_output=True,
               label_embedding=0, name="generator", **kwargs):
    super().__init__(name=name, **kwargs)
    self.data_shape = tuple(data_shape)
    self.num_classes = num_classes
    self.label_code = (conditioning.LabelCode(num_classes, label_embedding, name="label_code")
                       if num_classes else None)
    self.tanh_output = tanh_output
    self.hidden = [keras.layers.Dense(h, activation="relu", name=f"dense_{i}")
                   for i, h in enumerate(hidden)]
    self.out = keras.layers.Dense(math.prod(self.data_shape), name="out",
                                  dtype=blocks.OUTPUT_DTYPE)

  def call(self, z, labels=None, training=False):
    x = z
    if self.num_classes:
      x = ops.concatenate([x, self.label_code(labels, dtype=z.dtype)], axis=-1)
    for layer in self.hidden:
      x = layer(x)
    x = self.out(x)
    if self.tanh_output:
      x = ops.tanh(x)
    return ops.reshape(x, (-1,) + self.data_shape)


class MLPDiscriminator(keras.Model):
  """x (flattened, and a one-hot label) -> LeakyReLU(0.2) MLP -> logit [B].

  Args:
    hidden: widths of the hidden layers.
    num_classes: > 0 for a conditional discriminator.
    label_embedding: 0 for one-hot labels, else a learned embedding's size.
    spectral_norm: spectrally normalize every layer (SNGAN).
  """

  def __init__(self, hidden=(512, 512, 512), num_classes=0, spectral_norm=False,
               label_embedding=0, name="discriminator", **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes = num_classes
    self.label_code = (conditioning.LabelCode(num_classes, label_embedding, name="label_code")
                       if num_classes else None)
    dense = spectral_norm_dense if spectral_norm else keras.layers.Dense
    self.hidden = [dense(h, name=f"dense_{i}") for i, h in enumerate(hidden)]
    self.out = dense(1, name="out", dtype=blocks.OUTPUT_DTYPE)

  def call(self, x, labels=None, training=False):
    x = ops.reshape(x, (ops.shape(x)[0], -1))
    if self.num_classes:
      x = ops.concatenate([x, self.label_code(labels, dtype=x.dtype)], axis=-1)
    for layer in self.hidden:
      x = keras.activations.leaky_relu(layer(x), negative_slope=0.2)
    return ops.squeeze(self.out(x), axis=-1)


def spectral_norm_dense(units, name=None, dtype=None):
  return spectral_norm.SNDense(units, name=name, dtype=dtype)
