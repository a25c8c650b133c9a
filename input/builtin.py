"""Built-in datasets, generated deterministically so training needs no download.

Every example is a pure function of (name, seed, split, index, image size), so
any process can generate any example and conversions are reproducible bit for
bit. They go through the same converter as user data (`builtin:NAME` sources)
and are cached by `input.cache.ensure_builtin`.

| name              | kind     | what                                              |
|-------------------|----------|---------------------------------------------------|
| `shapes`          | image    | filled circle / square / triangle, label = shape  |
| `ring2d`          | vector   | 8 Gaussians on a circle of radius 2, std 0.02     |
| `grid2d`          | vector   | 25 Gaussians on a 5x5 grid {-4..4}^2, std 0.05    |
| `shapes_paired`   | paired   | A = outline, B = the same shape filled            |
| `shapes_unpaired` | unpaired | A = filled on black, B = outline on light ground  |

The 2-D mixtures follow the VEEGAN / PacGAN protocol (Srivastava et al. 2017;
Lin et al. 2018), also used by WGAN-GP's toy experiments; their mode centres and
standard deviation are recorded in the manifest for mode-coverage metrics.
"""

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPE_NAMES = ("circle", "square", "triangle")
_SUPERSAMPLE = 4


@dataclasses.dataclass(frozen=True)
class BuiltinInfo:
  """Static description of a built-in dataset."""
  name: str
  kind: str  # image | vector | paired | unpaired
  splits: tuple  # ((split_name, num_examples), ...)
  label_names: tuple
  default_image_size: int = 32
  extra: tuple = ()  # ((key, value), ...) recorded in the manifest


def _ring_centers():
  angles = 2 * np.pi * np.arange(8) / 8
  return np.stack([2.0 * np.cos(angles), 2.0 * np.sin(angles)], axis=1)


def _grid_centers():
  v = np.arange(-4.0, 5.0, 2.0)
  return np.array([(x, y) for x in v for y in v])


_DATASETS = {
    "shapes": BuiltinInfo("shapes", "image", (("train", 20000), ("test", 2000)),
                          SHAPE_NAMES),
    "ring2d": BuiltinInfo("ring2d", "vector", (("train", 100000), ("test", 10000)),
                          tuple(f"mode{i}" for i in range(8)),
                          extra=(("centers", _ring_centers().tolist()), ("std", 0.02))),
    "grid2d": BuiltinInfo("grid2d", "vector", (("train", 100000), ("test", 10000)),
                          tuple(f"mode{i}" for i in range(25)),
                          extra=(("centers", _grid_centers().tolist()), ("std", 0.05))),
    "shapes_paired": BuiltinInfo("shapes_paired", "paired",
                                 (("train", 10000), ("test", 1000)), SHAPE_NAMES),
    "shapes_unpaired": BuiltinInfo("shapes_unpaired", "unpaired",
                                   (("trainA", 10000), ("trainB", 10000),
                                    ("testA", 1000), ("testB", 1000)), SHAPE_NAMES),
}


def names():
  return sorted(_DATASETS)


def info(name):
  """Returns the `BuiltinInfo` of `name`.

  Raises:
    ValueError: unknown name; the message lists the valid ones.
  """
  if name not in _DATASETS:
    raise ValueError(f"unknown builtin dataset {name!r}; valid: {', '.join(names())}")
  return _DATASETS[name]


def _rng(name, seed, split, index):
  # Split names hashed stably (not Python's salted hash()).
  split_id = int.from_bytes(split.encode()[:8].ljust(8, b"\0"), "little")
  name_id = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")
  return np.random.default_rng([seed, name_id, split_id, index])


def _shape_params(rng, size):
  """Random geometry and colour for one shape, in supersampled pixels."""
  big = size * _SUPERSAMPLE
  label = int(rng.integers(3))
  radius = rng.uniform(0.18, 0.38) * big
  margin = radius * 1.05
  cx = rng.uniform(margin, big - margin)
  cy = rng.uniform(margin, big - margin)
  angle = rng.uniform(0, 2 * np.pi)
  # Saturated, bright colours so the shape stands out from either background.
  hue = rng.uniform(0, 1)
  color = tuple(int(255 * c) for c in _hsv_to_rgb(hue, rng.uniform(0.6, 1.0),
                                                   rng.uniform(0.7, 1.0)))
  return label, (cx, cy, radius, angle), color


def _hsv_to_rgb(h, s, v):
  i = int(h * 6) % 6
  f = h * 6 - int(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _polygon(label, geom):
  cx, cy, r, angle = geom
  if label == 1:  # square: circumradius r
    k = 4
  else:  # triangle
    k = 3
  return [(cx + r * math.cos(angle + 2 * math.pi * j / k),
           cy + r * math.sin(angle + 2 * math.pi * j / k)) for j in range(k)]


def _draw(size, label, geom, color, filled, background, line_frac=0.09):
  big = size * _SUPERSAMPLE
  im = Image.new("RGB", (big, big), background)
  draw = ImageDraw.Draw(im)
  cx, cy, r, _ = geom
  width = max(1, int(round(line_frac * big)))
  if label == 0:
    box = (cx - r, cy - r, cx + r, cy + r)
    if filled:
      draw.ellipse(box, fill=color)
    else:
      draw.ellipse(box, outline=color, width=width)
  else:
    pts = _polygon(label, geom)
    if filled:
      draw.polygon(pts, fill=color)
    else:
      draw.line(pts + [pts[0]], fill=color, width=width, joint="curve")
  return np.asarray(im.resize((size, size), Image.Resampling.BOX))


def generate(name, split, index, seed=0, image_size=None):
  """Generates example `index` of `split`.

  Returns:
    (arrays, label): arrays is {"image": uint8 [S,S,3]} for `shapes` and each
    unpaired domain, {"image_a", "image_b"} for `shapes_paired`, or
    {"vector": float32 [2]} for the 2-D mixtures; label is an int.
  """
  ds = info(name)
  size = image_size or ds.default_image_size
  rng = _rng(name, seed, split, index)
  if ds.kind == "vector":
    centers = np.asarray(dict(ds.extra)["centers"])
    std = dict(ds.extra)["std"]
    mode = int(rng.integers(len(centers)))
    x = centers[mode] + std * rng.standard_normal(2)
    return {"vector": x.astype(np.float32)}, mode
  label, geom, color = _shape_params(rng, size)
  if name == "shapes":
    return {"image": _draw(size, label, geom, color, True, (0, 0, 0))}, label
  if name == "shapes_paired":
    return {"image_a": _draw(size, label, geom, color, False, (0, 0, 0)),
            "image_b": _draw(size, label, geom, color, True, (0, 0, 0))}, label
  if name == "shapes_unpaired":
    if split.endswith("A"):
      return {"image": _draw(size, label, geom, color, True, (0, 0, 0))}, label
    return {"image": _draw(size, label, geom, color, False, (235, 230, 215))}, label
  raise AssertionError(name)
