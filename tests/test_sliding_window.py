"""Sliding-window inference (`inference.sliding_window`): the patch grid by
hand, the Gaussian importance map by hand, identity and constant images
through it exactly, the seam a per-patch offset leaves with constant blending
and the bound Gaussian blending keeps it under, and the batch bound."""

import math

import numpy as np
import pytest

from inference import sliding_window as sw


def _identity_counting(sizes):
  """An identity `fn` that records how many patches each call got."""

  def fn(x):
    sizes.append(len(x))
    return x

  return fn


def _offset_per_patch(step):
  """A "model" whose bias differs per patch: patch k (in the order run) gets
  its input + k * step."""
  seen = [0]

  def fn(x):
    k = np.arange(seen[0], seen[0] + len(x), dtype=np.float32)
    seen[0] += len(x)
    return x + (k * step).reshape((-1,) + (1,) * (x.ndim - 1))

  return fn


def _max_neighbour_difference(y):
  """The largest |y[v] - y[v']| over voxels v, v' next to each other along
  any spatial axis of y [*spatial, C]."""
  return max(float(np.abs(np.diff(y, axis=a)).max()) for a in range(y.ndim - 1))


# --- The patch grid ---


@pytest.mark.parametrize("size, patch, overlap, starts", [
    (10, 4, 0.5, [0, 2, 4, 6]),        # step 2, the last one ends at 10 by itself
    (11, 4, 0.5, [0, 2, 4, 6, 7]),     # the 5th would start at 8: moved back flush to 7
    (10, 4, 0.0, [0, 4, 6]),           # no overlap but the last patch
    (7, 4, 0.25, [0, 3]),              # step int(4 * 0.75) = 3
    (9, 3, 0.9, list(range(7))),       # step int(0.3) = 0 -> 1
    (4, 4, 0.5, [0]),                  # the patch spans the axis
    (80, 32, 0.5, [0, 16, 32, 48]),
])
def test_patch_starts_by_hand(size, patch, overlap, starts):
  assert sw.patch_starts(size, patch, overlap) == starts
  assert starts[-1] + patch == size  # flush with the border


def test_patch_positions_first_axis_slowest():
  positions = sw.patch_positions((5, 11), (4, 4), 0.5)
  # Axis 0: 0, 1 (2 would end at 6 > 5: moved back to 1); axis 1 as above.
  expected = [(d, h) for d in (0, 1) for h in (0, 2, 4, 6, 7)]
  assert positions.tolist() == [list(p) for p in expected]
  assert sw.num_patches((5, 11), (4, 4), 0.5) == 10


@pytest.mark.parametrize("shape, patch, overlap", [
    ((13, 10, 7), (4, 4, 4), 0.5), ((9, 17, 5), (8, 3, 5), 0.25), ((30, 6, 11), (7, 6, 2), 0.0),
    ((12, 12, 12), (5, 5, 5), 0.75)])
def test_patches_cover_every_voxel_inside_the_volume(shape, patch, overlap):
  covered = np.zeros(shape, np.int32)
  for corner in sw.patch_positions(shape, patch, overlap):
    window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
    assert all(c >= 0 and c + p <= s for c, p, s in zip(corner, patch, shape))
    covered[window] += 1
  assert covered.min() >= 1


# --- The importance map by hand ---


def test_gaussian_map_by_hand():
  # p = 3: x = -1, 0, 1, sigma = 0.375: exp(-1 / (2 * 0.140625)) = exp(-32 / 9).
  np.testing.assert_allclose(sw.importance_map((3,)), [math.exp(-32 / 9), 1.0, math.exp(-32 / 9)],
                             rtol=1e-6)
  # p = 4: x = +-1.5, +-0.5, sigma = 0.5: exp(-4.5), exp(-0.5).
  a, b = math.exp(-4.5), math.exp(-0.5)
  np.testing.assert_allclose(sw.importance_map((4,)), [a, b, b, a], rtol=1e-6)
  # Separable: the 2-D map is the outer product; its corner exp(-32 / 9 - 4.5).
  m = sw.importance_map((3, 4))
  assert m.shape == (3, 4) and m.dtype == np.float32
  np.testing.assert_allclose(m, np.outer([math.exp(-32 / 9), 1, math.exp(-32 / 9)], [a, b, b, a]),
                             rtol=1e-6)
  # A patch's faces: exp(-8 ((p - 1) / p)^2) per axis, whatever p.
  for p in (8, 32, 64):
    assert sw.importance_map((p,))[0] == pytest.approx(math.exp(-8 * ((p - 1) / p)**2), rel=1e-5)
  # Far above the floor even at the corner of a 64^3 patch.
  assert sw.importance_map((64, 64, 64)).min() > 1e-12 > sw.MIN_WEIGHT


