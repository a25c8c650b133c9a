"""Class conditioning shared by the network families."""

import keras
from keras import ops


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
