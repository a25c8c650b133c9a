"""pix2pix networks: the U-Net generator and the PatchGAN discriminator.

Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", 2017 (appendix 6.1). The PatchGAN also serves CycleGAN and UNIT,
unconditioned.

Interfaces:
- `UNetGenerator(x [B, H, W, C_in], training, dropout_rng)` -> [B, H, W,
  out_channels] in [-1, 1], for any H, W divisible by `stride`;
- `PatchDiscriminator(x, condition, training)` -> raw logits [B, h, w, 1],
  one per 70x70 input patch (h = H / 8 - 2 with the default 3 layers); the
  losses in `models/losses.py` average them per example.

Both work on volumes as well (3-D pix2pix): `UNetGenerator(image_size=(D, H,
W))` and `PatchDiscriminator(rank=3)` take [B, D, H, W, C] and give [B, D, H,
W, out_channels] and [B, d, h, w, 1], with the same layers in 3-D (every
kernel 4 a side along each axis, every stride along each axis).

Padding follows the reference PyTorch code (1 pixel of zeros around every 4x4
convolution), so a 256x256 input gives the paper's 30x30 patch map.
"""

import keras
from keras import ops

from models import blocks


def _sides(image_size):
  """An int (a square image) or a tuple of spatial sizes -> the tuple."""
  return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def unet_levels(image_size, max_levels=8):
  """The U-Net depth for an image size: how often 2 divides every side, at most 8.

  A power-of-two side up to 256 goes down to 1x1 (256 -> 8 levels, as in the
  paper; 32 -> 5); 48 gives 4 levels (a 3x3 bottleneck); 512 gives 8 (2x2).
  A 16^3 volume gives 4 levels (1x1x1), 32^3 five.

  Args:
    image_size: an int (square), (H, W) or (D, H, W).
    max_levels: the cap (the paper's 8).

  Raises:
    ValueError: fewer than 2 levels, naming the size.
  """
  sides = _sides(image_size)
  levels = 0
  while levels < max_levels and all(side % 2 ** (levels + 1) == 0 for side in sides):
    levels += 1
  if levels < 2:
    raise ValueError(f"image size {'x'.join(map(str, sides))} is too small or odd for a "
                     "U-Net: every side must be divisible by 4 (2 levels) at least, e.g. 32, "
                     "64, 256")
  return levels