def test_constant_map_is_ones():
  np.testing.assert_array_equal(sw.importance_map((2, 3), "constant"), np.ones((2, 3)))


# --- Whole volumes ---


@pytest.mark.parametrize("mode", sw.BLEND_MODES)
@pytest.mark.parametrize("shape, patch", [
    ((13, 10, 7, 2), 4),            # no axis a multiple of the patch
    ((3, 9, 5, 1), (4, 4, 8)),      # two axes shorter than the patch: padded, cropped back
    ((11, 6, 1), (4, 4)),           # a 2-D image
])
def test_identity_returns_the_input(mode, shape, patch):
  x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
  sizes = []
  y = sw.sliding_window(x, _identity_counting(sizes), patch, 0.5, 3, mode)
  assert y.shape == x.shape and y.dtype == np.float32
  np.testing.assert_allclose(y, x, rtol=0, atol=1e-6)


def test_fn_gets_at_most_batch_size_patches():
  x = np.zeros((13, 10, 7, 1), np.float32)
  for batch_size in (1, 4, 7, 1000):
    sizes = []
    sw.sliding_window(x, _identity_counting(sizes), 4, 0.5, batch_size)
    n = sw.num_patches(x.shape[:-1], (4, 4, 4), 0.5)
    assert n == 6 * 4 * 3  # axis starts 0,2,4,6,8,9 / 0,2,4,6 / 0,2,3
    assert max(sizes) == min(batch_size, n) and sum(sizes) == n
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1)


