"""UNIT: two VAE-GANs whose encoders and decoders share their high-level layers.

Liu, Breuel & Kautz, "Unsupervised Image-to-Image Translation Networks",
2017. Domain a's encoder E_a and domain b's E_b map images to one shared
latent space; the decoders (the paper's generators) G_a and G_b map it back:

    E_a = shared_encoder o front_a     G_a = back_a o shared_decoder
    E_b = shared_encoder o front_b     G_b = back_b o shared_decoder

The shared parts are single layer objects called by both domains, so their
weights are the same variables (the paper's weight-sharing constraint).
Translation a -> b is G_b(E_a(x_a)).

Layers, after the paper's appendix (k = base_channels, 64 in the paper):
private front c7s1-k, d2k, d4k, `num_private_blocks` residual blocks; shared
`num_shared_blocks` residual blocks on each side of the latent; private back
residual blocks, u2k, uk, c7s1-C and tanh. Our simplifications: the blocks of
`models/blocks.py` (instance norm, ReLU, reflection padding) instead of the
paper's LeakyReLU stacks, and 7x7 rather than 1x1 output convolutions, as in
CycleGAN and the authors' later PyTorch code.

The encoder returns the latent mean mu, [B, H/4, W/4, 4k]. The paper's
posterior is N(mu, I): the training step draws z = mu + N(0, I) itself (from
its replica-independent randomness) and adds the KL term
`models.losses.kl_unit_gaussian(mu)`. Discriminators: the paper used a
multi-scale discriminator; this project uses one
`models.pix2pix.PatchDiscriminator` per domain (a simplification).
"""

import keras
from keras import ops

from models import blocks

DOMAINS = ("a", "b")


