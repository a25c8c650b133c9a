"""DiffAugment as pure, differentiable functions whose randomness is passed in.

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
2020 (reference: mit-han-lab/data-efficient-gans, DiffAugment_tf.py). Both the
real and the generated images are augmented before the discriminator sees
them, with transforms that are differentiable w.r.t. the image, so that the
generator's gradient flows through them.

Nothing here draws a random number: `augment` takes the per-example U[0, 1)
draws in `params` (names and shapes from `param_shapes`), which the caller
makes with `training.randomness.StepRandomness.uniform` (`draw_params` does
it given that method). The augmentation is therefore stateless per global
example, the same on 1 or N replicas, with or without XLA, and after a
resume; and the same params give the same transform on two images (pix2pix's
input and target).

The ops, in the reference's formulas, on NHWC images in [-1, 1] (U = a draw):
- color: brightness x + (U - 0.5); saturation (x - mean_c) * 2U + mean_c
  (mean over the channels); contrast (x - mean) * (U + 0.5) + mean (mean over
  the whole image).
- translation: a shift by whole pixels, at most int(size/8 + 0.5) per axis,
  the vacated border filled with 0 (mid-gray in [-1, 1], as the reference's
  zero padding); see `translation_shift`.
- cutout: a square of int(size/2 + 0.5) pixels a side set to 0, clipped at
  the image border like the reference's; see `cutout_start`.

Volumes [B, D, H, W, C] (rank 3) get the same ops: colour over all of D, H
and W; translation shifts along D, H and W, one draw each; cutout zeros a
box of int(size/2 + 0.5) voxels along each axis (a cube for a cubic
volume). `param_shapes(policy, rank=3)` gives their draws ((3,) instead of
(2,)), and `augment` reads the rank from x.

Shapes are static (index arithmetic and gathers, no data-dependent shape), so
the ops compile under XLA. They work in the image's dtype; the colour ops
compute in float32 and cast back.
"""

import tensorflow as tf

from models import blocks

__all__ = [
    "APPLY",
    "CUTOUT_RATIO",
    "POLICY_OPS",
    "TRANSLATION_RATIO",
    "augment",
    "color",
    "cutout",
    "cutout_start",
    "draw_params",
    "param_shapes",
    "parse_policy",
    "translate",
    "translation_shift",
]

POLICY_OPS = ("color", "translation", "cutout")
_ALL = "diffaugment"  # The paper's policy: every op, in the order of POLICY_OPS.
_NONE = ("", "none")

TRANSLATION_RATIO = 0.125  # The reference's: the largest shift is 1/8 of the size.
CUTOUT_RATIO = 0.5  # The reference's: the square's side is half the size.

# op -> {param name: per-example shape of its U[0, 1) draws}.
_OP_PARAMS = {
    "color": {"brightness": (1,), "saturation": (1,), "contrast": (1,)},
    "translation": {"translation": (2,)},  # [row, column]; [depth, row, column] in 3-D.
    "cutout": {"cutout": (2,)},  # As translation's.
}
# The params with one draw per spatial axis: their shape is (rank,).
_PER_AXIS = ("translation", "cutout")
APPLY = "apply"  # [len(policy)] draws: op i applies to example b when apply[b, i] < p.


def parse_policy(text):
  """A policy string -> a tuple of op names, in the order given.

  Args:
    text: "diffaugment" (every op: color, translation, cutout), a comma list
      of POLICY_OPS ("color,cutout"), or "" / "none" / None for no
      augmentation. Case and spaces around names are ignored.

  Raises:
    ValueError: an unknown or repeated name; the message lists the valid ones.
  """
  text = (text or "").strip().lower()
  if text in _NONE:
    return ()
  ops = []
  for name in (n.strip() for n in text.split(",")):
    names = POLICY_OPS if name == _ALL else (name,)
    for n in names:
      if n not in POLICY_OPS:
        raise ValueError(f"unknown augmentation {n!r} in {text!r}; valid: "
                         f"{', '.join((_ALL,) + POLICY_OPS)}, or none")
      if n in ops:
        raise ValueError(f"augmentation {n!r} appears twice in {text!r}")
      ops.append(n)
  return tuple(ops)


def param_shapes(policy, rank=2):
  """{param name: per-example shape} of the U[0, 1) draws `augment` reads.

  Includes "apply" ([len(policy)]), read only when `augment` gets a
  probability p. Empty for an empty policy.

  Args:
    policy: a tuple from `parse_policy`.
    rank: 2 for images, 3 for volumes: translation and cutout take one draw
      per spatial axis, (2,) or (3,); the colour draws are the same.

  Raises:
    ValueError: a rank other than 2 or 3.
  """
  blocks.check_rank(rank)
  shapes = {}
  for op in policy:
    shapes.update({name: (rank,) if name in _PER_AXIS else shape
                   for name, shape in _OP_PARAMS[op].items()})
  if policy:
    shapes[APPLY] = (len(policy),)
  return shapes


