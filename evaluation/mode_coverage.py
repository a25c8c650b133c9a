"""Mode coverage of 2-D mixture samples (the VEEGAN / PacGAN protocol).

Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN) evaluate GANs on
`ring2d` (8 modes) and `grid2d` (25 modes) with 2,500 samples:
- a sample is *high quality* when it lies within 3 standard deviations of its
  nearest mode centre;
- a mode is *covered* when enough high-quality samples fall on it. We count a
  mode only with at least `min_count` of them (default 20, a fifth of the 100
  an exact generator would put on each of 25 modes), which is stricter than
  counting a single sample.
"""

import numpy as np


def mode_stats(samples, centers, std, min_count=20):
  """Returns {"modes": covered modes, "high_quality": fraction, "per_mode": counts}.

  Args:
    samples: [N, 2] generated points.
    centers: [K, 2] mode centres.
    std: the modes' standard deviation.
    min_count: high-quality samples a mode needs to count as covered.
  """
  samples = np.asarray(samples, np.float64)
  centers = np.asarray(centers, np.float64)
  d = np.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=-1)  # [N, K]
  nearest = np.argmin(d, axis=1)
  good = d[np.arange(len(samples)), nearest] <= 3.0 * std
  per_mode = np.bincount(nearest[good], minlength=len(centers))
  return {"modes": int(np.sum(per_mode >= min_count)),
          "high_quality": float(np.mean(good)) if len(samples) else 0.0,
          "per_mode": per_mode.tolist()}