def test_output_channels_of_fn():
  x = np.random.default_rng(1).uniform(-1, 1, (9, 9, 9, 2)).astype(np.float32)
  y = sw.sliding_window(x, lambda p: p.sum(axis=-1, keepdims=True), 4)
  np.testing.assert_allclose(y, x.sum(axis=-1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("mode", sw.BLEND_MODES)
def test_constant_image_stays_that_constant(mode):
  """A constant-preserving model (each patch -> its own mean) on a constant
  image: the same constant everywhere, no seam, up to float32 rounding."""
  c = np.float32(0.3)
  x = np.full((40, 24, 33, 1), c, np.float32)
  y = sw.sliding_window(x, lambda p: np.broadcast_to(p.mean(axis=(1, 2, 3, 4), keepdims=True),
                                                     p.shape), 16, 0.5, 4, mode)
  ulp = np.spacing(c)
  assert np.abs(y - c).max() <= 4 * ulp
  assert _max_neighbour_difference(y) <= 4 * ulp


# --- Seams ---

# A 32^3 model over a [32, 32, 80] volume: one patch along D and H, four along
# W (starts 0, 16, 32, 48), patch k adding k * STEP to a zero input. Blending
# only happens along W, where each voxel past w = 16 is covered by two patches.
P, STEP = 32, 0.1
SEAM_SHAPE = (P, P, 80, 1)


def test_constant_blending_leaves_seams_at_patch_borders():
  """Averaging: w in [16k, 16k + 16) is covered by patches k - 1 and k and
  takes (k - 0.5) * STEP; [0, 16) takes 0 and [64, 80) 3 * STEP. The value
  jumps at each patch border, by the whole STEP where one patch ends and
  another begins (w = 32 and 48)."""
  y = sw.sliding_window(np.zeros(SEAM_SHAPE, np.float32), _offset_per_patch(STEP), P, 0.5, 4,
                        "constant")
  line = y[P // 2, P // 2, :, 0]
  expected = np.repeat([0, 0.5, 1.5, 2.5, 3.0], 16) * STEP
  np.testing.assert_allclose(line, expected, atol=1e-6)
  np.testing.assert_allclose(y, np.broadcast_to(line[None, None, :, None], y.shape), atol=1e-6)
  jumps = np.abs(np.diff(line))
  assert sorted(np.flatnonzero(jumps > 1e-6) + 1) == [16, 32, 48, 64]  # the patch borders
  assert _max_neighbour_difference(y) == pytest.approx(STEP, rel=1e-5)
  across, inside = sw.seam_steps(y, P)
  assert across == pytest.approx(STEP, rel=1e-5) and inside < 1e-6


def test_gaussian_blending_is_smooth_under_the_bound():
  """Gaussian weights, by hand: where patches k - 1 and k overlap (starts
  s apart, s = P / 2, sigma = P / 8), the D and H factors are the same for
  both and cancel, and log(w_k / w_{k-1}) = s (w - m) / sigma^2 with m
  halfway between their centres. So patch k's share is a logistic function of
  w with slope s / sigma^2 = 32 / P per voxel, and the output
  (k - 1) * STEP + share * STEP changes between neighbours by at most
  STEP * (logistic(16 / P) - logistic(-16 / P)) = STEP * tanh(8 / P):
  0.245 STEP at P = 32, reached where m falls between two voxels (it does:
  m = 23.5, 39.5, 55.5). Outside the overlaps (w < 16) the output is 0."""
  y = sw.sliding_window(np.zeros(SEAM_SHAPE, np.float32), _offset_per_patch(STEP), P, 0.5, 4,
                        "gaussian")
  bound = STEP * math.tanh(8 / P)
  assert _max_neighbour_difference(y) <= bound + 1e-6
  assert _max_neighbour_difference(y) == pytest.approx(bound, rel=1e-3)  # the bound is tight
  constant = sw.sliding_window(np.zeros(SEAM_SHAPE, np.float32), _offset_per_patch(STEP), P, 0.5,
                               4, "constant")
  assert _max_neighbour_difference(y) < _max_neighbour_difference(constant) / 4
  line = y[P // 2, P // 2, :, 0]
  # Across the borders where constant blending jumps, Gaussian barely moves:
  # a patch enters (and at w = 32, 48 another leaves) with its face's weight
  # e = exp(-8 (31/32)^2) = 5.5e-4, against about 1 of the patch whose middle
  # lies there.
  face = math.exp(-8 * ((P - 1) / P)**2)
  for border in (16, 32, 48, 64):
    assert abs(line[border] - line[border - 1]) < 2.5 * face * STEP


def test_gaussian_blending_leaves_no_seam_on_a_3d_grid():
  """Patches along every axis (4 x 4 x 4 of 16^3 over 40^3), random
  per-patch biases in [0, STEP): constant blending steps at the patch
  borders and is flat between them; Gaussian blending does not step at the
  borders (the faces weigh exp(-8 (15/16)^2) = 9e-4 of a centre)."""
  rng = np.random.default_rng(0)
  biases = rng.uniform(0, STEP, sw.num_patches((40, 40, 40), (16, 16, 16))).astype(np.float32)

  def fn_for():
    seen = [0]

    def fn(x):
      b = biases[seen[0]:seen[0] + len(x)]
      seen[0] += len(x)
      return x + b[:, None, None, None, None]

    return fn

  x = np.zeros((40, 40, 40, 1), np.float32)
  across, inside = sw.seam_steps(sw.sliding_window(x, fn_for(), 16, 0.5, 8, "constant"), 16, 0.5)
  assert inside < 1e-6 and across > 0.1 * STEP
  across, inside = sw.seam_steps(sw.sliding_window(x, fn_for(), 16, 0.5, 8, "gaussian"), 16, 0.5)
  assert across < 1e-2 * STEP < inside

# --- Refusals ---


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "median"}, "mode must be one of gaussian, constant, got 'median'"),
    ({"overlap": 1.0}, "overlap must be in [0, 1), got 1.0"),
    ({"patch_size": (4, 4)}, "patch_size must be a positive int or 3 positive ints"),
    ({"patch_size": 0}, "patch_size must be a positive int or 3 positive ints"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
])
def test_refusals(kwargs, message):
  args = {"patch_size": 4, **kwargs}
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")
                     .replace(")", r"\)")):
    sw.sliding_window(np.zeros((5, 5, 5, 1), np.float32), lambda p: p, **args)


def test_fn_of_another_shape_is_refused():
  with pytest.raises(ValueError, match=r"fn must return \[n, \*patch_size, C_out\] = "
                     r"\[2, 4, 4, 4, C_out\] for 2 patch\(es\), got shape \(2, 2, 2, 2, 1\)"):
    sw.sliding_window(np.zeros((6, 4, 4, 1), np.float32), lambda p: p[:, ::2, ::2, ::2], 4, 0.5, 2)


def test_seam_steps_margin():
  """A step at the volume's faces (a model's own edge effect) counts unless
  the margin leaves it out; the borders keep their positions."""
  y = np.zeros((40, 1), np.float32)
  y[0] = -1.0  # The face.
  y[16:] += 0.5  # A step across the border at 16 (patch 16, overlap 0.5: starts 0, 8, 16, 24).
  assert sw.seam_steps(y, 16) == (0.5, 1.0)
  assert sw.seam_steps(y, 16, margin=1) == (0.5, 0.0)
  assert sw.seam_steps(y, 16, margin=17) == (0.0, 0.0)