def draw_params(uniform, policy, prefix="diffaugment", rank=2):
  """Draws `param_shapes(policy, rank)` with `uniform(name, shape)`.

  Args:
    uniform: e.g. `StepRandomness.uniform`: (stream name, per-example shape)
      -> U[0, 1) float32 [B, *shape].
    policy: a tuple from `parse_policy`.
    prefix: names the streams "<prefix>/<param>"; use one prefix per batch
      that needs its own transforms (real and fake images: two prefixes; the
      two images of a pix2pix pair: one).
    rank: see `param_shapes`.
  """
  return {name: uniform(f"{prefix}/{name}", shape)
          for name, shape in param_shapes(policy, rank).items()}


def _per_example(v, x):
  """[B, 1] or [B] -> [B, 1, ..., 1] of x's rank, to broadcast over an example of x."""
  return tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))


def color(x, brightness, saturation, contrast):
  """Brightness, then saturation, then contrast, as in the reference.

  Args:
    x: [B, H, W, C] images or [B, D, H, W, C] volumes.
    brightness, saturation, contrast: [B, 1] U[0, 1) draws.

  Returns:
    x's shape and dtype, computed in float32.
  """
  y = tf.cast(x, tf.float32)

  def per_example(u):
    return _per_example(tf.cast(u, tf.float32), y)

  y = y + (per_example(brightness) - 0.5)
  mean = tf.reduce_mean(y, axis=y.shape.rank - 1, keepdims=True)
  y = (y - mean) * (2.0 * per_example(saturation)) + mean
  mean = tf.reduce_mean(y, axis=list(range(1, y.shape.rank)), keepdims=True)
  y = (y - mean) * (per_example(contrast) + 0.5) + mean
  return tf.cast(y, x.dtype)


def _index_of(u, n):
  """U[0, 1) float32 -> int32 in [0, n): floor(u * n), clipped (u * n can round to n)."""
  return tf.clip_by_value(tf.cast(tf.floor(tf.cast(u, tf.float32) * n), tf.int32), 0, n - 1)


def translation_shift(u, size, ratio=TRANSLATION_RATIO):
  """U[0, 1) -> an integer shift in [-m, m], m = int(size * ratio + 0.5).

  shift = floor(u * (2m + 1)) - m: u in [k/(2m+1), (k+1)/(2m+1)) gives
  k - m, every shift with probability 1/(2m+1) like the reference's
  `tf.random.uniform(..., -m, m + 1, tf.int32)`. m = 1 for size 8, 2 for 16,
  4 for 32.

  Args:
    u: float32 draws, any shape.
    size: the image's size along the axis (a Python int).
    ratio: m as a fraction of the size.

  Returns:
    int32, u's shape.
  """
  m = int(size * ratio + 0.5)
  return _index_of(u, 2 * m + 1) - m


def _shift_axis(x, shift, axis):
  """out[..., i, ...] = x[..., i - shift, ...], 0 where i - shift is outside.

  As the reference: pad one zero each side, gather at indices clipped into
  the padding. Differentiable w.r.t. x (a gather); static shapes.
  """
  size = x.shape[axis]
  pad = [[0, 0]] * x.shape.rank
  pad[axis] = [1, 1]
  padded = tf.pad(x, pad)
  src = tf.range(size, dtype=tf.int32)[None, :] - tf.reshape(shift, [-1, 1]) + 1
  return tf.gather(padded, tf.clip_by_value(src, 0, size + 1), axis=axis, batch_dims=1)


def translate(x, u, ratio=TRANSLATION_RATIO):
  """Shifts each image by whole pixels; the pixel at (r, c) moves to (r + dy, c + dx).

  dy = translation_shift(u[:, 0], H), dx = translation_shift(u[:, 1], W). The
  vacated border is 0. (The reference reads x[i + t], i.e. moves the content
  by -t; the shift's law is symmetric, so the two agree in distribution.) A
  volume's voxel at (d, r, c) moves to (d + dz, r + dy, c + dx), dz =
  translation_shift(u[:, 0], D), dy and dx from u[:, 1] and u[:, 2].

  Args:
    x: [B, H, W, C] images or [B, D, H, W, C] volumes, spatial sizes static.
    u: [B, rank] U[0, 1) draws, one per spatial axis in order.
    ratio: the largest shift as a fraction of the size.

  Returns:
    x's shape, in x's dtype.
  """
  sides = _static_sides(x)
  for i, size in enumerate(sides):
    x = _shift_axis(x, translation_shift(u[:, i], size, ratio), axis=i + 1)
  return x


