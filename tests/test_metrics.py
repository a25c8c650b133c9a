"""Golden tests of evaluation/metrics.py: FID, KID, IS, precision/recall and the
streaming feature statistics, against closed forms and brute-force sums."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from evaluation import metrics


def _stats(x, batch=None, **kwargs):
  s = metrics.FeatureStats(**kwargs)
  batch = batch or len(x)
  for start in range(0, len(x), batch):
    s.update(x[start:start + batch])
  return s


class FeatureStatsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 7, 100, 1000)
  def test_streaming_equals_one_shot(self, batch):
    rng = np.random.default_rng(0)
    # A large mean against the spread: a naive sum of outer products would
    # lose the covariance to cancellation.
    x = rng.standard_normal((1000, 5)) @ rng.standard_normal((5, 5)) + 1e4
    s = _stats(x, batch)
    self.assertEqual(s.count, 1000)
    self.assertAllClose(s.mean, x.mean(axis=0), rtol=0, atol=1e-9)
    self.assertAllClose(s.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)

  def test_kept_subset_is_order_free_and_capped(self):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 3)).astype(np.float32)
    a = _stats(x, 64, max_kept=100)
    b = _stats(x[rng.permutation(500)], 17, max_kept=100)
    self.assertEqual(a.features.shape, (100, 3))
    self.assertAllEqual(a.features, b.features)
    rows = {r.tobytes() for r in x}
    self.assertTrue(all(r.tobytes() in rows for r in a.features))
    self.assertEqual(_stats(x, 64, max_kept=1000).features.shape, (500, 3))

  def test_save_and_load(self):
    rng = np.random.default_rng(2)
    s = _stats(rng.standard_normal((50, 4)), 8, max_kept=20)
    path = os.path.join(self.create_tempdir().full_path, "stats.npz")
    s.save(path, metadata={"dataset": "x"})
    t, meta = metrics.FeatureStats.load(path)
    self.assertEqual(meta, {"dataset": "x"})
    self.assertEqual(t.count, 50)
    self.assertAllEqual(t.mean, s.mean)
    self.assertAllEqual(t.cov, s.cov)
    self.assertAllEqual(t.features, s.features)

  def test_errors(self):
    s = metrics.FeatureStats()
    with self.assertRaisesRegex(ValueError, "need at least 1 feature vectors, have 0"):
      _ = s.mean
    s.update(np.zeros((3, 2)))
    with self.assertRaisesRegex(ValueError, "dimension 5, expected 2"):
      s.update(np.zeros((1, 5)))


def _closed_form_diagonal(mu1, var1, mu2, var2):
  """FID of N(mu1, diag var1) and N(mu2, diag var2) by hand: the covariances
  commute, so Tr((S1 S2)^1/2) = sum sqrt(var1 var2)."""
  return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


class FIDTest(tf.test.TestCase):

  def test_set_against_itself_is_zero(self):
    rng = np.random.default_rng(0)
    for n, d in ((2000, 64), (100, 256)):  # Full rank, and rank-deficient.
      x = rng.standard_normal((n, d)) * 3.0 + 5.0
      s = _stats(x, 64)
      self.assertLess(metrics.fid(s, s), 1e-6)
      self.assertLess(metrics.fid(s, _stats(x[::-1], 33)), 1e-6)

  def test_exact_statistics_match_closed_forms(self):
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    var1, var2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = _closed_form_diagonal(mu1, var1, mu2, var2)
    self.assertAllClose(metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)),
                        expected, rtol=1e-10)
    # Commuting but not diagonal: the same rotation of both covariances.
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    self.assertAllClose(metrics.frechet_distance(mu1, q @ np.diag(var1) @ q.T,
                                                 mu2, q @ np.diag(var2) @ q.T),
                        expected, rtol=1e-10)
    # Non-commuting 2x2: for a 2x2 PSD M, Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M)),
    # with M = S1 S2 (same eigenvalues as S1^1/2 S2 S1^1/2).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 3.0]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2.0 * np.sqrt(np.linalg.det(m)))
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    self.assertAllClose(metrics.frechet_distance([1.0, 0.0], s1, [0.0, 0.0], s2), expected,
                        rtol=1e-10)

  def test_sampled_gaussians_approach_the_closed_form(self):
    rng = np.random.default_rng(2)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    var1, var2 = np.array([1.0, 2.0, 0.5]), np.array([0.25, 2.0, 1.5])
    n = 200_000
    a = _stats(mu1 + np.sqrt(var1) * rng.standard_normal((n, 3)), 10_000, max_kept=0)
    b = _stats(mu2 + np.sqrt(var2) * rng.standard_normal((n, 3)), 10_000, max_kept=0)
    self.assertAllClose(metrics.fid(a, b), _closed_form_diagonal(mu1, var1, mu2, var2),
                        atol=0.02)


def _brute_force_mmd2(x, y):
  k = lambda a, b: (np.dot(a, b) / len(a) + 1.0) ** 3  # noqa: E731
  m = len(x)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2.0 * xy


class KIDTest(tf.test.TestCase):

  def test_mmd_matches_brute_force(self):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((9, 4)) + 0.3
    self.assertAllClose(metrics.polynomial_mmd2(x, y), _brute_force_mmd2(x, y), rtol=1e-10)

  def test_unbiased_over_many_draws(self):
    # Each draw: fresh samples of one distribution. The biased estimator
    # (diagonal included) would be positive by about 2 E[k(x,x) - k(x,y)] / m.
    rng = np.random.default_rng(1)
    values = []
    for _ in range(300):
      a, b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
      values.append(metrics.kid(a, b, num_subsets=1, subset_size=40, seed=0)[0])
    mean, stderr = np.mean(values), np.std(values, ddof=1) / np.sqrt(len(values))
    self.assertLess(abs(mean), 3.0 * stderr)
    bias = np.mean([_biased(rng.standard_normal((40, 8)), rng.standard_normal((40, 8)))
                    for _ in range(50)])
    self.assertGreater(bias, 10.0 * stderr)  # The test can tell the difference.

  def test_different_distributions_and_standard_error(self):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 0.5
    value, stderr = metrics.kid(a, b, num_subsets=20, subset_size=100)
    self.assertGreater(value, 10 * stderr)
    self.assertGreater(stderr, 0.0)
    self.assertEqual(metrics.kid(a, b, num_subsets=20, subset_size=100), (value, stderr))
    with self.assertRaisesRegex(ValueError, "at least 2 vectors"):
      metrics.kid(a[:1], b)


def _biased(x, y):
  d = x.shape[1]
  k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
  return k(x, x).mean() + k(y, y).mean() - 2.0 * k(x, y).mean()


class InceptionScoreTest(tf.test.TestCase):

  def test_golden(self):
    self.assertAllClose(metrics.inception_score(np.zeros((20, 5)), splits=2), (1.0, 0.0))
    # Confident and evenly spread over K classes: IS = K.
    logits = np.tile(np.eye(4) * 50.0, (10, 1))
    self.assertAllClose(metrics.inception_score(logits, splits=1), (4.0, 0.0), rtol=1e-6)
    # Two classes with p = (0.8, 0.2) and (0.2, 0.8), half each: marginal (0.5, 0.5),
    # KL = 0.8 ln 1.6 + 0.2 ln 0.4.
    logits = np.log(np.array([[0.8, 0.2], [0.2, 0.8]] * 5))
    kl = 0.8 * np.log(1.6) + 0.2 * np.log(0.4)
    self.assertAllClose(metrics.inception_score(logits, splits=1)[0], np.exp(kl))


class PrecisionRecallTest(tf.test.TestCase):

  def test_self_and_far_away(self):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16))
    self.assertEqual(metrics.precision_recall(x, x, batch_size=64), (1.0, 1.0))
    self.assertEqual(metrics.precision_recall(x, x + 100.0), (0.0, 0.0))

  def test_hand_computed_1d(self):
    # Real 0, 1, 2, 3, 4, 5 (k=1 radii: 1 each); fake 0.5, 2.5, 9, 10 (radii 2, 2, 1, 1).
    real = np.arange(6.0)[:, None]
    fake = np.array([0.5, 2.5, 9.0, 10.0])[:, None]
    precision, recall = metrics.precision_recall(real, fake, k=1, batch_size=3)
    self.assertEqual(precision, 0.5)  # 0.5 and 2.5 inside, 9 and 10 not.
    self.assertAllClose(recall, 5 / 6)  # 0..4 within 2 of 0.5 or 2.5; 5 is not.

  def test_mode_dropping_lowers_recall_only(self):
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    real = centres[rng.integers(0, 2, 400)] + rng.standard_normal((400, 2))
    fake = centres[0] + rng.standard_normal((400, 2))
    precision, recall = metrics.precision_recall(real, fake)
    self.assertGreater(precision, 0.9)
    self.assertLess(recall, 0.6)


class PermutationTest(tf.test.TestCase):
  """Every metric is the same for any order of the samples."""

  def test_every_metric(self):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 12)), rng.standard_normal((300, 12)) * 1.3 + 0.2
    pa, pb = rng.permutation(400), rng.permutation(300)
    self.assertAllClose(metrics.fid(_stats(a, 50), _stats(b, 50)),
                        metrics.fid(_stats(a[pa], 64), _stats(b[pb], 7)), rtol=1e-9)
    self.assertEqual(metrics.kid(a, b, 10, 100, seed=3), metrics.kid(a[pa], b[pb], 10, 100, 3))
    self.assertEqual(metrics.precision_recall(a, b), metrics.precision_recall(a[pa], b[pb]))
    logits = rng.standard_normal((400, 10)) * 3
    self.assertEqual(metrics.inception_score(logits), metrics.inception_score(logits[pa]))


if __name__ == "__main__":
  tf.test.main()
