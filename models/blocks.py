"""Layers shared by the networks (DCGAN, MLP, pix2pix, CycleGAN, UNIT).

- `normalization`: synchronized batch norm, instance norm, or none, by name,
  with the epsilon of the calling network family;
- `reflect_pad` / `zero_pad`: symmetric spatial padding (Keras has no
  ReflectionPadding2D; `ops.pad(mode="reflect")` does it);
- `conv_class` / `conv`: the convolution of a rank, so that one network class
  serves 2-D images [B, H, W, C] and 3-D volumes [B, D, H, W, C] (as MONAI's
  `Convolution(spatial_dims=...)`), with no 3-D twin;
- `ResidualBlock`: CycleGAN's residual block, also used by UNIT.

Weights start from N(0, 0.02), as in the reference implementations of pix2pix
and CycleGAN.
"""

import keras
from keras import ops
import tensorflow as tf


def init():
  """N(0, 0.02) weights (DCGAN, pix2pix, CycleGAN), a new initializer per layer.

  Keras draws an unseeded initializer's seed from Python's `random` when the
  initializer is *created*. One module-level object would take its seed at
  import, before `--seed` is applied (so every process started from other
  weights), and give every layer of one shape the same initial weights.
  Created per layer, inside the trainer's `keras.utils.set_random_seed`, each
  layer gets its own seed, the same in every process.
  """
  return keras.initializers.RandomNormal(0.0, 0.02)


# Spatial ranks of the networks: 2 for images [B, H, W, C], 3 for volumes
# [B, D, H, W, C] (channels last in both).
RANKS = (2, 3)


def check_rank(rank):
  """Returns rank if it is one of RANKS.

  Raises:
    ValueError: any other rank, naming it and the valid ones.
  """
  if rank not in RANKS:
    raise ValueError(f"rank {rank!r} is not supported; valid: 2 (images [B, H, W, C]) or 3 "
                     "(volumes [B, D, H, W, C])")
  return rank


def rank_of(shape):
  """The spatial rank of an example shape: 2 for (H, W, C), 3 for (D, H, W, C).

  Raises:
    ValueError: a shape of another length, naming it and the valid forms.
  """
  if len(shape) - 1 not in RANKS:
    raise ValueError(f"image shape {tuple(shape)} is neither (H, W, C) nor (D, H, W, C)")
  return len(shape) - 1


_CONVS = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_CONV_TRANSPOSES = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}


def conv_class(rank, transpose=False):
  """keras.layers.Conv2D / Conv3D (or their transposes) for a spatial rank.

  Raises:
    ValueError: a rank not in RANKS.
  """
  return (_CONV_TRANSPOSES if transpose else _CONVS)[check_rank(rank)]


NORMS = ("batch", "instance", "none")

# The variance epsilons of `normalization`. Each network family keeps the one
# its checkpoints and golden values were made with, so every caller names it.
# PyTorch's BatchNorm2d / InstanceNorm2d default, as in the pix2pix and
# CycleGAN reference code: pix2pix, CycleGAN, UNIT.
TORCH_EPSILON = 1e-5
# Keras's BatchNormalization default: the DCGAN family (bench/torch_train_step.py
# gives its PyTorch twin the same).
KERAS_EPSILON = 1e-3


class GlobalBatchNormalization(keras.layers.BatchNormalization):
  """Batch norm whose training statistics are those of the global batch.

  With several replicas in sync it is Keras's synchronized batch norm: every
  training-mode call all-reduces the moments, so N replicas train like one.
  With one replica the local batch is the global batch, and it skips that
  all-reduce: a collective that XLA cannot compile on CPU
  (tests/test_tf_facts.py), which would keep a one-device step from being
  compiled. Like Keras's own layer, it reads the replica count from the
  replica context it is called in; nothing else about the strategy.
  """

  def call(self, inputs, training=None, mask=None):
    ctx = tf.distribute.get_replica_context()
    self.synchronized = ctx is not None and ctx.num_replicas_in_sync > 1
    return super().call(inputs, training=training, mask=mask)


