"""Spectral normalization with an explicit, once-per-step power iteration.

Miyato et al., "Spectral Normalization for Generative Adversarial Networks",
2018: the kernel W is used as W / sigma(W), sigma estimated with a power
iteration vector u, and the gradient flows through sigma (u held constant).

Why not `keras.layers.SpectralNormalization`: it runs a power iteration and
*assigns* W / sigma back into the kernel at every training-mode call. That
cuts the gradient through sigma, and it makes the number of iterations per
step depend on how often D is called (real, fake, the gradient penalty, the
generator step). Here the forward pass only reads u; the trainer calls
`power_iteration(model)` exactly once at the start of each discriminator
step. Every replica runs the same iteration on the same weights, so the
per-replica copies of u (aggregation NONE) stay equal; tests check it.
"""

import keras
from keras import ops

from models import blocks


def _l2_normalize(x, eps=1e-12):
  return x / ops.sqrt(ops.sum(ops.square(x)) + eps)


class _SpectralNormMixin:
  """Adds u, the normalized kernel and the power iteration to a layer with
  a `kernel` of shape [..., out] (Dense, ConvND); u is made after the layer's
  own variables."""

  def build(self, input_shape):
    super().build(input_shape)
    out = self.kernel.shape[-1]
    self.sn_u = self.add_weight(
        name="sn_u", shape=(1, out), trainable=False, aggregation="none",
        initializer=keras.initializers.RandomNormal(0.0, 1.0))

  def _kernel_matrix(self):
    return ops.reshape(self.kernel, (-1, self.kernel.shape[-1]))  # [n_in, out]

  def normalized_kernel(self):
    """W / sigma(W), sigma = ||W u|| with u constant (gradient flows via W)."""
    w = self._kernel_matrix()
    u = ops.stop_gradient(ops.convert_to_tensor(self.sn_u))
    wu = ops.matmul(w, ops.transpose(u))  # [n_in, 1]
    sigma = ops.sqrt(ops.sum(ops.square(wu)) + 1e-12)
    return self.kernel / ops.cast(sigma, self.kernel.dtype)

  def power_iteration(self):
    """One step: v = normalize(W u), u = normalize(W^T v). Assigns u."""
    w = ops.stop_gradient(ops.convert_to_tensor(self._kernel_matrix()))
    u = ops.convert_to_tensor(self.sn_u)
    v = _l2_normalize(ops.matmul(w, ops.transpose(u)))  # [n_in, 1]
    self.sn_u.assign(ops.transpose(_l2_normalize(ops.matmul(ops.transpose(w), v))))

  def sigma(self):
    """The current estimate of the largest singular value of W."""
    w = self._kernel_matrix()
    return ops.sqrt(ops.sum(ops.square(ops.matmul(w, ops.transpose(self.sn_u)))))

  def _bias_and_activation(self, x):
    if self.use_bias:
      x = ops.add(x, self.bias)
    return self.activation(x) if self.activation is not None else x


class SNDense(_SpectralNormMixin, keras.layers.Dense):
  """`keras.layers.Dense` whose kernel is spectrally normalized."""

  def call(self, inputs, training=None):
    del training
    return self._bias_and_activation(ops.matmul(inputs, self.normalized_kernel()))


class _SNConv(_SpectralNormMixin):
  """The call of a spectrally normalized convolution of any rank, mixed into a
  Keras ConvND (channels last), whose `convolution_op` it uses."""

  def call(self, inputs, training=None):
    del training
    return self._bias_and_activation(self.convolution_op(inputs, self.normalized_kernel()))


class SNConv2D(_SNConv, keras.layers.Conv2D):
  """`keras.layers.Conv2D` (channels last) whose kernel is spectrally normalized."""


class SNConv3D(_SNConv, keras.layers.Conv3D):
  """`keras.layers.Conv3D` (channels last) whose kernel is spectrally normalized.

  The kernel [kd, kh, kw, in, out] is normalized as the [kd * kh * kw * in,
  out] matrix, as Miyato et al. treat a 2-D kernel.
  """


def conv_class(rank):
  """SNConv2D or SNConv3D for a spatial rank (see `blocks.conv_class`).

  Raises:
    ValueError: a rank not in `blocks.RANKS`.
  """
  return {2: SNConv2D, 3: SNConv3D}[blocks.check_rank(rank)]


def layers_of(model):
  """The spectrally normalized layers of a model, in a fixed order."""
  return [l for l in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
          if isinstance(l, _SpectralNormMixin)]


def power_iteration(model):
  """Runs one power iteration in every spectrally normalized layer."""
  for layer in layers_of(model):
    layer.power_iteration()