class _Front(keras.layers.Layer):
  """A domain's private encoder layers: c7s1-k, d2k, d4k, residual blocks."""

  def __init__(self, base_channels, num_blocks, norm, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    k = base_channels
    use_bias = norm == "none"
    self.stem = blocks.conv(k, 7, use_bias=use_bias, name="stem")
    self.stem_norm = blocks.normalization(norm, "stem_norm", blocks.TORCH_EPSILON)
    self.downs = [blocks.conv(k * 2 ** (i + 1), 3, strides=2, use_bias=use_bias,
                              name=f"down_{i}") for i in range(2)]
    self.down_norms = [blocks.normalization(norm, f"down_{i}_norm", blocks.TORCH_EPSILON)
                       for i in range(2)]
    self.res = blocks.ResidualStack(4 * k, num_blocks, norm, blocks.TORCH_EPSILON, name="res")

  def call(self, x, training=False):
    x = ops.relu(blocks.apply_norm(self.stem_norm, self.stem(blocks.reflect_pad(x, 3)),
                                   training))
    for down, norm in zip(self.downs, self.down_norms):
      x = ops.relu(blocks.apply_norm(norm, down(blocks.zero_pad(x, 1)), training))
    return self.res(x, training=training)


class _Back(keras.layers.Layer):
  """A domain's private decoder layers: residual blocks, u2k, uk, c7s1-C, tanh."""

  def __init__(self, out_channels, base_channels, num_blocks, norm, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    k = base_channels
    self.res = blocks.ResidualStack(4 * k, num_blocks, norm, blocks.TORCH_EPSILON, name="res")
    self.ups = [keras.layers.Conv2DTranspose(k * 2 ** (1 - i), 3, strides=2, padding="same",
                                             use_bias=norm == "none",
                                             kernel_initializer=blocks.init(), name=f"up_{i}")
                for i in range(2)]
    self.up_norms = [blocks.normalization(norm, f"up_{i}_norm", blocks.TORCH_EPSILON)
                     for i in range(2)]
    self.to_image = blocks.conv(out_channels, 7, name="to_image", dtype=blocks.OUTPUT_DTYPE)

  def call(self, x, training=False):
    x = self.res(x, training=training)
    for up, norm in zip(self.ups, self.up_norms):
      x = ops.relu(blocks.apply_norm(norm, up(x), training))
    return ops.tanh(self.to_image(blocks.reflect_pad(x, 3)))


class UNIT(keras.Model):
  """Both domains' encoders and decoders, with their shared layers.

  Weight paths are `<name>/front_a/...`, `<name>/shared_encoder/...`,
  `<name>/shared_decoder/...`, `<name>/back_b/...`, whichever method runs
  first. Fully convolutional: any H, W divisible by `stride` (4) and at least 8.

  Args:
    channels_a: image channels of domain a (the output of G_a; E_a's input
      may have any channel count, fixed at the first call).
    channels_b: image channels of domain b.
    base_channels: k.
    num_private_blocks: residual blocks in each private front and back (3 in
      the paper).
    num_shared_blocks: residual blocks in each shared part (1 in the paper).
    norm: see `models.blocks.normalization`; `instance` by default.

  Raises:
    ValueError: an unknown norm.
  """

  stride = 4

  def __init__(self, channels_a=3, channels_b=3, base_channels=64, num_private_blocks=3,
               num_shared_blocks=1, norm="instance", name="unit", **kwargs):
    super().__init__(name=name, **kwargs)
    k = base_channels
    self.latent_channels = 4 * k
    self.front_a = _Front(k, num_private_blocks, norm, name="front_a")
    self.front_b = _Front(k, num_private_blocks, norm, name="front_b")
    self.shared_encoder = blocks.ResidualStack(4 * k, num_shared_blocks, norm,
                                               blocks.TORCH_EPSILON, name="shared_encoder")
    self.shared_decoder = blocks.ResidualStack(4 * k, num_shared_blocks, norm,
                                               blocks.TORCH_EPSILON, name="shared_decoder")
    self.back_a = _Back(channels_a, k, num_private_blocks, norm, name="back_a")
    self.back_b = _Back(channels_b, k, num_private_blocks, norm, name="back_b")

  def build(self, input_shape):
    # A call uses one domain's layers only; the others build at their first
    # call. Without this method Keras would warn that they are unbuilt.
    del input_shape

  def _check(self, domain):
    if domain not in DOMAINS:
      raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")

  def encode(self, x, domain, training=False):
    """E_domain(x): the latent mean mu.

    Args:
      x: [B, H, W, C] images of `domain`, H and W divisible by 4.
      domain: `a` or `b`.
      training: batch statistics on (with norm="batch").

    Returns:
      mu, [B, H/4, W/4, 4 * base_channels].

    Raises:
      ValueError: an unknown domain.
    """
    self._check(domain)
    # The model's own scope, also when called directly rather than through
    # __call__: the weight paths then do not depend on which method builds
    # the layers (Keras deduplicates the scope inside __call__).
    with keras.name_scope(self.name, caller=self):
      front = self.front_a if domain == "a" else self.front_b
      return self.shared_encoder(front(x, training=training), training=training)

  def decode(self, z, domain, training=False):
    """G_domain(z): an image of `domain`.

    Args:
      z: [B, h, w, 4 * base_channels] latents (mu, or mu plus noise).
      domain: `a` or `b`.
      training: batch statistics on (with norm="batch").

    Returns:
      [B, 4h, 4w, channels_<domain>] in [-1, 1].

    Raises:
      ValueError: an unknown domain.
    """
    self._check(domain)
    with keras.name_scope(self.name, caller=self):
      back = self.back_a if domain == "a" else self.back_b
      return back(self.shared_decoder(z, training=training), training=training)

  def call(self, x, source="a", target="b", training=False):
    """decode(encode(x, source), target), with mu and no noise.

    Translation, or reconstruction when source == target. Keras takes only
    tensors positionally: `unit(x, source="b", target="a")`.
    """
    return self.decode(self.encode(x, source, training), target, training)
