"""Sample-quality metrics on feature vectors: FID, KID, IS, precision/recall.

Pure numpy (no scipy); the feature networks that produce the vectors live in
`evaluation/features.py` and the evaluation job in `evaluation/evaluate.py`.

| metric              | needs                          | reference                         |
|---------------------|--------------------------------|-----------------------------------|
| `fid`               | mean and covariance (streamed) | Heusel et al. 2017                |
| `kid`               | the features (a capped subset) | Binkowski et al. 2018             |
| `inception_score`   | classifier logits              | Salimans et al. 2016              |
| `precision_recall`  | the features (a capped subset) | Kynkaanniemi et al. 2019 (k = 3)  |

`FeatureStats` streams: it keeps a float64 running sum and sum of outer
products, so the mean and covariance of any number of samples cost O(d^2)
memory. KID and precision/recall need the vectors themselves; `FeatureStats`
keeps a uniform random subset of at most `max_kept` of them, chosen by a hash
of each vector's bytes (a bottom-k sketch), so the subset does not depend on
the order in which samples arrive.

Every function here gives the same result for any permutation of its
samples: the ones that draw subsets or splits first put the samples in a
canonical order (`canonical_order`).
"""

import hashlib
import json

import numpy as np

__all__ = [
    "FeatureStats", "canonical_order", "fid", "frechet_distance", "inception_score", "kid",
    "polynomial_mmd2", "precision_recall",
]

_STATS_FORMAT = 1


def _row_priorities(x):
  """A pseudo-random float in [0, 1) per row, a function of the row's bytes."""
  x = np.ascontiguousarray(x, np.float32)
  out = np.empty(len(x))
  for i, row in enumerate(x):
    digest = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
    out[i] = int.from_bytes(digest, "little") / 2.0**64
  return out


def canonical_order(x):
  """Indices that sort the rows of x [N, d] by their content.

  Rows are ordered by their projection on a fixed pseudo-random direction, so
  any permutation of x gives back the same sorted array (rows with equal
  projections are, almost surely, equal rows).
  """
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"expected [N, d] features, got shape {x.shape}")
  direction = np.random.default_rng(1234).standard_normal(x.shape[1])
  return np.argsort(x.astype(np.float64) @ direction, kind="stable")