def normalization(kind, name, epsilon):
  """A normalization layer by name, or None for `none`.

  Args:
    kind: `batch`: batch norm synchronized across replicas (statistics over the
      global batch, so that N replicas train like one; DCGAN's and pix2pix's
      choice), momentum 0.9 (PyTorch's BatchNorm2d default, 0.1 in its terms);
      `instance`: per-example, per-channel normalization over every spatial
      axis (H, W; or D, H, W of a volume) with a learned scale and offset
      (`GroupNormalization(groups=-1)`; CycleGAN's and UNIT's choice);
      `none`.
    name: the layer's name.
    epsilon: added to the variance; `TORCH_EPSILON` or `KERAS_EPSILON`, the
      one the calling network has always used.

  Raises:
    ValueError: an unknown kind; the message lists the valid ones.
  """
  if kind == "batch":
    return GlobalBatchNormalization(momentum=0.9, epsilon=epsilon, name=name)
  if kind == "instance":
    return keras.layers.GroupNormalization(groups=-1, epsilon=epsilon, name=name)
  if kind == "none":
    return None
  raise ValueError(f"unknown normalization {kind!r}; valid: {', '.join(NORMS)}")


def per_example(model):
  """Whether `model` treats every example of a batch alone, in training mode
  too: no batch normalization anywhere in it (conditional ones included), so
  that one call on a concatenated batch gives the logits of separate calls."""
  return not any(isinstance(layer, keras.layers.BatchNormalization)
                 for layer in model._flatten_layers())  # pylint: disable=protected-access  (Keras 3's recursive layer list)


def apply_norm(norm, x, training):
  """`norm(x)`, or x when norm is None."""
  return x if norm is None else norm(x, training=training)


def _spatial_padding(x, p):
  """[[0, 0], [p, p] per spatial axis, [0, 0]] for a channels-last batch x."""
  return [[0, 0]] + [[p, p]] * (len(x.shape) - 2) + [[0, 0]]


def reflect_pad(x, p):
  """Pads every spatial axis of [B, H, W, C] or [B, D, H, W, C] by p on each
  side, mirroring (p smaller than each spatial size)."""
  return ops.pad(x, _spatial_padding(x, p), mode="reflect")


def zero_pad(x, p):
  """Pads every spatial axis of [B, H, W, C] or [B, D, H, W, C] by p zeros on each side."""
  return ops.pad(x, _spatial_padding(x, p))


# The dtype of every network's last layer, whatever the policy: under
# mixed_float16/mixed_bfloat16 the images a generator returns and the logits
# a discriminator returns are computed in float32 (Keras's mixed-precision
# guide: the output layer in float32 for numeric stability). Only the dtype
# policy of that one layer changes; the variables are float32 either way.
OUTPUT_DTYPE = "float32"


def conv(channels, kernel, strides=1, use_bias=True, name=None, dtype=None, rank=2):
  """A `valid` Conv2D (rank 2) or Conv3D (rank 3) with the N(0, 0.02)
  initializer; callers pad explicitly."""
  return conv_class(rank)(channels, kernel, strides=strides, padding="valid",
                          use_bias=use_bias, kernel_initializer=init(), name=name, dtype=dtype)


class ResidualBlock(keras.layers.Layer):
  """x + norm(conv3x3(relu(norm(conv3x3(x))))), reflection padding, no final ReLU.

  He et al., "Deep Residual Learning for Image Recognition", 2016, in the
  form of Johnson et al. 2016 and CycleGAN's ResnetBlock.

  Args:
    channels: of the input and the output.
    norm: see `normalization`.
    epsilon: see `normalization`.
  """

  def __init__(self, channels, norm, epsilon, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    use_bias = norm == "none"
    self.conv_0 = conv(channels, 3, use_bias=use_bias, name="conv_0")
    self.norm_0 = normalization(norm, "norm_0", epsilon)
    self.conv_1 = conv(channels, 3, use_bias=use_bias, name="conv_1")
    self.norm_1 = normalization(norm, "norm_1", epsilon)

  def call(self, x, training=False):
    y = ops.relu(apply_norm(self.norm_0, self.conv_0(reflect_pad(x, 1)), training))
    y = apply_norm(self.norm_1, self.conv_1(reflect_pad(y, 1)), training)
    return x + y


class ResidualStack(keras.layers.Layer):
  """`num_blocks` ResidualBlocks in sequence, named block_0, block_1, ...

  Args:
    channels: of the input and the output.
    num_blocks: >= 0; 0 is the identity.
    norm: see `normalization`.
    epsilon: see `normalization`.
  """

  def __init__(self, channels, num_blocks, norm, epsilon, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.blocks = [ResidualBlock(channels, norm, epsilon, name=f"block_{i}")
                   for i in range(num_blocks)]

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return x
