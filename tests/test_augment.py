"""Golden tests of DiffAugment (models/augment.py) on small known images.

Draws are written as the values StepRandomness makes (k / 2^24); TOP is the
largest one, 1 - 2^-24.
"""

import numpy as np
import tensorflow as tf

from models import augment
from training import randomness

TOP = 1.0 - 2.0**-24
ALL = ("color", "translation", "cutout")


def _params(batch, **given):
  """Neutral draws (no colour change, no shift) for every op, overridden by `given`."""
  out = {name: np.full([batch, *shape], 0.5, np.float32)
         for name, shape in augment.param_shapes(ALL).items()}
  out["cutout"] = np.full([batch, 2], TOP, np.float32)  # Corner square, see per test.
  out.update({k: np.asarray(v, np.float32) for k, v in given.items()})
  return {k: tf.constant(v) for k, v in out.items()}


def _np_shift(x, dy, dx):
  """out[i, j] = x[i - dy, j - dx], 0 outside: the pixel at (r, c) moves to (r + dy, c + dx)."""
  out = np.zeros_like(x)
  h, w = x.shape[:2]
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        out[i, j] = x[i - dy, j - dx]
  return out


class PolicyTest(tf.test.TestCase):

  def test_parse(self):
    self.assertEqual(augment.parse_policy("diffaugment"), ALL)
    self.assertEqual(augment.parse_policy(" Cutout, color "), ("cutout", "color"))
    for empty in ("", "none", None):
      self.assertEqual(augment.parse_policy(empty), ())
    with self.assertRaisesRegex(ValueError, "unknown augmentation 'colour' in 'colour'; valid: "
                                "diffaugment, color, translation, cutout, or none"):
      augment.parse_policy("colour")
    with self.assertRaisesRegex(ValueError, "'color' appears twice"):
      augment.parse_policy("diffaugment,color")

  def test_param_shapes(self):
    self.assertEqual(augment.param_shapes(ALL), {
        "brightness": (1,), "saturation": (1,), "contrast": (1,), "translation": (2,),
        "cutout": (2,), "apply": (3,)})
    self.assertEqual(augment.param_shapes(("cutout",)), {"cutout": (2,), "apply": (1,)})
    self.assertEqual(augment.param_shapes(()), {})

  def test_missing_param(self):
    with self.assertRaisesRegex(ValueError, r"augment\(cutout\) is missing params cutout"):
      augment.augment(tf.zeros([1, 4, 4, 1]), ("cutout",), {})
    with self.assertRaisesRegex(ValueError, "missing params apply"):
      augment.augment(tf.zeros([1, 4, 4, 1]), ("cutout",), {"cutout": tf.zeros([1, 2])}, p=0.5)

  def test_draws_do_not_depend_on_replicas(self):
    # Two replicas' rows of the global batch are the one replica's rows.
    seed = tf.constant([7, 3], tf.int64)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)), tf.float32)

    def run(offset, local):
      rand = randomness.StepRandomness(seed, 4, offset, local)
      return augment.augment(x[offset:offset + local], ALL,
                             augment.draw_params(rand.uniform, ALL, "real"))

    self.assertAllEqual(run(0, 4), tf.concat([run(0, 2), run(2, 2)], 0))


class TranslationTest(tf.test.TestCase):

  def test_shift_mapping_and_its_ends(self):
    # m = int(size / 8 + 0.5): 1 for 8, 2 for 16, 4 for 32; shift = floor(u (2m + 1)) - m.
    u = [0.0, 0.19, 0.21, 0.5, 0.79, 0.81, TOP]
    self.assertAllEqual(augment.translation_shift(tf.constant(u), 16), [-2, -2, -1, 0, 1, 2, 2])
    self.assertAllEqual(augment.translation_shift(tf.constant([0.0, 0.5, TOP]), 8), [-1, 0, 1])
    self.assertAllEqual(augment.translation_shift(tf.constant([0.0, TOP]), 32), [-4, 4])

  def test_bright_pixel_lands_and_border_is_zero(self):
    x = np.full([16, 16, 1], -1.0, np.float32)
    x[5, 5] = 1.0
    # dy = +1 (u in [0.6, 0.8)), dx = -2 (u in [0, 0.2)).
    got = augment.translate(tf.constant(x[None]), tf.constant([[0.7, 0.1]]))[0, ..., 0]
    expected = np.full([16, 16], -1.0, np.float32)
    expected[0, :] = 0.0  # Vacated top row.
    expected[:, 14:] = 0.0  # Vacated right columns.
    expected[6, 3] = 1.0
    self.assertAllEqual(got, expected)

  def test_extreme_shifts_match_numpy(self):
    x = np.random.default_rng(1).uniform(-1, 1, (16, 16, 2)).astype(np.float32)
    for uy, ux, dy, dx in ((0.0, 0.0, -2, -2), (TOP, TOP, 2, 2), (0.0, TOP, -2, 2),
                           (0.5, 0.5, 0, 0)):
      got = augment.translate(tf.constant(x[None]), tf.constant([[uy, ux]]))[0]
      self.assertAllEqual(got, _np_shift(x, dy, dx))