class FeatureStats:
  """Streaming mean and covariance of feature vectors, plus a capped subset.

  Sums are float64 and taken around a shift (the first batch's mean), which
  keeps the covariance accurate when the features' mean is large against
  their spread.

      stats = FeatureStats(max_kept=10_000)
      for batch in batches:          # [B, d] each
        stats.update(batch)
      stats.mean, stats.cov, stats.count, stats.features

  Attributes:
    max_kept: at most this many vectors are kept for KID and
      precision/recall (0: none).
  """

  def __init__(self, max_kept=10_000):
    if max_kept < 0:
      raise ValueError(f"max_kept must be >= 0, got {max_kept}")
    self.max_kept = int(max_kept)
    self.count = 0
    self._shift = None
    self._sum = None
    self._outer = None
    self._kept = None
    self._priority = np.zeros([0])
    self._pending = []  # (vectors, priorities) not yet merged into _kept.
    self._pending_rows = 0

  @property
  def dim(self):
    return None if self._sum is None else len(self._sum)

  def update(self, batch):
    """Adds feature vectors [B, d] (any float dtype)."""
    x = np.asarray(batch, np.float64)
    if x.ndim != 2:
      raise ValueError(f"expected features of shape [B, d], got {x.shape}")
    if self._sum is None:
      d = x.shape[1]
      self._shift = x.mean(axis=0) if len(x) else np.zeros(d)
      self._sum = np.zeros(d)
      self._outer = np.zeros((d, d))
      self._kept = np.zeros((0, d), np.float32)
    elif x.shape[1] != self.dim:
      raise ValueError(f"features of dimension {x.shape[1]}, expected {self.dim}")
    if not len(x):
      return
    centred = x - self._shift
    self.count += len(x)
    self._sum += centred.sum(axis=0)
    self._outer += centred.T @ centred
    if self.max_kept:
      self._keep(x.astype(np.float32))

  def _keep(self, x):
    self._pending.append((x, _row_priorities(x)))
    self._pending_rows += len(x)
    if self._pending_rows > self.max_kept:  # Compact now and then, not per batch.
      self._compact()

  def _compact(self):
    if not self._pending:
      return
    kept = np.concatenate([self._kept] + [x for x, _ in self._pending])
    priority = np.concatenate([self._priority] + [p for _, p in self._pending])
    self._pending, self._pending_rows = [], 0
    if len(kept) > self.max_kept:
      keep = np.argsort(priority, kind="stable")[:self.max_kept]
      kept, priority = kept[keep], priority[keep]
    self._kept, self._priority = kept, priority

  def _require(self, n):
    if self.count < n:
      raise ValueError(f"need at least {n} feature vectors, have {self.count}")

  @property
  def mean(self):
    """[d] float64."""
    self._require(1)
    return self._shift + self._sum / self.count

  @property
  def cov(self):
    """[d, d] float64, the unbiased sample covariance (N - 1), as np.cov."""
    self._require(2)
    m = self._sum / self.count
    return (self._outer - self.count * np.outer(m, m)) / (self.count - 1)

  @property
  def features(self):
    """The kept vectors [min(count, max_kept), d] float32, in canonical order."""
    if self._kept is None:
      return np.zeros((0, 0), np.float32)
    self._compact()
    return self._kept[canonical_order(self._kept)]

  def save(self, path, metadata=None):
    """Writes everything to an .npz; `metadata` (JSON-able) is stored with it."""
    self._require(1)
    self._compact()
    np.savez(path, format=_STATS_FORMAT, count=self.count, max_kept=self.max_kept,
             shift=self._shift, sum=self._sum, outer=self._outer, kept=self._kept,
             priority=self._priority, metadata=json.dumps(metadata or {}, sort_keys=True))

  @classmethod
  def load(cls, path):
    """Reads a `save`d file; returns (stats, metadata dict)."""
    with np.load(path) as f:
      if int(f["format"]) != _STATS_FORMAT:
        raise ValueError(f"{path}: feature statistics format {int(f['format'])}, this code "
                         f"reads {_STATS_FORMAT}")
      stats = cls(int(f["max_kept"]))
      stats.count = int(f["count"])
      stats._shift, stats._sum, stats._outer = f["shift"], f["sum"], f["outer"]
      stats._kept, stats._priority = f["kept"], f["priority"]
      metadata = json.loads(str(f["metadata"]))
    return stats, metadata


def _sqrt_psd(s):
  """Symmetric square root of a PSD matrix; rounding's negative eigenvalues -> 0."""
  w, v = np.linalg.eigh((s + s.T) / 2.0)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

      ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))

  Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)) is the sum of the
  singular values of S1^(1/2) S2^(1/2): one SVD, no matrix square root of a
  non-symmetric matrix and no square roots of rounding-level eigenvalues (an
  eigen-decomposition of S1^(1/2) S2 S1^(1/2) would turn each ~1e-16 of them
  into ~1e-8, which adds up over thousands of dimensions).

  Returns:
    A Python float >= 0 (clipped: rounding can make an exact 0 slightly
    negative).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, "
                     f"sigma {s1.shape} {s2.shape}")
  diff = mu1 - mu2
  cross = np.linalg.svd(_sqrt_psd(s1) @ _sqrt_psd(s2), compute_uv=False).sum()
  return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross))


def fid(stats_a, stats_b):
  """Frechet Inception Distance (Heusel et al. 2017) of two `FeatureStats`."""
  return frechet_distance(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)


