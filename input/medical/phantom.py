"""A synthetic head phantom: smooth random anatomy, rendered as T1-weighted
and T2-weighted MR and as CT, deterministically from a seed (numpy only).

    subject = phantom.make_subject(seed=0, index=1)
    subject.images["T1w"]  # int16 [X, Y, Z], RAS+, voxel size subject.spacing

Each subject is a pure function of (seed, index): its anatomy (`Anatomy`) is
drawn first and is the same at every grid size; the grid, the scanner gain,
the bias fields and the noise come after. `input.medical.phantom_files`
writes subjects as NIfTI (BIDS names) or DICOM series; `pipeline.make_phantoms`
is the binary.

Anatomy (in mm, RAS+, the head centred near the origin): an ellipsoidal head
whose outline is deformed by a few low-frequency cosines of the direction,
then, inward along each ray, scalp, skull, a layer of CSF, and the brain:
grey matter over white matter with a cortex of smoothly varying thickness,
sulci of CSF, two lateral ventricles, two deep grey nuclei, and 1 to 4 small
lesions in the white matter (`LABELS`). A voxel that touches another tissue
averages 2x2x2 sub-voxels (partial volumes); the anatomy is the same at any
grid size.

Contrasts (`TISSUES` holds the values):
- T1w: white > grey > CSF (fat in the scalp bright, bone dark), lesions
  hypointense; T2w: CSF > grey > white, lesions hyperintense. Both in
  arbitrary units with a random scanner gain, times a smooth multiplicative
  bias field (a different one per contrast), with Rician noise (the
  magnitude of the signal plus complex Gaussian noise, so never negative),
  stored as int16.
- CT: Hounsfield units (air -1000, CSF ~8, white ~28, grey ~38, bone
  ~800-1500 as its density varies), Gaussian noise, stored as int16 HU and
  clipped to [-1024, 3071] as 12-bit scanners store them.

Where the MR contrasts differ while T1 does not (bone and CSF are both dark
in T1 but far apart in T2), no per-voxel intensity mapping can tell them
apart: a translation model has to use the context.
"""

import dataclasses

import numpy as np

CONTRASTS = ("T1w", "T2w", "CT")
FOV_MM = (224.0, 224.0, 192.0)  # The field of view (x, y, z) that every grid covers.
DEFAULT_SIZE = (64, 64, 48)  # 3.5 x 3.5 x 4 mm voxels.
LABELS = ("air", "scalp", "skull", "csf", "grey", "white", "lesion")
AIR, SCALP, SKULL, CSF, GREY, WHITE, LESION = range(len(LABELS))
CT_RANGE = (-1024, 3071)
_SUPERSAMPLE = 2
_MR_NOISE = 0.025  # Rician sigma over the gain (white matter T1 is ~0.65 of it).
_CT_NOISE_HU = 5.0
# Independent random streams of one subject.
_ANATOMY, _SCANNER = 0, 1


@dataclasses.dataclass(frozen=True)
class Tissue:
  """A tissue's signal: T1w and T2w in units of the scanner gain, CT in HU."""
  t1: float
  t2: float
  hu: float


TISSUES = {
    AIR: Tissue(0.0, 0.0, -1000.0),
    SCALP: Tissue(0.80, 0.50, -30.0),  # Skin and fat.
    SKULL: Tissue(0.10, 0.08, 1150.0),  # CT: plus a density field, +-300 HU.
    CSF: Tissue(0.15, 1.00, 8.0),
    GREY: Tissue(0.45, 0.60, 38.0),
    WHITE: Tissue(0.65, 0.42, 28.0),
    LESION: Tissue(0.32, 0.85, 18.0),
}