class CutoutTest(tf.test.TestCase):

  def test_start_mapping_and_its_ends(self):
    # Size 16: side 8, centre floor(u * 17) in [0, 16], start = centre - 4.
    start, side = augment.cutout_start(tf.constant([0.0, 6.5 / 17, TOP]), 16)
    self.assertEqual(side, 8)
    self.assertAllEqual(start, [-4, 2, 12])
    # Size 10: side int(5.5) = 5 (odd), centre floor(u * 10) in [0, 9], start = centre - 2.
    start, side = augment.cutout_start(tf.constant([0.0, TOP]), 10)
    self.assertEqual(side, 5)
    self.assertAllEqual(start, [-2, 7])

  def test_whole_square_at_the_drawn_position(self):
    # Centres (6, 10): rows [2, 10), columns [6, 14): 8 * 8 = 64 pixels zeroed.
    x = tf.ones([1, 16, 16, 3])
    got = augment.cutout(x, tf.constant([[6.5 / 17, 10.5 / 17]]))[0].numpy()
    expected = np.ones([16, 16, 3], np.float32)
    expected[2:10, 6:14] = 0.0
    self.assertAllEqual(got, expected)
    self.assertEqual(np.sum(got[..., 0] == 0), 64)

  def test_square_clipped_at_the_border(self):
    # u = (0, TOP): rows [-4, 4) and columns [12, 20), clipped: 4 * 4 pixels.
    got = augment.cutout(tf.ones([1, 16, 16, 1]), tf.constant([[0.0, TOP]]))[0, ..., 0].numpy()
    expected = np.ones([16, 16], np.float32)
    expected[:4, 12:] = 0.0
    self.assertAllEqual(got, expected)


class ColorTest(tf.test.TestCase):
  # Pixels (2x2, RGB); hand computation for draws (b, s, c) = (0.75, 0.25, 0.75):
  # brightness +0.25; saturation x0.5 about the pixel mean (.25, .25, -.25, .55);
  # contrast x1.25 about the image mean 0.2.
  X = [[[0.0, 0.0, 0.0], [0.3, 0.0, -0.3]], [[-0.5, -0.5, -0.5], [0.6, 0.3, 0.0]]]
  EXPECTED = [[[0.2625] * 3, [0.45, 0.2625, 0.075]], [[-0.3625] * 3, [0.825, 0.6375, 0.45]]]
  # (0.5, 0, 0.5): no brightness change, saturation 0 (each pixel its mean), contrast x1.
  GRAY = [[[0.0] * 3, [0.0] * 3], [[-0.5] * 3, [0.3] * 3]]

  def test_golden(self):
    x = tf.constant([self.X, self.X])
    got = augment.color(x, [[0.75], [0.5]], [[0.25], [0.0]], [[0.75], [0.5]])
    self.assertAllClose(got, [self.EXPECTED, self.GRAY], atol=1e-6)

  def test_each_factor(self):
    x = tf.constant([self.X])
    half = [[0.5]]
    self.assertAllClose(augment.color(x, [[0.0]], half, half), [np.array(self.X) - 0.5])
    self.assertAllClose(augment.color(x, half, [[1.0]], half),  # Saturation x2.
                        [[[[0.0] * 3, [0.6, 0.0, -0.6]], [[-0.5] * 3, [0.9, 0.3, -0.3]]]])
    # Contrast x0.5 about the image mean (0 + 0 - 0.5 + 0.3) / 4 = -0.05: 0.5 x - 0.025.
    self.assertAllClose(augment.color(x, half, half, [[0.0]]), [np.array(self.X) * 0.5 - 0.025])

  def test_dtypes(self):
    x = tf.constant([self.X])
    for dtype in (tf.bfloat16, tf.float16):
      got = augment.color(tf.cast(x, dtype), [[0.75]], [[0.25]], [[0.75]])
      self.assertEqual(got.dtype, dtype)
      self.assertAllClose(tf.cast(got, tf.float32), [self.EXPECTED], atol=1e-2)