def polynomial_mmd2(x, y):
  """Unbiased MMD^2 of two equal-size sets with k(a, b) = (a.b / d + 1)^3.

  The estimator of Binkowski et al. 2018 (their code's `polynomial_mmd`):
  within-set sums leave out the diagonal, the cross term uses every pair.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, d = x.shape
  kxx = (x @ x.T / d + 1.0) ** 3
  kyy = (y @ y.T / d + 1.0) ** 3
  kxy = (x @ y.T / d + 1.0) ** 3
  within = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1))
  return within - 2.0 * kxy.mean()


def kid(feats_a, feats_b, num_subsets=100, subset_size=1000, seed=0):
  """Kernel Inception Distance (Binkowski et al. 2018).

  The mean of `polynomial_mmd2` over `num_subsets` random subsets of
  `subset_size` vectors from each set (drawn without replacement within a
  subset; `subset_size` is capped at the smaller set's size).

  Returns:
    (mean, standard error): the standard error is std / sqrt(num_subsets) of
    the subset estimates. Subsets of the same samples overlap, so it measures
    the subset-drawing noise; the noise of the samples themselves is larger
    when `num_subsets * subset_size` exceeds the number of samples.

  Raises:
    ValueError: fewer than 2 vectors, or different dimensions.
  """
  a, b = np.asarray(feats_a), np.asarray(feats_b)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"expected [N, d] and [M, d] features, got {a.shape} and {b.shape}")
  m = min(subset_size, len(a), len(b))
  if m < 2:
    raise ValueError(f"KID needs at least 2 vectors per set, got {len(a)} and {len(b)}")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
  a, b = a[canonical_order(a)], b[canonical_order(b)]
  rng = np.random.default_rng(seed)
  values = np.array([
      polynomial_mmd2(a[rng.choice(len(a), m, replace=False)],
                      b[rng.choice(len(b), m, replace=False)])
      for _ in range(num_subsets)])
  stderr = values.std(ddof=1) / np.sqrt(num_subsets) if num_subsets > 1 else float("nan")
  return float(values.mean()), float(stderr)


def inception_score(logits, splits=10):
  """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))).

  Computed on each of `splits` equal parts of the samples (in canonical
  order), as in the original code.

  Args:
    logits: [N, K] classifier logits (unnormalized log-probabilities).

  Returns:
    (mean, std) over the splits.
  """
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"expected [N, K >= 2] logits, got shape {logits.shape}")
  if not 1 <= splits <= len(logits):
    raise ValueError(f"splits must be in [1, {len(logits)}], got {splits}")
  logits = logits[canonical_order(logits)]
  log_p = logits - logits.max(axis=1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
  scores = []
  for part in np.array_split(log_p, splits):
    p = np.exp(part)
    log_marginal = np.log(p.mean(axis=0) + 1e-30)
    scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), axis=1))))
  return float(np.mean(scores)), float(np.std(scores))


def _squared_distances(a, b):
  """[len(a), len(b)] squared Euclidean distances, float64."""
  d = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T))
  return np.maximum(d, 0.0)


def _knn_radii(x, k, batch_size):
  """Squared distance of each row of x to its k-th nearest other row."""
  out = np.empty(len(x))
  for start in range(0, len(x), batch_size):
    d = _squared_distances(x[start:start + batch_size], x)
    # Index k: the point itself (distance 0) comes first.
    out[start:start + batch_size] = np.partition(d, k, axis=1)[:, k]
  return out


def _coverage(manifold, radii, queries, batch_size):
  """Fraction of queries inside at least one ball (manifold[i], radii[i])."""
  inside = 0
  for start in range(0, len(queries), batch_size):
    d = _squared_distances(queries[start:start + batch_size], manifold)
    inside += int(np.sum(np.any(d <= radii[None, :], axis=1)))
  return inside / len(queries)


def precision_recall(real, fake, k=3, batch_size=1000):
  """Improved precision and recall (Kynkaanniemi et al. 2019).

  Each set's manifold is the union of balls around its vectors, with radius
  the distance to the k-th nearest neighbour in the same set. Precision: the
  fraction of fake vectors inside the real manifold; recall: the fraction of
  real vectors inside the fake manifold. Distances are computed in blocks of
  `batch_size` rows (float64), so memory is O(batch_size * N).

  Returns:
    (precision, recall), each in [0, 1].

  Raises:
    ValueError: a set with k or fewer vectors, or different dimensions.
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"expected [N, d] and [M, d] features, got {real.shape} and {fake.shape}")
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"precision/recall with k={k} needs more than {k} vectors per set, got "
                     f"{len(real)} real and {len(fake)} fake")
  real, fake = real[canonical_order(real)], fake[canonical_order(fake)]
  real_radii = _knn_radii(real, k, batch_size)
  fake_radii = _knn_radii(fake, k, batch_size)
  return (_coverage(real, real_radii, fake, batch_size),
          _coverage(fake, fake_radii, real, batch_size))