@dataclasses.dataclass(frozen=True)
class Field:
  """A smooth random scalar field: sum_i amp_i cos(k_i . p + phase_i)."""
  k: np.ndarray  # [n, 3] wave vectors (rad per mm, or per unit for directions).
  phase: np.ndarray  # [n]
  amp: np.ndarray  # [n]

  @classmethod
  def draw(cls, rng, n, wavelength, amplitude):
    """n random directions with wavelengths in `wavelength` (low, high),
    scaled so that the field's standard deviation is about `amplitude`."""
    k = rng.standard_normal((n, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= 2 * np.pi / rng.uniform(*wavelength, (n, 1))
    return cls(k, rng.uniform(0, 2 * np.pi, n), np.full(n, amplitude * np.sqrt(2.0 / n)))

  def __call__(self, p):
    # One term at a time, without BLAS: N x 3 products are too small to
    # gain from threads, and lose much to them on a busy machine.
    out = np.zeros(len(p))
    for (kx, ky, kz), phase, amp in zip(self.k, self.phase, self.amp):
      out += amp * np.cos(p[:, 0] * kx + p[:, 1] * ky + p[:, 2] * kz + phase)
    return out

  def bound(self):
    """The largest absolute value the field can take."""
    return float(np.sum(np.abs(self.amp)))


@dataclasses.dataclass(frozen=True)
class Blob:
  """An ellipsoid: a centre (mm), semi-axes (mm) and a rotation."""
  center: np.ndarray
  axes: np.ndarray
  rotation: np.ndarray

  @classmethod
  def draw(cls, rng, center, axes, max_angle_deg):
    return cls(np.asarray(center, float), np.asarray(axes, float),
               _rotation(rng, max_angle_deg))

  def contains(self, p):
    return np.sum((_matmul(p - self.center, self.rotation) / self.axes) ** 2, axis=-1) <= 1.0


@dataclasses.dataclass(frozen=True)
class Anatomy:
  """One subject's anatomy, independent of any grid (`draw_anatomy`)."""
  center: np.ndarray  # mm
  axes: np.ndarray  # semi-axes of the head, mm
  rotation: np.ndarray  # head -> world
  outline: Field  # of the direction: relative deformation of the head's radius
  scalp: Field  # of the direction: thickness, mm
  skull: Field
  csf: Field
  cortex: Field  # of the position: cortical thickness and fold depth, mm
  sulci: Field  # of the position: the folds lie along its zero set
  ventricles: tuple  # of Blob
  nuclei: tuple  # of Blob
  lesions: tuple  # of Blob
  texture: Field  # of the position: relative signal variation in soft tissue
  bone: Field  # of the position: bone density, HU


_CORTEX_MM = 6.0  # Mean cortical thickness (a phantom at 3.5 mm voxels: thicker than life).
_SULCUS_DEPTH_MM = 12.0  # Mean depth of the folds below the brain's surface.
# Where |sulci field| (std ~1) is below these: CSF in the fold, grey matter around it.
_SULCUS_CSF, _SULCUS_GREY = 0.12, 0.6


def _matmul(x, m):
  """x [N, K] @ m [K, M] without BLAS, for small K (see `Field.__call__`)."""
  return sum(x[:, j:j + 1] * m[j] for j in range(m.shape[0]))


def _rotation(rng, max_angle_deg):
  """A random rotation by up to `max_angle_deg` about each axis."""
  a, b, c = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg, 3))
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
  rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
  return rz @ ry @ rx


def subject_rng(seed, index, stream):
  """The random stream `stream` of subject `index` (a pure function of all three)."""
  return np.random.default_rng([int(seed), int(index), int(stream)])


