"""The translation algorithms' pure per-batch operations: pix2pix's random
jitter (2-D crop boxes, 3-D mirroring), the centre slice of a 2.5-D context
stack, and CycleGAN's image history (one pool per batch position).

Nothing here draws a random number by itself: the draws come from the step's
`StepRandomness` (`rand.uniform`), so N replicas compute what one replica
computes on the same global batch (algorithms/translation.py).
"""

import tensorflow as tf


def jitter_boxes(rand, scale=1.12, flip=True):
  """pix2pix's random jitter as crop boxes, one per example.

  Resizing to `scale` x the size and cropping back to the size at a random
  offset is the same as cropping a window of 1/scale of the image and resizing
  it to the size; a box with x1 > x2 also mirrors it (tf.image.crop_and_resize).
  Offsets are continuous rather than whole pixels of the enlarged image.

  Returns:
    [B, 4] float32 boxes (y1, x1, y2, x2) in normalized coordinates.
  """
  size = 1.0 / scale
  y1 = rand.uniform("jitter_y", (), 0.0, 1.0 - size)
  x1 = rand.uniform("jitter_x", (), 0.0, 1.0 - size)
  y2, x2 = y1 + size, x1 + size
  if flip:
    mirror = rand.uniform("jitter_mirror") < 0.5
    x1, x2 = tf.where(mirror, x2, x1), tf.where(mirror, x1, x2)
  return tf.stack([y1, x1, y2, x2], axis=1)


def apply_boxes(images, boxes):
  """Crops every image to its box and resizes it back to the image size (bilinear)."""
  shape = tf.shape(images)
  return tf.image.crop_and_resize(images, boxes, tf.range(shape[0]), shape[1:3])


def centre_slice(x):
  """The centre channel of [..., 2K + 1] stacks of context slices: [..., 1],
  the slice that the stack is the context of."""
  c = x.shape[-1]
  return x[..., c // 2:c // 2 + 1]


def pool_query(pool, count, fake, use_old, pick):
  """The image-history step for a batch, one pool per example (pure).

  For each example: while its pool is not full, the fake is stored and
  returned; once full, with probability 1/2 (`use_old` < 0.5) a random stored
  image (`pick`) is returned and replaced by the fake, else the fake is
  returned (Zhu et al. 2017, after Shrivastava et al. 2017).

  Args:
    pool: [B, K, H, W, C] stored images.
    count: [B] int32 images stored so far (at most K).
    fake: [B, H, W, C] new generated images.
    use_old: [B] U[0, 1).
    pick: [B] U[0, 1).

  Returns:
    (images for the discriminator [B, H, W, C], new pool, new count).
  """
  k = pool.shape[1]
  filling = count < k
  index = tf.where(filling, count, tf.minimum(tf.cast(pick * k, tf.int32), k - 1))
  swap = tf.logical_and(tf.logical_not(filling), use_old < 0.5)
  old = tf.gather(pool, index, batch_dims=1)
  out = tf.where(swap[:, None, None, None], old, fake)
  write = tf.cast(tf.logical_or(filling, swap), pool.dtype)
  mask = tf.one_hot(index, k, dtype=pool.dtype) * write[:, None]  # [B, K]
  mask = mask[:, :, None, None, None]
  new_pool = pool * (1.0 - mask) + fake[:, None] * mask
  return out, new_pool, count + tf.cast(filling, tf.int32)


def mirror(rand, images):
  """pix2pix's jitter for volumes: each example mirrored left-right (its last
  spatial axis, W) with probability 1/2, the same for every tensor of the
  pair. TensorFlow has no 3-D CropAndResize, so the enlarge-and-crop part of
  the 2-D jitter (`jitter_boxes`) is not done in 3-D.

  Args:
    rand: the step's randomness; one draw of the stream `jitter_mirror` per
      example (the stream `jitter_boxes` mirrors with).
    images: [B, D, H, W, C] tensors of one batch.

  Returns:
    The tensors, mirrored alike.
  """
  flip = rand.uniform("jitter_mirror") < 0.5  # [B]
  out = []
  for x in images:
    shape = [-1] + [1] * (x.shape.rank - 1)
    out.append(tf.where(tf.reshape(flip, shape), tf.reverse(x, axis=[-2]), x))
  return out
