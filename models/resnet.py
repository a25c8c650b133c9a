"""SNGAN-style ResNet generator and discriminator, with conditional batch norm
in G and a projection discriminator.

Miyato et al., "Spectral Normalization for GANs", 2018 (the ResNets of its
appendix) and Miyato & Koyama, "cGANs with Projection Discriminator", 2018,
as reimplemented by mimicry (torch_mimicry/nets/sngan, cgan_pd):

- G: z -> dense -> s x s x C -> k pre-activation up-blocks (BN, ReLU, nearest
  x2, conv3x3, BN, ReLU, conv3x3; shortcut: nearest x2 and a 1x1 conv) ->
  BN -> ReLU -> conv3x3 -> tanh. With classes, every block's batch norms are
  conditional (`conditioning.ConditionalBatchNorm`); the last one is not.
- D: an optimized first block (conv3x3, ReLU, conv3x3, avgpool 2; shortcut
  avgpool 2 and a 1x1 conv), then pre-activation blocks (ReLU, conv3x3,
  ReLU, conv3x3, [avgpool 2]; a 1x1 conv shortcut where the width or size
  changes) -> ReLU -> global sum pooling -> h -> linear -> logit. With
  classes: logit += <embed(y), h> (projection). No batch norm, so the
  gradient penalty and R1 are per example. Spectral norm (optional, on by
  default) on every conv, the output layer and the class embedding, through
  `models.spectral_norm`, so `spectral_norm.power_iteration(d)` finds them.

Sizes (`plan`): as the DCGAN nets, each side s * 2^k with s in 3..7, k >= 2
(28, 32, 48, 64, 96, 128, 256, ...). G starts at s x s and has k up-blocks
(log2(size / 4) at powers of two: 3 at 32 px, 4 at 64, 5 at 128, 6 at 256);
D has k + 1 blocks.

Rank: `image_shape` (H, W, C) gives the 2-D nets; (D, H, W, C) the same nets
in 3-D (Conv3D / SNConv3D with 3 or 1 a side, x2 nearest upsampling and 2^3
average pooling of volumes, D's sum pooling over D, H and W). The rules below
read "side" as any spatial side: 16^3 and 32^3 volumes get the small nets.

Widths (ch = base_channels, 64 by default), mimicry's nets at ch = 64:
- Images up to 32 px (Miyato et al.'s CIFAR-10 nets): every G layer 4 * ch
  wide (256), every D layer 2 * ch (128); D halves the map until its larger
  side is at most 8 (32 -> 16 -> 8), then keeps it.
- Larger images (STL/ImageNet nets): a G layer d doublings before the image
  is ch * min(2^d, 16) wide (64 px: 1024, 512, 256, 128, 64; 128 px: 1024,
  1024, 512, 256, 128, 64); D block j is ch * min(2^j, 16) wide and the
  first k blocks halve the map (to s x s: 4 x 4 at powers of two), the last
  keeps it. Mimicry's 64 px D halves once more (to 2 x 2; same weights) and
  its 48 px D halves to 3 x 3 and adds a fifth block (1024 wide).

Deviations from mimicry that change no result: the 1x1 shortcut conv runs
before the nearest upsampling in G and after the average pooling in D
(both linear, so they commute; 4x less work); biases start at 0 (PyTorch
draws them); conditional BN's gamma starts at exactly 1 (mimicry: N(1, 0.02)).
Upsampling is nearest (Miyato's Chainer code; mimicry uses bilinear). Convs
keep their bias before a batch norm, as mimicry does, so the parameter
counts are mimicry's. Weights: Glorot uniform with gain sqrt(2) in the
blocks' 3x3 convs and 1 elsewhere, as mimicry. Batch norm: PyTorch's
epsilon (1e-5) and momentum, synchronized over replicas.

Interfaces as in `models/dcgan.py`: G(z, labels, training) -> [B, H, W, C]
(or [B, D, H, W, C]) in [-1, 1]; D(x, labels, training) -> float32 logits
[B]. Under a mixed policy the layers compute in half precision; G's last
conv, D's pooling, output layer and projection run in float32; variables are
float32.
"""

import math

import keras
from keras import ops

from models import blocks
from models import conditioning
from models import dcgan
from models import spectral_norm

