"""DCGAN-style convolutional generator and discriminator, for 28 to 128 px
images and 16^3 to 128^3 volumes.

Radford et al., "Unsupervised Representation Learning with Deep Convolutional
GANs", 2016: strided (transposed) convolutions, batch normalization, ReLU in
G, LeakyReLU(0.2) in D, weights from N(0, 0.02). The same family, with other
normalizations, serves WGAN (no change), WGAN-GP (no batch norm in the critic:
the penalty is per example), LSGAN, and SNGAN / SN-WGAN-GP (spectral norm on
every discriminator layer, LeakyReLU(0.1), no batch norm).

Sizes: an image side must be s * 2^k with s in 3..7 and k >= 2 (28 = 7 * 4,
32 = 4 * 8, 48, 64, 96, 128, ...), the same k for every side. G starts at
s x s and doubles k times; D halves k times. Batch norm is `synchronized`:
statistics over the global batch, so that training on N replicas equals
training on one.

Rank: `image_shape` (H, W, C) gives the 2-D nets; (D, H, W, C) the same nets
in 3-D (Conv3D, Conv3DTranspose, SNConv3D: every kernel 4 or 3 a side along
each axis), e.g. 16^3 (16 = 4 * 4) or 32^3 (4 * 8).

`standard_cnn=True` gives the "standard CNN" of Miyato et al. 2018 (Table 3),
SNGAN's own network: G has one more transposed convolution (to
`base_channels` at the full size) and a 3x3 convolution to the image; D puts
a 3x3 stride-1 convolution before each strided one and another at the end
(widths at base 64: G 512, 256, 128, 64; D 64, 64, 128, 128, 256, 256, 512).

Interfaces as in `models/mlp.py`: G(z, labels, training) -> [B, H, W, C]
(or [B, D, H, W, C]) in [-1, 1]; D(x, labels, training) -> logits [B].
Conditioning: a label code (one-hot or a learned embedding) concatenated to
z in G, and as constant feature maps to the image in D
(`conditioning.label_maps`).
"""

import math

import keras
from keras import ops

from models import blocks
from models import conditioning
from models import spectral_norm