def draw_anatomy(seed, index):
  """The `Anatomy` of subject `index` under `seed`."""
  rng = subject_rng(seed, index, _ANATOMY)
  center = np.array([0.0, 0.0, -12.0]) + rng.normal(0, [2.0, 3.0, 3.0])
  axes = np.array([72.0, 92.0, 88.0]) * rng.uniform(0.94, 1.06, 3)
  anatomy = dict(
      center=center, axes=axes, rotation=_rotation(rng, 5.0),
      outline=Field.draw(rng, 6, (1.0, 3.0), 0.035),
      scalp=Field.draw(rng, 4, (1.0, 3.0), 1.0),
      skull=Field.draw(rng, 4, (1.0, 3.0), 1.5),
      csf=Field.draw(rng, 4, (1.0, 3.0), 0.7),
      cortex=Field.draw(rng, 6, (25.0, 50.0), 1.2),
      sulci=Field.draw(rng, 8, (30.0, 45.0), 1.0),
      texture=Field.draw(rng, 8, (15.0, 60.0), 0.03),
      bone=Field.draw(rng, 6, (30.0, 80.0), 200.0),
  )
  # Lateral ventricles (left and right), tilted slightly toward each other.
  vent_center = center + rng.normal([0.0, 6.0, 18.0], 2.0)
  gap = rng.uniform(5.0, 8.0)
  vaxes = rng.uniform([4.0, 22.0, 7.0], [7.0, 28.0, 10.0])
  anatomy["ventricles"] = tuple(
      Blob.draw(rng, vent_center + [side * gap, 0.0, 0.0], vaxes * rng.uniform(0.9, 1.1, 3),
                8.0) for side in (-1, 1))
  nuc_center = center + rng.normal([0.0, -4.0, 4.0], 2.0)
  anatomy["nuclei"] = tuple(
      Blob.draw(rng, nuc_center + [side * rng.uniform(16.0, 20.0), 0.0, 0.0],
                rng.uniform([7.0, 11.0, 8.0], [10.0, 15.0, 11.0]), 10.0) for side in (-1, 1))
  partial = Anatomy(lesions=(), **anatomy)
  # Lesions: centred in white matter, found by rejection over random points.
  lesions, tries = [], 0
  n_lesions = int(rng.integers(1, 5))
  while len(lesions) < n_lesions and tries < 1000:
    tries += 1
    c = center + rng.uniform(-0.6, 0.6, 3) * axes
    if labels_at(partial, c[None])[0] == WHITE:
      lesions.append(Blob.draw(rng, c, rng.uniform(2.5, 7.0, 3), 90.0))
  return dataclasses.replace(partial, lesions=tuple(lesions))


def labels_at(anatomy, points):
  """The tissue label (`LABELS`) at each point.

  Args:
    anatomy: an `Anatomy`.
    points: [N, 3] positions in mm (RAS+).

  Returns:
    uint8 [N].
  """
  a = anatomy
  out = np.full(len(points), AIR, np.uint8)
  u = _matmul(points - a.center, a.rotation) / a.axes  # Unit-sphere coordinates of the head.
  rho = np.linalg.norm(u, axis=-1)
  # The fields are evaluated only where they can matter (most points are air).
  head = np.flatnonzero(rho < 1.0 + a.outline.bound())
  u, rho, p = u[head], rho[head], points[head]
  d = u / np.maximum(rho, 1e-9)[:, None]
  # Depth below the skin along the ray from the centre, in mm.
  depth = (1.0 + a.outline(d) - rho) * np.linalg.norm(d * a.axes, axis=-1)
  t_scalp = 6.0 + a.scalp(d)
  t_skull = 7.5 + a.skull(d)
  t_csf = 3.0 + a.csf(d)
  labels = np.full(len(head), AIR, np.uint8)
  labels[depth >= 0] = SCALP
  labels[depth >= t_scalp] = SKULL
  labels[depth >= t_scalp + t_skull] = CSF
  brain = depth - (t_scalp + t_skull + t_csf)  # Depth below the brain's surface.
  inside = np.flatnonzero(brain >= 0)
  labels[inside] = _brain_labels(a, p[inside], brain[inside])
  out[head] = labels
  return out


