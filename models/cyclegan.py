"""CycleGAN's ResNet generator (its discriminator is pix2pix's PatchGAN).

Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", 2017 (appendix 7.2), after Johnson et al., "Perceptual
Losses for Real-Time Style Transfer and Super-Resolution", 2016:
c7s1-64, d128, d256, R256 x num_blocks, u128, u64, c7s1-out (tanh), with
reflection padding and instance normalization.

Interface: `ResnetGenerator(x [B, H, W, C_in], training)` -> [B, H, W,
out_channels] in [-1, 1], for any H, W divisible by `stride` (4). For the
discriminators use `models.pix2pix.PatchDiscriminator(norm="instance")`.
"""

import keras
from keras import ops

from models import blocks


def default_resnet_blocks(image_size):
  """The paper's residual block count: 6 below 256 px, 9 at 256 px and above.

  Args:
    image_size: an int (square) or (H, W); the smaller side decides.
  """
  side = image_size if isinstance(image_size, int) else min(image_size)
  return 9 if side >= 256 else 6


class ResnetGenerator(keras.Model):
  """Two stride-2 convolutions down, residual blocks, two transposed ones up.

  Layers (k = base_channels, 64 in the paper): c7s1-k (reflection padding 3),
  d2k and d4k (3x3 stride 2, zero padding 1), `num_blocks` residual blocks of
  4k channels (reflection padding), u2k and uk (3x3 transposed, stride 2),
  c7s1-out_channels (reflection padding 3) and tanh. Every hidden layer is
  conv-norm-ReLU. Fully convolutional: any H, W divisible by `stride` = 4
  (and at least 8, for the reflection padding).

  Args:
    out_channels: channels of the output image.
    base_channels: k.
    num_blocks: residual blocks (see `default_resnet_blocks`).
    norm: `instance` (the paper, with a learned scale and offset), `batch`
      (synchronized across replicas) or `none`.

  Raises:
    ValueError: an unknown norm.
  """

  stride = 4

  def __init__(self, out_channels, base_channels=64, num_blocks=9, norm="instance",
               name="generator", **kwargs):
    super().__init__(name=name, **kwargs)
    self.out_channels = out_channels
    k = base_channels
    use_bias = norm == "none"
    self.stem = blocks.conv(k, 7, use_bias=use_bias, name="stem")
    self.stem_norm = blocks.normalization(norm, "stem_norm", blocks.TORCH_EPSILON)
    self.downs = [blocks.conv(k * 2 ** (i + 1), 3, strides=2, use_bias=use_bias,
                              name=f"down_{i}") for i in range(2)]
    self.down_norms = [blocks.normalization(norm, f"down_{i}_norm", blocks.TORCH_EPSILON)
                       for i in range(2)]
    self.res = blocks.ResidualStack(4 * k, num_blocks, norm, blocks.TORCH_EPSILON, name="res")
    self.ups = [keras.layers.Conv2DTranspose(k * 2 ** (1 - i), 3, strides=2, padding="same",
                                             use_bias=use_bias, kernel_initializer=blocks.init(),
                                             name=f"up_{i}") for i in range(2)]
    self.up_norms = [blocks.normalization(norm, f"up_{i}_norm", blocks.TORCH_EPSILON)
                     for i in range(2)]
    self.to_image = blocks.conv(out_channels, 7, name="to_image", dtype=blocks.OUTPUT_DTYPE)

  def call(self, x, training=False):
    """Translates x.

    Args:
      x: [B, H, W, C_in], H and W divisible by 4.
      training: batch statistics on (with norm="batch"; instance norm behaves
        the same either way).

    Returns:
      [B, H, W, out_channels] in [-1, 1].
    """
    x = ops.relu(blocks.apply_norm(self.stem_norm, self.stem(blocks.reflect_pad(x, 3)),
                                   training))
    for down, norm in zip(self.downs, self.down_norms):
      x = ops.relu(blocks.apply_norm(norm, down(blocks.zero_pad(x, 1)), training))
    x = self.res(x, training=training)
    for up, norm in zip(self.ups, self.up_norms):
      x = ops.relu(blocks.apply_norm(norm, up(x), training))
    return ops.tanh(self.to_image(blocks.reflect_pad(x, 3)))