# Images whose larger side is at most this use the CIFAR-10 nets (constant widths).
SMALL_IMAGE = 32
# Widest layer, as a multiple of base_channels, of the larger nets.
MAX_MULTIPLIER = 16


def plan(*sides):
  """(k, start_1, ..., start_n): k up-blocks in G from start_1 x ... x start_n.

  Args:
    *sides: height, width (an image) or depth, height, width (a volume).

  Raises:
    ValueError: a size the nets cannot produce, naming the supported ones.
  """
  try:
    return dcgan.upsampling_plan(*sides)
  except ValueError:
    raise ValueError(
        f"image size {'x'.join(map(str, sides))} is not supported by the ResNet nets: each "
        "side must be s * 2^k with s in 3..7 and k >= 2 (e.g. 28, 32, 48, 64, 96, 128, 256); "
        "convert the data with --image_size") from None


def generator_widths(sides, base_channels):
  """[channels of the s x s start, of block 0's output, ..., of block k-1's].

  Args:
    sides: the spatial sizes, (H, W) or (D, H, W).
    base_channels: ch of the width rule (module docstring).
  """
  k = plan(*sides)[0]
  if max(sides) <= SMALL_IMAGE:
    return [4 * base_channels] * (k + 1)
  return [base_channels * min(2 ** d, MAX_MULTIPLIER) for d in range(k, -1, -1)]


def discriminator_plan(sides, base_channels):
  """[(output channels, halves the map?)] of D's k + 1 blocks, block 0 first.

  Args:
    sides: the spatial sizes, (H, W) or (D, H, W).
    base_channels: ch of the width rule (module docstring).
  """
  k, *starts = plan(*sides)
  if max(sides) <= SMALL_IMAGE:
    side, limit, widths = max(sides), 8, [2 * base_channels] * (k + 1)
  else:
    side, limit = max(sides), max(starts)
    widths = [base_channels * min(2 ** j, MAX_MULTIPLIER) for j in range(k + 1)]
  out = []
  for j in range(k + 1):
    down = j == 0 or side > limit  # The optimized block always halves.
    side = side // 2 if down else side
    out.append((widths[j], down))
  return out


def _glorot(gain):
  """Glorot (Xavier) uniform with a gain, a new initializer per layer (see blocks.init)."""
  return keras.initializers.VarianceScaling(gain * gain, mode="fan_avg", distribution="uniform")


def _conv(filters, kernel, gain, sn, name, use_bias=True, rank=2):
  layer = spectral_norm.conv_class(rank) if sn else blocks.conv_class(rank)
  return layer(filters, kernel, padding="same", kernel_initializer=_glorot(gain),
               use_bias=use_bias, bias_initializer="zeros", name=name)


def _dense(units, use_bias, sn, name):
  layer = spectral_norm.SNDense if sn else keras.layers.Dense
  return layer(units, use_bias=use_bias, kernel_initializer=_glorot(1.0), name=name,
               dtype=blocks.OUTPUT_DTYPE)


def upsample(x):
  """Nearest-neighbour x2 upsampling of [B, H, W, C] or [B, D, H, W, C]."""
  for axis in range(1, len(x.shape) - 1):
    x = ops.repeat(x, 2, axis=axis)
  return x


def downsample(x):
  """2 x 2 (x 2) average pooling of [B, H, W, C] (or [B, D, H, W, C])."""
  return ops.average_pool(x, 2, 2, padding="valid")


