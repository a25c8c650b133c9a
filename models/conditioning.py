"""Class conditioning shared by the network families."""

import keras
from keras import ops

from models import blocks


class LabelCode(keras.layers.Layer):
  """Class labels [B] -> a code [B, D] to concatenate to a network's input.

  Args:
    num_classes: number of classes.
    embedding_dim: 0 for a one-hot code (D = num_classes, Mirza & Osindero
      2014), or the size of a learned embedding (D = embedding_dim).
  """

  def __init__(self, num_classes, embedding_dim=0, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.embedding_dim = embedding_dim
    self.embedding = (keras.layers.Embedding(num_classes, embedding_dim, name="embedding")
                      if embedding_dim else None)

  @property
  def dim(self):
    return self.embedding_dim or self.num_classes

  def call(self, labels, dtype="float32"):
    if self.embedding is None:
      return ops.one_hot(labels, self.num_classes, dtype=dtype)
    return ops.cast(self.embedding(labels), dtype)


def expand_to_rank(v, x):
  """[B, C] -> [B, 1, ..., 1, C] with one 1 per spatial axis of x, so that v
  broadcasts over x's H, W (or D, H, W)."""
  return ops.reshape(v, (-1,) + (1,) * (len(x.shape) - 2) + (v.shape[-1],))


def label_maps(code, x):
  """A code [B, dim] as constant feature maps the shape of x's spatial axes.

  Args:
    code: [B, dim], from `LabelCode`.
    x: [B, H, W, C] images or [B, D, H, W, C] volumes.

  Returns:
    [B, H, W, dim] or [B, D, H, W, dim], to concatenate to x on channels.
  """
  shape = ops.shape(x)
  return ops.broadcast_to(expand_to_rank(code, x), tuple(shape[:-1]) + (code.shape[-1],))


class ConditionalBatchNorm(keras.layers.Layer):
  """Batch norm with a per-class scale and offset (de Vries et al. 2017; Miyato &
  Koyama 2018's generator).

  x [B, H, W, C] (or [B, D, H, W, C]), labels [B] -> gamma[y] *
  normalize(x) + beta[y]. The
  normalization has no affine part of its own and is synchronized over the
  replicas like every batch norm here (`blocks.GlobalBatchNormalization`).
  gamma starts at exactly 1 and beta at 0, so a new layer is the same for
  every class (mimicry draws gamma from N(1, 0.02)).

  Args:
    num_classes: number of classes (rows of the gamma and beta embeddings).
    channels: C.
    epsilon: added to the variance; see `blocks.normalization`.
  """

  def __init__(self, num_classes, channels, epsilon, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.norm = blocks.GlobalBatchNormalization(momentum=0.9, epsilon=epsilon, center=False,
                                                scale=False, name="norm")
    self.gamma = keras.layers.Embedding(num_classes, channels, embeddings_initializer="ones",
                                        name="gamma")
    self.beta = keras.layers.Embedding(num_classes, channels, embeddings_initializer="zeros",
                                       name="beta")

  def call(self, x, labels, training=False):
    x = self.norm(x, training=training)
    gamma = expand_to_rank(ops.cast(self.gamma(labels), x.dtype), x)
    beta = expand_to_rank(ops.cast(self.beta(labels), x.dtype), x)
    return x * gamma + beta