class UNetGenerator(keras.Model):
  """U-Net: `levels` 4x4 stride-2 convolutions down, as many up, with skips.

  Encoder C64-C128-C256-C512-C512-... (channels `base_channels * min(2^i, 8)`),
  LeakyReLU(0.2), no normalization on the first layer, nor on the innermost
  one (its output is 1x1 at the native size, where instance norm would zero
  it; the reference code omits it too). Decoder: ReLU, then transposed 4x4
  stride-2 convolutions mirroring the encoder's channels, each followed by
  norm, dropout (the first 3 layers, as the paper says; the reference code
  has it on layers 2 to 4) and concatenation with the encoder's output of the
  same size; a last transposed convolution to `out_channels` and tanh. As in
  the reference code, each activation comes right before a convolution, so
  the skips carry pre-activation features.

  Fully convolutional: it runs on any H, W divisible by `stride` (= 2^levels),
  not only the size it was built for. With a 3-D `image_size` (D, H, W) every
  layer is its 3-D counterpart and it runs on [B, D, H, W, C] volumes with
  every side divisible by `stride`.

  Dropout is the generator's only noise (the paper drops z). It is active when
  `training=True`. Pass `dropout_rng` in a distributed training step so that
  the masks do not depend on the number of replicas (see `call`); without it
  the masks come from Keras' stateful seed generators. The paper also keeps
  dropout and batch statistics at test time; here `training=False` means
  neither.

  Args:
    out_channels: channels of the output image.
    image_size: int or (H, W) for images, (D, H, W) for volumes; sets the
      rank (2 for an int or None) and, by `unet_levels`, `levels` when
      `levels` is None.
    levels: the depth; overrides `image_size`.
    base_channels: channels of the first layer (64 in the paper); capped at
      8 * base_channels deeper down.
    norm: `batch` (the paper; synchronized across replicas), `instance` or
      `none`.
    dropout: the dropout rate of the first 3 decoder layers (0.5 in the
      paper; 0 disables it).

  Raises:
    ValueError: neither image_size nor levels, levels < 2, an image_size of
      neither 2 nor 3 sides, or an unknown norm.
  """

  def __init__(self, out_channels, image_size=None, levels=None, base_channels=64,
               norm="batch", dropout=0.5, name="generator", **kwargs):
    super().__init__(name=name, **kwargs)
    if levels is None:
      if image_size is None:
        raise ValueError("UNetGenerator needs image_size or levels")
      levels = unet_levels(image_size)
    if levels < 2:
      raise ValueError(f"levels={levels}; the U-Net needs at least 2")
    rank = 2 if image_size is None else len(_sides(image_size))
    if rank not in blocks.RANKS:
      raise ValueError(f"image_size {image_size} is neither (H, W) nor (D, H, W)")
    self.rank = rank
    self.levels = levels
    self.stride = 2 ** levels
    self.out_channels = out_channels
    self.dropout_rate = dropout
    channels = [base_channels * min(2 ** i, 8) for i in range(levels)]
    self.downs, self.down_norms = [], []
    for i, ch in enumerate(channels):
      has_norm = 0 < i < levels - 1
      self.downs.append(blocks.conv_class(rank)(
          ch, 4, strides=2, padding="same", use_bias=not has_norm or norm == "none",
          kernel_initializer=blocks.init(), name=f"down_{i}"))
      self.down_norms.append(blocks.normalization(norm, f"down_{i}_norm", blocks.TORCH_EPSILON)
                             if has_norm else None)
    self.ups, self.up_norms, self.up_dropouts = [], [], []
    for j in range(levels - 1):
      self.ups.append(blocks.conv_class(rank, transpose=True)(
          channels[levels - 2 - j], 4, strides=2, padding="same", use_bias=norm == "none",
          kernel_initializer=blocks.init(), name=f"up_{j}"))
      self.up_norms.append(blocks.normalization(norm, f"up_{j}_norm", blocks.TORCH_EPSILON))
      self.up_dropouts.append(keras.layers.Dropout(dropout, name=f"up_{j}_dropout")
                              if j < 3 and dropout > 0 else None)
    self.to_image = blocks.conv_class(rank, transpose=True)(
        out_channels, 4, strides=2, padding="same", kernel_initializer=blocks.init(),
        name="to_image", dtype=blocks.OUTPUT_DTYPE)

  def call(self, x, training=False, dropout_rng=None):
    """Translates x.

    Args:
      x: [B, H, W, C_in] (a 2-D net) or [B, D, H, W, C_in] (a 3-D one),
        every spatial side divisible by `stride`.
      training: batch statistics and dropout on.
      dropout_rng: None, or an object with `uniform(name, shape)` returning
        U[0, 1) of shape [B, *shape] (`training.randomness.StepRandomness`),
        from which the dropout masks are drawn, one stream per layer, named
        after this model and the layer.

    Returns:
      [B, H, W, out_channels] (or [B, D, H, W, out_channels]) in [-1, 1].
    """
    # Activations come before each convolution, as in the reference code: the
    # skips are the encoder's pre-activation outputs, ReLU'd in the decoder.
    skips = []
    for i, (down, norm) in enumerate(zip(self.downs, self.down_norms)):
      if i > 0:
        x = keras.activations.leaky_relu(x, negative_slope=0.2)
      x = blocks.apply_norm(norm, down(x), training)
      skips.append(x)
    skips.pop()  # the innermost output is x itself
    for up, norm, drop, skip in zip(self.ups, self.up_norms, self.up_dropouts,
                                    reversed(skips)):
      x = blocks.apply_norm(norm, up(ops.relu(x)), training)
      if drop is not None and training:
        x = self._dropout(drop, x, dropout_rng)
      x = ops.concatenate([skip, x], axis=-1)
    return ops.tanh(self.to_image(ops.relu(x)))

  def _dropout(self, layer, x, rng):
    if rng is None:
      return layer(x, training=True)
    rate = self.dropout_rate
    u = rng.uniform(f"{self.name}/{layer.name}", tuple(ops.shape(x)[1:]))
    keep = ops.cast(ops.greater_equal(u, rate), x.dtype)
    return x * keep / ops.cast(1.0 - rate, x.dtype)


def min_patch_input(num_layers=3):
  """The smallest input side a PatchDiscriminator maps to at least one logit:
  3 * 2^num_layers (6, 12, 24, 48 for 1, 2, 3, 4 layers), along every axis of
  an image or a volume."""
  return 3 * 2 ** num_layers