def upsampling_plan(*sides):
  """(k, start_1, ..., start_n): side i = start_i * 2^k, the same k for all.

  Args:
    *sides: the output's spatial sizes: height, width (an image) or depth,
      height, width (a volume).

  Raises:
    ValueError: a size the nets cannot produce, naming it and valid examples.
  """
  for k in range(2, 8):
    f = 2 ** k
    if all(side % f == 0 and 3 <= side // f <= 7 for side in sides):
      return (k,) + tuple(side // f for side in sides)
  raise ValueError(
      f"image size {'x'.join(map(str, sides))} is not supported by the conv nets: each side "
      "must be s * 2^k with s in 3..7 and k >= 2 (e.g. 28, 32, 48, 64, 96, 128); convert the "
      "data with --image_size")


class DCGANGenerator(keras.Model):
  """z -> dense -> k transposed convolutions (4x4, stride 2) -> tanh.

  Args:
    image_shape: (H, W, C) of the output image, or (D, H, W, C) of a volume.
    base_channels: channels of the last hidden layer; doubles per level going
      back (64 in the paper).
    num_classes: > 0 for a conditional generator.
    norm: `batch` (the paper) or `none`; see `models.blocks.normalization`.
    standard_cnn: SNGAN's standard CNN (see the module docstring).
  """

  def __init__(self, image_shape, base_channels=64, num_classes=0, norm="batch",
               label_embedding=0, standard_cnn=False, name="generator", **kwargs):
    super().__init__(name=name, **kwargs)
    rank = blocks.rank_of(image_shape)
    *sides, c = image_shape
    self.image_shape = tuple(image_shape)
    self.num_classes = num_classes
    self.label_code = (conditioning.LabelCode(num_classes, label_embedding, name="label_code")
                       if num_classes else None)
    k, *starts = upsampling_plan(*sides)
    hidden = k if standard_cnn else k - 1  # Upsamplings to hidden widths.
    ch = base_channels * 2 ** hidden
    self.start = (*starts, ch)
    self.project = keras.layers.Dense(math.prod(self.start), use_bias=norm != "batch",
                                      kernel_initializer=blocks.init(), name="project")
    self.project_norm = blocks.normalization(norm, "project_norm", blocks.KERAS_EPSILON)
    self.ups, self.norms = [], []
    for i in range(hidden):
      ch //= 2
      self.ups.append(blocks.conv_class(rank, transpose=True)(
          ch, 4, strides=2, padding="same", use_bias=norm != "batch",
          kernel_initializer=blocks.init(), name=f"up_{i}"))
      self.norms.append(blocks.normalization(norm, f"up_{i}_norm", blocks.KERAS_EPSILON))
    if standard_cnn:
      self.to_image = blocks.conv_class(rank)(
          c, 3, padding="same", kernel_initializer=blocks.init(), name="to_image",
          dtype=blocks.OUTPUT_DTYPE)
    else:
      self.to_image = blocks.conv_class(rank, transpose=True)(
          c, 4, strides=2, padding="same", kernel_initializer=blocks.init(), name="to_image",
          dtype=blocks.OUTPUT_DTYPE)

  def call(self, z, labels=None, training=False):
    x = z
    if self.num_classes:
      x = ops.concatenate([x, self.label_code(labels, dtype=z.dtype)], axis=-1)
    x = ops.reshape(self.project(x), (-1,) + self.start)
    x = ops.relu(blocks.apply_norm(self.project_norm, x, training))
    for up, norm in zip(self.ups, self.norms):
      x = ops.relu(blocks.apply_norm(norm, up(x), training))
    return ops.tanh(self.to_image(x))


class DCGANDiscriminator(keras.Model):
  """k convolutions (4x4, stride 2) -> dense -> logit [B].

  Args:
    image_shape: (H, W, C) of the input image, or (D, H, W, C) of a volume.
    base_channels: channels of the first layer; doubles per level.
    num_classes: > 0 for a conditional discriminator.
    norm: `batch` (DCGAN) or `none` (critics with a gradient penalty,
      spectrally normalized nets); see `models.blocks.normalization`. Never on
      the first layer.
    spectral_norm: spectrally normalize every layer.
    negative_slope: of the LeakyReLU (0.2 DCGAN, 0.1 SNGAN).
    standard_cnn: SNGAN's standard CNN (see the module docstring).
  """

  def __init__(self, image_shape, base_channels=64, num_classes=0, norm="batch",
               spectral_norm=False, negative_slope=0.2, label_embedding=0,
               standard_cnn=False, name="discriminator", **kwargs):
    super().__init__(name=name, **kwargs)
    rank = blocks.rank_of(image_shape)
    self.num_classes = num_classes
    self.label_code = (conditioning.LabelCode(num_classes, label_embedding, name="label_code")
                       if num_classes else None)
    self.negative_slope = negative_slope
    k = upsampling_plan(*image_shape[:-1])[0]
    conv = spectral_norm_conv if spectral_norm else _conv
    dense = spectral_norm_dense if spectral_norm else _dense
    # (name, width, kernel, stride) of every convolution.
    layers, ch = [], base_channels
    for i in range(k):
      if standard_cnn:
        layers.append((f"conv_{i}", ch, 3, 1))
      layers.append((f"down_{i}", ch, 4, 2))
      ch *= 2
    if standard_cnn:
      layers.append((f"conv_{k}", ch, 3, 1))
    self.convs, self.norms = [], []
    for i, (layer_name, width, kernel, stride) in enumerate(layers):
      self.convs.append(conv(width, use_bias=i == 0 or norm != "batch", name=layer_name,
                             kernel=kernel, strides=stride, rank=rank))
      self.norms.append(None if i == 0 else
                        blocks.normalization(norm, f"{layer_name}_norm", blocks.KERAS_EPSILON))
    self.out = dense(1, name="out", dtype=blocks.OUTPUT_DTYPE)

  def call(self, x, labels=None, training=False):
    if self.num_classes:
      code = self.label_code(labels, dtype=x.dtype)
      x = ops.concatenate([x, conditioning.label_maps(code, x)], axis=-1)
    for conv, norm in zip(self.convs, self.norms):
      x = keras.activations.leaky_relu(blocks.apply_norm(norm, conv(x), training),
                                       negative_slope=self.negative_slope)
    x = ops.reshape(x, (ops.shape(x)[0], -1))
    return ops.squeeze(self.out(x), axis=-1)


def _conv(ch, use_bias, name, kernel=4, strides=2, rank=2):
  return blocks.conv_class(rank)(ch, kernel, strides=strides, padding="same",
                                 use_bias=use_bias, kernel_initializer=blocks.init(), name=name)


def spectral_norm_conv(ch, use_bias, name, kernel=4, strides=2, rank=2):
  return spectral_norm.conv_class(rank)(ch, kernel, strides=strides, padding="same",
                                        use_bias=use_bias, kernel_initializer=blocks.init(),
                                        name=name)


def _dense(units, name, dtype=None):
  return keras.layers.Dense(units, kernel_initializer=blocks.init(), name=name, dtype=dtype)


def spectral_norm_dense(units, name, dtype=None):
  return spectral_norm.SNDense(units, kernel_initializer=blocks.init(), name=name, dtype=dtype)
