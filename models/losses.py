"""GAN losses as pure, per-example functions of discriminator outputs.

Conventions (after TF-GAN's `losses_impl.py`):
- Names are `<name>_generator_loss` and `<name>_discriminator_loss`.
- Inputs are raw discriminator outputs (logits), shape [B] or [B, ...] for
  patch discriminators; patch outputs are averaged over the non-batch axes.
- Every loss returns per-example values of shape [B]. None of them reduces
  over the batch: the trainer does that once, against the global batch, with
  `tf.nn.compute_average_loss`. A local mean here would be wrong under a
  strategy, where the replicas' gradients are summed.

The image-to-image terms at the end (`l1`, `kl_unit_gaussian`) follow the
same per-example contract; the caller applies their weights (lambda).

Golden values for each loss are in tests/test_losses.py (the image-to-image
terms: tests/test_translation_models.py).
"""

import tensorflow as tf

__all__ = [
    "G_LOSS_VARIANTS",
    "LOSSES",
    "get",
    "per_example",
    "modified_generator_loss",
    "minimax_generator_loss",
    "minimax_discriminator_loss",
    "wasserstein_generator_loss",
    "wasserstein_discriminator_loss",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "least_squares_generator_loss",
    "least_squares_discriminator_loss",
    "l1",
    "kl_unit_gaussian",
]


def per_example(x):
  """Averages a [B, ...] tensor over all but the batch axis, in float32."""
  x = tf.cast(x, tf.float32)
  if x.shape.rank is not None and x.shape.rank <= 1:
    return x
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def minimax_discriminator_loss(real_logits, fake_logits):
  """Binary cross-entropy, -log D(x) - log(1 - D(G(z))), per example.

  Goodfellow et al., "Generative Adversarial Networks", 2014.

  Args:
    real_logits: [B, ...] discriminator logits on real data.
    fake_logits: [B, ...] discriminator logits on generated data.

  Returns:
    [B] float32.
  """
  # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l).
  return per_example(tf.nn.softplus(-tf.cast(real_logits, tf.float32))) + per_example(
      tf.nn.softplus(tf.cast(fake_logits, tf.float32)))


def minimax_generator_loss(fake_logits):
  """The original minimax generator loss, log(1 - D(G(z))), per example.

  It saturates when D rejects the samples; `modified_generator_loss` is the
  usual choice (Goodfellow et al. 2014, section 3).

  Args:
    fake_logits: [B, ...] discriminator logits on generated data.

  Returns:
    [B] float32.
  """
  return -per_example(tf.nn.softplus(tf.cast(fake_logits, tf.float32)))