def _brain_labels(a, p, depth):
  """Labels of points inside the brain, `depth` mm below its surface: a
  cortex of varying thickness, folded along the zero set of the sulci field
  (CSF in the fold, grey matter around it), deep grey nuclei, ventricles
  and lesions."""
  out = np.full(len(p), WHITE, np.uint8)
  out[depth < np.clip(_CORTEX_MM + a.cortex(p), 3.0, 9.0)] = GREY
  shallow = np.flatnonzero(depth < _SULCUS_DEPTH_MM + 5.0)
  fold = np.abs(a.sulci(p[shallow]))
  sulcus_depth = _SULCUS_DEPTH_MM + 5.0 * a.cortex(p[shallow]) / a.cortex.bound()
  within = depth[shallow] < sulcus_depth
  out[shallow[within & (fold < _SULCUS_GREY)]] = GREY
  out[shallow[within & (fold < _SULCUS_CSF)]] = CSF
  for blob in a.nuclei:
    out[(out == WHITE) & blob.contains(p)] = GREY
  for blob in a.ventricles:
    out[blob.contains(p)] = CSF
  for blob in a.lesions:
    out[((out == WHITE) | (out == GREY)) & blob.contains(p)] = LESION
  return out


def grid(size=DEFAULT_SIZE, fov_mm=FOV_MM):
  """(spacing (3,), affine 4x4) of a RAS+ grid of `size` voxels over the field
  of view, centred on the origin."""
  size = tuple(int(n) for n in size)
  if len(size) != 3 or min(size) < 2:
    raise ValueError(f"a phantom grid is 3 sizes of at least 2 voxels (X,Y,Z), got {size}")
  spacing = np.asarray(fov_mm, float) / size
  affine = np.diag([*spacing, 1.0])
  affine[:3, 3] = -(np.asarray(size) - 1) / 2.0 * spacing
  return spacing, affine


@dataclasses.dataclass(frozen=True)
class Subject:
  """One rendered subject.

  Attributes:
    index: 1-based subject number.
    labels: uint8 [X, Y, Z], the tissue at each voxel centre.
    images: {contrast: int16 [X, Y, Z]} for each of `CONTRASTS`.
    affine: 4x4, voxel -> RAS+ mm.
    spacing: voxel size in mm.
    anatomy: the `Anatomy` it was rendered from.
  """
  index: int
  labels: np.ndarray
  images: dict
  affine: np.ndarray
  spacing: np.ndarray
  anatomy: Anatomy


def _points(affine, ijk):
  """Voxel indices [N, 3] -> mm [N, 3]."""
  return _matmul(ijk, affine[:3, :3].T) + affine[:3, 3]


def _voxel_centres(affine, size):
  ijk = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), -1)
  return _points(affine, ijk.reshape(-1, 3).astype(float))


def _edges(labels):
  """Voxels of a label volume that touch another label among their 26
  neighbours (the only ones where sub-voxels can differ)."""
  padded = np.pad(labels, 1, mode="edge")
  out = np.zeros(labels.shape, bool)
  nx, ny, nz = labels.shape
  for dx in range(3):
    for dy in range(3):
      for dz in range(3):
        out |= padded[dx:dx + nx, dy:dy + ny, dz:dz + nz] != labels
  return out