def cutout_start(u, size, ratio=CUTOUT_RATIO):
  """U[0, 1) -> (first index of the cut square along an axis, its side s).

  As the reference: s = int(size * ratio + 0.5); the centre
  c = floor(u * n), n = size + 1 - s % 2 (c in [0, size] for even s, [0,
  size) for odd s); the square covers [c - s // 2, c - s // 2 + s), clipped
  to [0, size). So u = 0 cuts s - s // 2 rows at the top, u -> 1 s // 2 (+1
  for odd s) at the bottom; with 4 <= c <= size - 4 (size 16) it is whole.

  Args:
    u: float32 draws, any shape.
    size: the image's size along the axis (a Python int).
    ratio: s as a fraction of the size.

  Returns:
    (int32 start, u's shape, possibly negative; int s).
  """
  side = int(size * ratio + 0.5)
  return _index_of(u, size + 1 - side % 2) - side // 2, side


def _inside(start, side, size):
  """[B] starts -> [B, size] bool: i in [start, start + side)."""
  i = tf.range(size, dtype=tf.int32)[None, :]
  start = tf.reshape(start, [-1, 1])
  return (i >= start) & (i < start + side)


def cutout(x, u, ratio=CUTOUT_RATIO):
  """Sets a square of each image (a box of each volume) to 0, at the position
  the draws give.

  Args:
    x: [B, H, W, C] images or [B, D, H, W, C] volumes, spatial sizes static.
    u: [B, rank] U[0, 1) draws, one per spatial axis in order; see
      `cutout_start`.
    ratio: the square's side as a fraction of the size, along each axis.

  Returns:
    x's shape, in x's dtype; the gradient w.r.t. x is 1 outside the square,
    0 inside.
  """
  sides = _static_sides(x)
  cut = None
  for i, size in enumerate(sides):
    start, side = cutout_start(u[:, i], size, ratio)
    # [B, size] -> [B, 1, .., size, .., 1]: this axis' interval, broadcast over the others.
    inside = tf.reshape(_inside(start, side, size),
                        [-1] + [1] * i + [size] + [1] * (len(sides) - 1 - i))
    cut = inside if cut is None else cut & inside
  return tf.where(cut[..., None], tf.zeros_like(x), x)


def _static_sides(x):
  """The static spatial sizes of x: (H, W) of images, (D, H, W) of volumes.

  Raises:
    ValueError: x of another rank, or with a spatial size unknown.
  """
  if x.shape.rank not in (4, 5) or any(side is None for side in x.shape[1:-1]):
    raise ValueError("augment needs [B, H, W, C] images or [B, D, H, W, C] volumes with "
                     f"static spatial sizes, got {x.shape}")
  return tuple(x.shape[1:-1])


def _apply_op(op, x, params, ratios):
  if op == "color":
    return color(x, params["brightness"], params["saturation"], params["contrast"])
  if op == "translation":
    return translate(x, params["translation"], ratios[0])
  return cutout(x, params["cutout"], ratios[1])


def augment(x, policy, params, p=None, translation_ratio=TRANSLATION_RATIO,
            cutout_ratio=CUTOUT_RATIO):
  """Applies the policy's ops in order, each to the examples it is drawn for.

  Deterministic given params: the same params on two images of the same
  size give the same translation and cutout.

  Args:
    x: [B, H, W, C] images or [B, D, H, W, C] volumes in [-1, 1], spatial
      sizes static; any float dtype. Its rank sets that of the transforms.
    policy: a tuple from `parse_policy`; () returns x.
    params: {name: float32 [B, *shape]} U[0, 1) draws for every name in
      `param_shapes(policy, rank)` ("apply" only needed with p), rank = 2
      for images and 3 for volumes.
    p: None (every op applies to every example), or a float scalar or [B]
      tensor: op i applies to example b when params["apply"][b, i] < p
      (ADA-style; p = 0 is the identity, p = 1 the same as None).
    translation_ratio: see `translate`.
    cutout_ratio: see `cutout`.

  Returns:
    x's shape, in x's dtype, differentiable w.r.t. x.

  Raises:
    ValueError: a missing param, a per-axis param drawn for another rank, or
      x neither [B, H, W, C] nor [B, D, H, W, C] with static spatial sizes.
  """
  if not policy:
    return x
  rank = len(_static_sides(x))
  shapes = param_shapes(policy, rank)
  needed = [n for n in shapes if n != APPLY or p is not None]
  missing = [n for n in needed if n not in params]
  if missing:
    raise ValueError(f"augment({', '.join(policy)}) is missing params {', '.join(missing)}")
  for name in needed:
    if name in _PER_AXIS and tuple(params[name].shape[1:]) != shapes[name]:
      raise ValueError(f"augment param {name!r} has per-example shape "
                       f"{tuple(params[name].shape[1:])}, but x {x.shape} has {rank} spatial "
                       f"axes: draw it with param_shapes(policy, rank={rank}), {shapes[name]}")
  if p is not None:
    p = tf.reshape(tf.cast(p, tf.float32), [-1, 1])  # [1, 1] or [B, 1].
    applies = tf.cast(params[APPLY], tf.float32) < p  # [B, len(policy)].
  for i, op in enumerate(policy):
    y = _apply_op(op, x, params, (translation_ratio, cutout_ratio))
    x = y if p is None else tf.where(_per_example(applies[:, i], x), y, x)
  return x