def modified_generator_loss(fake_logits):
  """Non-saturating generator loss, -log D(G(z)), per example.

  Goodfellow et al. 2014, section 3.

  Args:
    fake_logits: [B, ...] discriminator logits on generated data.

  Returns:
    [B] float32.
  """
  return per_example(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


def wasserstein_discriminator_loss(real_logits, fake_logits):
  """Critic loss D(G(z)) - D(x), per example.

  Arjovsky et al., "Wasserstein GAN", 2017.

  Args:
    real_logits: [B, ...] critic outputs on real data.
    fake_logits: [B, ...] critic outputs on generated data.

  Returns:
    [B] float32.
  """
  return per_example(fake_logits) - per_example(real_logits)


def wasserstein_generator_loss(fake_logits):
  """Generator loss -D(G(z)), per example (Arjovsky et al. 2017).

  Args:
    fake_logits: [B, ...] critic outputs on generated data.

  Returns:
    [B] float32.
  """
  return -per_example(fake_logits)


def hinge_discriminator_loss(real_logits, fake_logits):
  """max(0, 1 - D(x)) + max(0, 1 + D(G(z))), per example.

  Lim & Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for
  Generative Adversarial Networks", 2018. Patch outputs: the hinge is taken
  per patch, then averaged.

  Args:
    real_logits: [B, ...] discriminator outputs on real data.
    fake_logits: [B, ...] discriminator outputs on generated data.

  Returns:
    [B] float32.
  """
  real = tf.cast(real_logits, tf.float32)
  fake = tf.cast(fake_logits, tf.float32)
  return per_example(tf.nn.relu(1.0 - real)) + per_example(tf.nn.relu(1.0 + fake))


def hinge_generator_loss(fake_logits):
  """-D(G(z)), per example (Miyato et al. 2018).

  Args:
    fake_logits: [B, ...] discriminator outputs on generated data.

  Returns:
    [B] float32.
  """
  return -per_example(fake_logits)


def least_squares_discriminator_loss(real_logits, fake_logits, real_label=1.0,
                                     fake_label=0.0):
  """0.5 (D(x) - b)^2 + 0.5 (D(G(z)) - a)^2, per example.

  Mao et al., "Least Squares Generative Adversarial Networks", 2017, with the
  0-1 coding a=0, b=1 (c=1 in the generator loss) by default.

  Args:
    real_logits: [B, ...] raw discriminator outputs on real data.
    fake_logits: [B, ...] raw discriminator outputs on generated data.
    real_label: b.
    fake_label: a.

  Returns:
    [B] float32.
  """
  real = tf.cast(real_logits, tf.float32)
  fake = tf.cast(fake_logits, tf.float32)
  return 0.5 * per_example(tf.square(real - real_label)) + 0.5 * per_example(
      tf.square(fake - fake_label))


def least_squares_generator_loss(fake_logits, target=1.0):
  """0.5 (D(G(z)) - c)^2, per example (Mao et al. 2017), c=1 by default.

  Args:
    fake_logits: [B, ...] raw discriminator outputs on generated data.
    target: c.

  Returns:
    [B] float32.
  """
  return 0.5 * per_example(tf.square(tf.cast(fake_logits, tf.float32) - target))


def l1(a, b):
  """Mean absolute error |a - b| per example.

  pix2pix's reconstruction term (Isola et al. 2017, eq. 3) and CycleGAN's
  cycle-consistency and identity terms (Zhu et al. 2017, eq. 2).

  Args:
    a: [B, ...].
    b: same shape as a.

  Returns:
    [B] float32: the mean over all non-batch axes.
  """
  return per_example(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def kl_unit_gaussian(mu):
  """UNIT's KL term: the mean of mu^2 over the latent elements, per example.

  Liu et al., "Unsupervised Image-to-Image Translation Networks", 2017: the
  encoder's posterior is N(mu, I), and KL(N(mu, I) || N(0, I)) = 0.5 *
  sum(mu^2). Like the authors' code (`torch.mean(torch.pow(mu, 2))`), this
  returns the *mean* of mu^2 over the N latent elements of each example, i.e.
  KL * 2 / N, so that the paper's weights apply and the value does not grow
  with the image size.

  Args:
    mu: [B, ...] latent means.

  Returns:
    [B] float32.
  """
  return per_example(tf.square(tf.cast(mu, tf.float32)))


# name -> (generator loss, discriminator loss). "bce" uses the non-saturating
# generator loss (`get(..., g_loss="minimax")` the original one).
LOSSES = {
    "bce": (modified_generator_loss, minimax_discriminator_loss),
    "wasserstein": (wasserstein_generator_loss, wasserstein_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
    "least_squares": (least_squares_generator_loss, least_squares_discriminator_loss),
}


G_LOSS_VARIANTS = ("ns", "minimax")  # Of the bce loss.


def get(name, g_loss=None):
  """Returns (generator_loss, discriminator_loss) registered under `name`.

  Args:
    name: a key of LOSSES.
    g_loss: with "bce" only: "ns" (the non-saturating generator loss, the
      default) or "minimax" (Goodfellow et al.'s original, saturating one).

  Raises:
    ValueError: unknown name (the message lists the valid ones), or a
      g_loss that does not apply.
  """
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
  if g_loss is not None and (name != "bce" or g_loss not in G_LOSS_VARIANTS):
    raise ValueError(f"--g_loss={g_loss} applies to the bce loss only, as one of "
                     f"{', '.join(G_LOSS_VARIANTS)}; the loss is {name}")
  if g_loss == "minimax":
    return minimax_generator_loss, minimax_discriminator_loss
  return LOSSES[name]