def _edge_fractions(anatomy, affine, labels):
  """Yields (voxels, fractions [n, len(LABELS)]): the flat indices of the
  voxels that touch another tissue, a chunk at a time (bounding memory),
  and the fraction of each in each tissue over 2x2x2 sub-voxels."""
  s = _SUPERSAMPLE
  edge = np.flatnonzero(_edges(labels).reshape(-1))
  offsets = (np.arange(s) + 0.5) / s - 0.5
  sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
  chunk = max(1, 250_000 // len(sub))
  for start in range(0, len(edge), chunk):
    voxels = edge[start:start + chunk]
    ijk = np.stack(np.unravel_index(voxels, labels.shape), -1).astype(float)
    fine = labels_at(anatomy, _points(affine, (ijk[:, None, :] + sub).reshape(-1, 3)))
    counts = np.zeros((len(voxels), len(LABELS)))
    np.add.at(counts, (np.repeat(np.arange(len(voxels)), len(sub)), fine), 1.0)
    yield voxels, counts / len(sub)


def _clean(anatomy, affine, labels, tissue_values):
  """Noise-free signals {contrast: float64 [X, Y, Z]} with partial volumes:
  each voxel's tissue values averaged over its sub-voxels where it touches
  another tissue, its centre's elsewhere.

  The texture and the bone density vary over centimetres: they are taken
  at each voxel's centre, where a tissue holds them.
  """
  flat = labels.reshape(-1)
  out = {c: tissue_values[c][flat] for c in CONTRASTS}
  skull, soft = (flat == SKULL).astype(float), (flat > SKULL).astype(float)
  for voxels, frac in _edge_fractions(anatomy, affine, labels):
    for c in CONTRASTS:
      out[c][voxels] = _matmul(frac, tissue_values[c][:, None])[:, 0]
    skull[voxels] = frac[:, SKULL]
    soft[voxels] = frac[:, SKULL + 1:].sum(axis=1)
  centres = _voxel_centres(affine, labels.shape)
  has_soft, has_bone = np.flatnonzero(soft), np.flatnonzero(skull)
  texture, density = np.zeros(flat.size), np.zeros(flat.size)
  texture[has_soft] = anatomy.texture(centres[has_soft])
  density[has_bone] = anatomy.bone(centres[has_bone])
  for c in ("T1w", "T2w"):
    out[c] *= 1.0 + texture
  out["CT"] += skull * density + soft * 100.0 * texture  # Texture: ~3 HU in soft tissue.
  return {c: v.reshape(labels.shape) for c, v in out.items()}


def _bias_field(rng, affine, size):
  """A smooth multiplicative field, exp of a random quadratic in mm / 100
  (about +-15% over a head), as a receive coil's sensitivity."""
  x, y, z = np.moveaxis(_voxel_centres(affine, size) / 100.0, -1, 0)
  terms = np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z])
  coef = rng.normal(0.0, [0.10, 0.10, 0.10, 0.06, 0.06, 0.06, 0.05, 0.05, 0.05])
  return np.exp(coef @ terms).reshape(size)


def rician(rng, signal, sigma):
  """The magnitude of `signal` plus complex Gaussian noise of std `sigma`
  per channel (never negative)."""
  return np.hypot(signal + rng.normal(0.0, sigma, signal.shape),
                  rng.normal(0.0, sigma, signal.shape))


def make_subject(seed, index, size=DEFAULT_SIZE):
  """Renders subject `index` (1-based) under `seed` on a grid of `size` voxels.

  The same (seed, index, size) gives byte-identical arrays.

  Raises:
    ValueError: a bad size (`grid`) or index.
  """
  if int(index) < 1:
    raise ValueError(f"subjects are numbered from 1, got {index}")
  size = tuple(int(n) for n in size)
  spacing, affine = grid(size)
  anatomy = draw_anatomy(seed, index)
  rng = subject_rng(seed, index, _SCANNER)
  n = len(LABELS)
  # Tissue values vary a little between subjects (and between scans).
  jitter = {c: rng.uniform(0.95, 1.05, n) for c in ("T1w", "T2w")}
  values = {"T1w": np.array([TISSUES[t].t1 for t in range(n)]) * jitter["T1w"],
            "T2w": np.array([TISSUES[t].t2 for t in range(n)]) * jitter["T2w"],
            "CT": np.array([TISSUES[t].hu for t in range(n)]) + np.where(
                np.arange(n) > SKULL, rng.normal(0.0, 1.5, n), 0.0)}
  labels = labels_at(anatomy, _voxel_centres(affine, size)).reshape(size)
  clean = _clean(anatomy, affine, labels, values)
  images = {}
  for c in ("T1w", "T2w"):
    gain = rng.uniform(1500.0, 2500.0)  # Arbitrary units differ between scans.
    signal = clean[c] * _bias_field(rng, affine, size) * gain
    mr = rician(rng, signal, _MR_NOISE * gain)
    images[c] = np.minimum(np.round(mr), np.iinfo(np.int16).max).astype(np.int16)
  ct = clean["CT"] + rng.normal(0.0, _CT_NOISE_HU, size)
  images["CT"] = np.clip(np.round(ct), *CT_RANGE).astype(np.int16)
  return Subject(int(index), labels, images, affine, spacing, anatomy)