class GeneratorBlock(keras.layers.Layer):
  """BN -> ReLU -> x2 -> conv3x3 -> BN -> ReLU -> conv3x3, plus x2 -> conv1x1.

  Args:
    in_channels: of the input (the first batch norm's width).
    out_channels: of both convs and the output.
    num_classes: > 0 for conditional batch norms.
    rank: 2 (images) or 3 (volumes).
  """

  def __init__(self, in_channels, out_channels, num_classes=0, rank=2, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes = num_classes
    self.norm_0 = _generator_norm(num_classes, in_channels, "norm_0")
    # No biases: every conv here feeds a batch norm (this block's, the next
    # block's or G's last), which subtracts any per-channel constant. A bias
    # there has a gradient of zero up to rounding, which Adam would blow up
    # into lr-sized steps of noise (and 2 replicas != 1). Mimicry keeps them.
    self.conv_0 = _conv(out_channels, 3, 2.0 ** 0.5, False, "conv_0", use_bias=False, rank=rank)
    self.norm_1 = _generator_norm(num_classes, out_channels, "norm_1")
    self.conv_1 = _conv(out_channels, 3, 2.0 ** 0.5, False, "conv_1", use_bias=False, rank=rank)
    self.shortcut = _conv(out_channels, 1, 1.0, False, "shortcut", use_bias=False, rank=rank)

  def _norm(self, norm, x, labels, training):
    if self.num_classes:
      return norm(x, labels, training=training)
    return norm(x, training=training)

  def call(self, x, labels=None, training=False):
    h = ops.relu(self._norm(self.norm_0, x, labels, training))
    h = self.conv_0(upsample(h))
    h = ops.relu(self._norm(self.norm_1, h, labels, training))
    h = self.conv_1(h)
    return h + upsample(self.shortcut(x))  # = shortcut(upsample(x)): a 1x1 conv commutes.


def _generator_norm(num_classes, channels, name):
  if num_classes:
    return conditioning.ConditionalBatchNorm(num_classes, channels, blocks.TORCH_EPSILON,
                                             name=name)
  return blocks.normalization("batch", name, blocks.TORCH_EPSILON)


class ResNetGenerator(keras.Model):
  """z -> dense -> k residual up-blocks -> BN -> ReLU -> conv3x3 -> tanh.

  Args:
    image_shape: (H, W, C) of the output image, or (D, H, W, C) of a volume;
      see `plan`.
    base_channels: ch of the width rule (module docstring); 64 gives
      mimicry's SNGAN generators at 32, 48, 64 and 128 px.
    num_classes: > 0 for conditional batch norm in every block (labels [B]
      int required in `call`).
    z_dim: if given, the network is built now from a [1, z_dim] input
      (otherwise at its first call).
  """

  def __init__(self, image_shape, base_channels=64, num_classes=0, z_dim=None,
               name="generator", **kwargs):
    super().__init__(name=name, **kwargs)
    rank = blocks.rank_of(image_shape)
    *sides, c = image_shape
    self.image_shape = tuple(image_shape)
    self.num_classes = num_classes
    k, *starts = plan(*sides)
    widths = generator_widths(sides, base_channels)
    self.start = (*starts, widths[0])
    self.project = keras.layers.Dense(math.prod(self.start), kernel_initializer=_glorot(1.0),
                                      use_bias=False, name="project")  # BN follows.
    self.res_blocks = [GeneratorBlock(widths[i], widths[i + 1], num_classes, rank,
                                      name=f"block_{i}") for i in range(k)]
    self.out_norm = blocks.normalization("batch", "out_norm", blocks.TORCH_EPSILON)
    self.to_image = blocks.conv_class(rank)(c, 3, padding="same", kernel_initializer=_glorot(1.0),
                                            name="to_image", dtype=blocks.OUTPUT_DTYPE)
    if z_dim:
      self(ops.zeros((1, z_dim)), ops.zeros((1,), "int32") if num_classes else None)

  def call(self, z, labels=None, training=False):
    if self.num_classes and labels is None:
      raise ValueError(f"{self.name} is conditional ({self.num_classes} classes): pass labels")
    x = ops.reshape(self.project(z), (-1,) + self.start)
    for block in self.res_blocks:
      x = block(x, labels if self.num_classes else None, training=training)
    x = ops.relu(self.out_norm(x, training=training))
    return ops.tanh(self.to_image(x))


class OptimizedBlock(keras.layers.Layer):
  """D's first block: conv3x3 -> ReLU -> conv3x3 -> avgpool, plus avgpool -> conv1x1.

  Args:
    out_channels: of both convs and the output.
    sn: spectrally normalize the convs.
    rank: 2 (images) or 3 (volumes).
  """

  def __init__(self, out_channels, sn, rank=2, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.conv_0 = _conv(out_channels, 3, 2.0 ** 0.5, sn, "conv_0", rank=rank)
    self.conv_1 = _conv(out_channels, 3, 2.0 ** 0.5, sn, "conv_1", rank=rank)
    self.shortcut = _conv(out_channels, 1, 1.0, sn, "shortcut", rank=rank)

  def call(self, x):
    h = downsample(self.conv_1(ops.relu(self.conv_0(x))))
    return h + self.shortcut(downsample(x))


class DiscriminatorBlock(keras.layers.Layer):
  """ReLU -> conv3x3 -> ReLU -> conv3x3 [-> avgpool], plus [avgpool ->] conv1x1.

  The shortcut is the identity when the block keeps width and size.

  Args:
    in_channels: of the input and of the first conv (mimicry's hidden width).
    out_channels: of the second conv and the output.
    down: halve the map.
    sn: spectrally normalize the convs.
    rank: 2 (images) or 3 (volumes).
  """

  def __init__(self, in_channels, out_channels, down, sn, rank=2, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.down = down
    self.conv_0 = _conv(in_channels, 3, 2.0 ** 0.5, sn, "conv_0", rank=rank)
    self.conv_1 = _conv(out_channels, 3, 2.0 ** 0.5, sn, "conv_1", rank=rank)
    self.shortcut = (_conv(out_channels, 1, 1.0, sn, "shortcut", rank=rank)
                     if down or in_channels != out_channels else None)

  def call(self, x):
    h = self.conv_1(ops.relu(self.conv_0(ops.relu(x))))
    s = x
    if self.down:
      h, s = downsample(h), downsample(s)
    if self.shortcut is not None:
      s = self.shortcut(s)  # = avgpool(conv1x1(x)) of mimicry: both are linear.
    return h + s


class ResNetDiscriminator(keras.Model):
  """k + 1 residual blocks -> ReLU -> global sum pooling -> h -> logit [B].

  Args:
    image_shape: (H, W, C) of the input image, or (D, H, W, C) of a volume;
      see `plan`.
    base_channels: ch of the width rule (module docstring); 64 gives
      mimicry's SNGAN discriminators at 32 and 128 px.
    num_classes: > 0 for a projection discriminator: logit += <embed(y), h>
      (labels [B] int required in `call`).
    spectral_norm: spectrally normalize every conv, the output layer and the
      class embedding (SNGAN); False for a plain critic (WGAN-GP).
  """

  def __init__(self, image_shape, base_channels=64, num_classes=0, spectral_norm=True,
               name="discriminator", **kwargs):
    super().__init__(name=name, **kwargs)
    rank = blocks.rank_of(image_shape)
    self.num_classes = num_classes
    layout = discriminator_plan(image_shape[:-1], base_channels)
    self.res_blocks = [OptimizedBlock(layout[0][0], spectral_norm, rank, name="block_0")]
    for j in range(1, len(layout)):
      self.res_blocks.append(DiscriminatorBlock(layout[j - 1][0], layout[j][0], layout[j][1],
                                                spectral_norm, rank, name=f"block_{j}"))
    self.out = _dense(1, True, spectral_norm, "out")
    # The class embedding as a bias-free linear map of one-hot labels: its
    # kernel [classes, C] is the embedding matrix, spectrally normalized as a
    # whole as in mimicry's SNEmbedding.
    self.embed = _dense(layout[-1][0], False, spectral_norm, "embed") if num_classes else None

  def features(self, x, training=False):
    """h [B, C] float32: the blocks, ReLU and global sum pooling (over H, W;
    or D, H, W)."""
    del training  # No layer of D differs between training and inference.
    for block in self.res_blocks:
      x = block(x)
    return ops.sum(ops.cast(ops.relu(x), "float32"), axis=tuple(range(1, len(x.shape) - 1)))

  def class_embedding(self, labels):
    """embed(y) [B, C] float32, the projection's class vectors."""
    return self.embed(ops.one_hot(labels, self.num_classes, dtype="float32"))

  def call(self, x, labels=None, training=False):
    if self.num_classes and labels is None:
      raise ValueError(f"{self.name} is conditional ({self.num_classes} classes): pass labels")
    h = self.features(x, training)
    logits = ops.squeeze(self.out(h), axis=-1)
    if self.num_classes:
      logits = logits + ops.sum(self.class_embedding(labels) * h, axis=-1)
    return logits