class AugmentTest(tf.test.TestCase):

  def _image(self, shape=(2, 16, 16, 3), seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape), tf.float32)

  def _grad_of_sum(self, x, policy, params):
    with tf.GradientTape() as tape:
      tape.watch(x)
      total = tf.reduce_sum(augment.augment(x, policy, params))
    return tape.gradient(total, x)

  def test_gradient_is_the_survival_mask(self):
    # Neutral colour draws (factors 1): d sum(out) / dx = 1 where the pixel
    # lands inside the image and outside the square, else 0.
    # Shift (+1, -2); square rows [2, 10), columns [6, 14) after the shift.
    params = _params(1, translation=[[0.7, 0.1]], cutout=[[6.5 / 17, 10.5 / 17]])
    grad = self._grad_of_sum(self._image((1, 16, 16, 3)), ALL, params)[0].numpy()
    expected = np.zeros([16, 16], np.float32)
    for r in range(16):
      for c in range(16):
        lr, lc = r + 1, c - 2
        expected[r, c] = 0 <= lr < 16 and 0 <= lc < 16 and not (2 <= lr < 10 and 6 <= lc < 14)
    for channel in range(3):
      self.assertAllEqual(grad[..., channel], expected)
    self.assertEqual(int(expected.sum()), 15 * 14 - 64)

  def test_color_gradient_of_the_sum_is_one(self):
    # Saturation and contrast keep each image's sum, brightness adds a constant.
    params = _params(1, brightness=[[0.9]], saturation=[[0.3]], contrast=[[0.8]])
    grad = self._grad_of_sum(self._image((1, 4, 4, 3)), ("color",), params)
    self.assertAllClose(grad, tf.ones([1, 4, 4, 3]), atol=1e-5)

  def test_same_params_same_spatial_transform(self):
    # A pix2pix pair: a 1-channel input and a 3-channel target; translation and
    # cutout act per pixel, so augmenting the two stacked equals augmenting each.
    a, b = self._image((2, 16, 16, 1), 1), self._image((2, 16, 16, 3), 2)
    policy = ("translation", "cutout")
    params = _params(2, translation=[[0.7, 0.1], [0.0, TOP]], cutout=[[0.3, 0.6], [TOP, 0.0]])
    both = augment.augment(tf.concat([a, b], -1), policy, params)
    self.assertAllEqual(both[..., :1], augment.augment(a, policy, params))
    self.assertAllEqual(both[..., 1:], augment.augment(b, policy, params))
    self.assertAllEqual(augment.augment(b, policy, params), augment.augment(b, policy, params))

  def test_probability(self):
    x = self._image()
    params = _params(2, brightness=[[0.9], [0.1]], translation=[[0.7, 0.1], [0.2, 0.9]],
                     cutout=[[0.3, 0.6], [0.9, 0.2]], apply=[[0.3, 0.7, 0.1], [0.0, 0.4, TOP]])
    always = augment.augment(x, ALL, params)
    self.assertAllEqual(augment.augment(x, ALL, params, p=0.0), x)
    self.assertAllEqual(augment.augment(x, ALL, params, p=1.0), always)
    # Per example: example 0 untouched, example 1 augmented.
    got = augment.augment(x, ALL, params, p=tf.constant([0.0, 1.0]))
    self.assertAllEqual(got[0], x[0])
    self.assertAllEqual(got[1], always[1])
    # p = 0.5 (apply < p): example 0 gets colour and cutout, example 1 colour
    # and translation; 0.5 itself would not apply.
    got = augment.augment(x, ALL, params, p=0.5)
    self.assertAllEqual(got[:1], augment.augment(
        x[:1], ("color", "cutout"), {k: v[:1] for k, v in params.items()}))
    self.assertAllEqual(got[1:], augment.augment(
        x[1:], ("color", "translation"), {k: v[1:] for k, v in params.items()}))

  def test_empty_policy_is_identity(self):
    x = self._image()
    self.assertIs(augment.augment(x, (), {}), x)

  def test_float16_and_bfloat16(self):
    x = self._image()
    params = _params(2, translation=[[0.7, 0.1], [0.2, 0.9]], cutout=[[0.3, 0.6], [0.9, 0.2]],
                     brightness=[[0.9], [0.1]])
    ref = augment.augment(x, ALL, params)
    for dtype in (tf.float16, tf.bfloat16):
      xd = tf.cast(x, dtype)
      with tf.GradientTape() as tape:
        tape.watch(xd)
        got = augment.augment(xd, ALL, params)
        total = tf.reduce_sum(tf.cast(got, tf.float32))
      self.assertEqual(got.dtype, dtype)
      self.assertAllClose(tf.cast(got, tf.float32), ref, atol=3e-2)
      self.assertEqual(tape.gradient(total, xd).dtype, dtype)

  def test_xla_matches_eager(self):
    x = self._image()
    params = _params(2, brightness=[[0.9], [0.1]], saturation=[[0.3], [0.8]],
                     translation=[[0.7, 0.1], [0.0, TOP]], cutout=[[0.3, 0.6], [TOP, 0.0]],
                     apply=[[0.3, 0.7, 0.1], [0.0, 0.5, TOP]])

    def run(x, params):
      with tf.GradientTape() as tape:
        tape.watch(x)
        out = augment.augment(x, ALL, params, p=0.5)
        total = tf.reduce_sum(out * out)
      return out, tape.gradient(total, x)

    try:
      compiled = tf.function(run, jit_compile=True)(x, params)
    except (tf.errors.UnimplementedError, tf.errors.NotFoundError) as e:  # pragma: no cover
      self.skipTest(f"XLA unavailable: {e}")
    eager = run(x, params)
    self.assertAllClose(compiled[0], eager[0], atol=1e-6)
    self.assertAllClose(compiled[1], eager[1], atol=1e-5)


if __name__ == "__main__":
  tf.test.main()
