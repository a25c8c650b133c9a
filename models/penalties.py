"""Discriminator penalties as per-example functions; the caller applies lambda.

A penalty takes a discriminator *callable* and tensors, and returns [B]
per-example values, reduced against the global batch by the trainer like
every loss. Each takes (discriminator_fn, real, fake, alpha, loss_scale=...),
the call algorithms/gans.py makes; a penalty that needs no fakes or
interpolation factors (R1) ignores them.
"""

import tensorflow as tf

__all__ = ["PENALTIES", "get", "interpolate", "r1_penalty", "wasserstein_gradient_penalty"]


def interpolate(real, fake, alpha):
  """x_hat = alpha * real + (1 - alpha) * fake.

  Args:
    real: [B, ...] real data.
    fake: [B, ...] generated data.
    alpha: [B] or broadcastable, drawn from U[0, 1] (*uniform*: the keras-io
      WGAN-GP example long used a normal draw here, a reported bug).
  """
  alpha = tf.cast(alpha, real.dtype)
  fake = tf.cast(fake, real.dtype)  # A float16 generator's output meets float32 data.
  alpha = tf.reshape(alpha, [-1] + [1] * (real.shape.rank - 1))
  return alpha * real + (1.0 - alpha) * fake


def _input_gradient(discriminator_fn, x, loss_scale):
  """d sum(D(x)) / dx per example, in float32: [B, ...].

  Patch outputs are summed per example. With a loss scale, the output is
  scaled inside the tape and the gradient unscaled in float32, so that a
  float16 network's gradient does not underflow (TensorFlow issue 48662).
  """
  with tf.GradientTape() as tape:
    tape.watch(x)
    out = tf.cast(discriminator_fn(x), tf.float32)
    out = tf.reduce_sum(tf.reshape(out, [tf.shape(out)[0], -1]), axis=1)
    if loss_scale is not None:
      out = out * tf.cast(loss_scale, tf.float32)
  grads = tf.cast(tape.gradient(out, x), tf.float32)
  if loss_scale is not None:
    grads = grads / tf.cast(loss_scale, tf.float32)
  return grads


def wasserstein_gradient_penalty(discriminator_fn, real, fake, alpha, target=1.0,
                                 one_sided=False, epsilon=1e-10, loss_scale=None):
  """(||grad_x D(x_hat)||_2 - target)^2 per example, at random interpolates.

  Gulrajani et al., "Improved Training of Wasserstein GANs", 2017. The norm is
  sqrt(sum(g^2) + epsilon): the epsilon inside the square root keeps the
  gradient of the norm finite where g = 0 (tf.norm has no such term).

  Args:
    discriminator_fn: maps [B, ...] inputs to [B] or [B, ...] outputs; patch
      outputs are summed per example before differentiating. It must treat
      examples independently (no batch normalization).
    real: [B, ...] real data.
    fake: [B, ...] generated data, same shape.
    alpha: [B] interpolation factors from U[0, 1].
    target: the norm the penalty pulls towards (1 in the paper).
    one_sided: penalize only norms above `target` (max(0, ||g|| - target)^2).
    epsilon: added inside the square root.
    loss_scale: with float16 networks, the dynamic loss scale: the inner
      gradient is taken of the *scaled* output (so that it does not underflow
      in float16) and divided by the scale in float32 before the norm
      (TensorFlow issue 48662: without it the penalty collapses the scale).

  Returns:
    (penalty [B] float32, gradient norm [B] float32).
  """
  x_hat = interpolate(real, tf.stop_gradient(fake), alpha)
  grads = _input_gradient(discriminator_fn, x_hat, loss_scale)
  norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(grads), [tf.shape(grads)[0], -1]),
                               axis=1) + epsilon)
  gap = norm - target
  if one_sided:
    gap = tf.nn.relu(gap)
  return tf.square(gap), norm


def r1_penalty(discriminator_fn, real, fake=None, alpha=None, loss_scale=None):
  """||grad_x D(x)||^2 per example, at the real data; the caller applies gamma / 2.

  Mescheder et al., "Which Training Methods for GANs do actually
  Converge?", 2018, eq. 9: R1 = gamma / 2 * E[||grad D(x)||^2] over real x.
  The squared norm is smooth at g = 0, so no epsilon is needed (unlike
  `wasserstein_gradient_penalty`).

  Args:
    discriminator_fn: maps [B, ...] inputs to [B] or [B, ...] outputs (logits,
      before any sigmoid); patch outputs are summed per example before
      differentiating. It must treat examples independently.
    real: [B, ...] real data.
    fake: ignored (the penalties' common signature).
    alpha: ignored (the penalties' common signature).
    loss_scale: as in `wasserstein_gradient_penalty`.

  Returns:
    (penalty [B] float32, gradient norm [B] float32; the norm is a metric and
    carries no gradient).
  """
  del fake, alpha  # R1 looks at the real data only.
  grads = _input_gradient(discriminator_fn, real, loss_scale)
  penalty = tf.reduce_sum(tf.reshape(tf.square(grads), [tf.shape(grads)[0], -1]), axis=1)
  return penalty, tf.sqrt(tf.stop_gradient(penalty))


# name -> penalty; algorithms choose theirs by name (algorithms/gans.py GANSpec.penalty).
PENALTIES = {"r1": r1_penalty, "wgan_gp": wasserstein_gradient_penalty}


def get(name):
  """Returns the penalty registered under `name`.

  Raises:
    ValueError: unknown name; the message lists the valid ones.
  """
  if name not in PENALTIES:
    raise ValueError(f"unknown penalty {name!r}; valid: {', '.join(sorted(PENALTIES))}")
  return PENALTIES[name]