def patch_receptive_field(num_layers=3):
  """The side of the input patch one PatchDiscriminator logit sees: 9 * 2^n - 2.

  num_layers 1, 2, 3, 4 -> 16, 34, 70, 142: n stride-2 and two stride-1 4x4
  convolutions, each adding 3 * (product of the strides before it). The same
  along each axis of a 3-D PatchGAN (a 16^3, 34^3, ... cube).
  """
  return 9 * 2 ** num_layers - 2


class PatchDiscriminator(keras.Model):
  """PatchGAN: one logit per 70x70 patch (C64-C128-C256-C512, then 1 channel).

  With the default `num_layers=3`: 4x4 convolutions with strides 2, 2, 2, 1
  and channels base, 2 base, 4 base, 8 base, then a 4x4 stride-1 convolution
  to 1 channel; LeakyReLU(0.2); no normalization on the first layer. Every
  convolution pads 1 pixel of zeros, so the output is [B, H / 8 - 2,
  W / 8 - 2, 1] for H, W divisible by 8 (30x30 at 256 px; at least 24 px in).
  Each logit's receptive field is `patch_receptive_field(num_layers)` = 70
  pixels square (the tests measure it from the gradient).

  In general a side of n (divisible by 2^num_layers) gives n / 2^num_layers
  - 2 logits, so every input side must be at least `min_patch_input(
  num_layers)` = 3 * 2^num_layers: 6, 12, 24, 48 for 1, 2, 3, 4 layers. With
  `rank=3` the same holds along each of D, H and W: a 16^3 volume takes
  num_layers <= 2 (2 layers: a 2x2x2 map of 34^3 fields, which reach past
  the volume into the zero padding; 1 layer: 6x6x6 of 16^3), a 32^3 volume
  num_layers <= 3 (3 layers: 2x2x2 of 70^3).

  pix2pix conditions D on the input image (`conditional=True`: the condition
  and x are concatenated on channels); CycleGAN and UNIT use it unconditioned.
  UNIT's paper used a multi-scale discriminator; a single PatchGAN is this
  project's simplification.

  Args:
    base_channels: channels of the first layer (64 in the paper); capped at
      8 * base_channels.
    num_layers: stride-2 convolutions (3: the 70x70 PatchGAN).
    norm: `batch` (pix2pix; synchronized across replicas), `instance`
      (CycleGAN), or `none` (e.g. with a gradient penalty).
    conditional: call(x, condition) instead of call(x).
    rank: 2 for images [B, H, W, C], 3 for volumes [B, D, H, W, C].

  Raises:
    ValueError: an unknown norm or rank.
  """

  def __init__(self, base_channels=64, num_layers=3, norm="batch", conditional=False,
               rank=2, name="discriminator", **kwargs):
    super().__init__(name=name, **kwargs)
    self.rank = blocks.check_rank(rank)
    self.conditional = conditional
    self.num_layers = num_layers
    self.receptive_field = patch_receptive_field(num_layers)
    self.convs, self.norms = [], []
    for i in range(num_layers + 1):
      ch = base_channels * min(2 ** i, 8)
      has_norm = i > 0
      self.convs.append(blocks.conv(ch, 4, strides=2 if i < num_layers else 1,
                                    use_bias=not has_norm or norm == "none", name=f"conv_{i}",
                                    rank=rank))
      self.norms.append(blocks.normalization(norm, f"conv_{i}_norm", blocks.TORCH_EPSILON)
                        if has_norm else None)
    self.out = blocks.conv(1, 4, name="out", dtype=blocks.OUTPUT_DTYPE, rank=rank)

  def call(self, x, condition=None, training=False):
    """Scores x.

    Args:
      x: [B, H, W, C] images (real or generated); [B, D, H, W, C] volumes
        with rank 3.
      condition: [B, H, W, C'] (or [B, D, H, W, C']) the input of a
        conditional D; None otherwise.
      training: batch statistics on.

    Returns:
      Raw logits [B, h, w, 1] ([B, d, h, w, 1] with rank 3).

    Raises:
      ValueError: a condition given to an unconditional D or missing for a
        conditional one.
    """
    if self.conditional != (condition is not None):
      raise ValueError(f"{self.name}: conditional={self.conditional} but condition is "
                       f"{'missing' if condition is None else 'given'}")
    if condition is not None:
      x = ops.concatenate([ops.cast(condition, x.dtype), x], axis=-1)
    for conv, norm in zip(self.convs, self.norms):
      x = conv(blocks.zero_pad(x, 1))
      x = keras.activations.leaky_relu(blocks.apply_norm(norm, x, training), negative_slope=0.2)
    return self.out(blocks.zero_pad(x, 1))
