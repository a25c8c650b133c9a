"""Where a DICOM series lies in the patient: one affine from its slices'
Image Plane attributes, or the reason it cannot have one.

DICOM places pixel (column c, row r) of a slice at

    ImagePositionPatient + c * PixelSpacing[1] * IOP[0:3]
                         + r * PixelSpacing[0] * IOP[3:6]

in LPS+ millimetres (x to the patient's left, y posterior, z superior):
IOP[0:3] (ImageOrientationPatient) is the direction along a row, in which
the column index grows, and IOP[3:6] the direction down a column. A series
stacks such slices; its third axis is the step from the first slice's
position to the last one's over N - 1 slices (not SliceThickness, which may
overlap or leave gaps). NIfTI is RAS+, so the affine is flipped by
diag(-1, -1, 1, 1). These are nibabel's conventions ("Defining the DICOM
orientation", https://nipy.org/nibabel/dicom/dicom_orientation.html), except
that the affine here indexes (column, row, slice) where nibabel's indexes
(row, column, slice).

One affine cannot hold a series whose slices differ in orientation or pixel
spacing, whose positions are not evenly spaced (a missing slice, a mix of
stacks), or whose slices step sideways (gantry tilt): `affine` refuses them
with a one-line `GeometryError` rather than write a volume that would not
overlay its scan.
"""

import dataclasses

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Slice positions may stray from an even, straight stack by this fraction of
# the slice spacing (DICOM writes positions as decimal strings, rounded).
SPACING_TOLERANCE = 0.01
# Direction cosines may differ between slices by this much.
ORIENTATION_TOLERANCE = 1e-4
# ... and stray from unit length and orthogonality by this much (cosines
# written with 4 decimals are fine), as may PixelSpacing between slices,
# relative to itself.
ROUNDING_TOLERANCE = 1e-3


class GeometryError(ValueError):
  """A series that cannot be given one affine; the message says why."""


@dataclasses.dataclass(frozen=True)
class Plane:
  """One slice's Image Plane attributes, None where the header lacks them.

  Attributes:
    orientation: ImageOrientationPatient, 6 direction cosines (LPS).
    position: ImagePositionPatient, the centre of the first pixel (LPS, mm).
    spacing: PixelSpacing, (between rows, between columns) in mm.
    thickness: SpacingBetweenSlices, else SliceThickness: the slice step of a
      series of one slice only.
  """
  orientation: tuple | None
  position: tuple | None
  spacing: tuple | None
  thickness: float | None = None


def has_geometry(planes):
  """Whether any slice carries an orientation or a position."""
  return any(p.orientation is not None or p.position is not None for p in planes)


def _check_orientation(iop):
  row, col = iop[:3], iop[3:]
  off = max(abs(np.linalg.norm(row) - 1.0), abs(np.linalg.norm(col) - 1.0),
            abs(float(np.dot(row, col))))
  if off > ROUNDING_TOLERANCE:
    raise GeometryError(f"ImageOrientationPatient {list(iop)} is not two orthogonal unit "
                        "vectors")


def affine(planes):
  """The affine of a series from its slices' planes, in the series' order.

  Args:
    planes: one `Plane` per slice, ordered as the slices are stored.

  Returns:
    float64 [4, 4] mapping (column, row, slice) indices of the stored slices
    to RAS+ millimetres.

  Raises:
    GeometryError: a slice lacks its orientation, position or pixel spacing;
      the slices differ in orientation or pixel spacing; two slices share a
      position; the spacing between slices is not even; or the slices step
      sideways (gantry tilt).
  """
  if not planes:
    raise GeometryError("no slices")
  for name in ("orientation", "position", "spacing"):
    lacking = sum(getattr(p, name) is None for p in planes)
    if lacking:
      attribute = {"orientation": "ImageOrientationPatient",
                   "position": "ImagePositionPatient", "spacing": "PixelSpacing"}[name]
      raise GeometryError(f"{lacking} of {len(planes)} slices lack {attribute}")
  iops = np.array([p.orientation for p in planes], np.float64)
  if np.max(np.abs(iops - iops[0])) > ORIENTATION_TOLERANCE:
    distinct = len({tuple(np.round(i, 4)) for i in iops})
    raise GeometryError(f"its slices have {distinct} different ImageOrientationPatient "
                        "values (one affine needs one orientation)")
  spacings = np.array([p.spacing for p in planes], np.float64)
  if np.max(np.abs(spacings - spacings[0])) > ROUNDING_TOLERANCE * np.max(spacings[0]):
    raise GeometryError(f"its slices differ in PixelSpacing ({spacings.min(axis=0).tolist()} "
                        f"to {spacings.max(axis=0).tolist()} mm)")
  iop = iops[0]
  _check_orientation(iop)
  row_dir, col_dir = iop[:3], iop[3:]
  normal = np.cross(row_dir, col_dir)
  positions = np.array([p.position for p in planes], np.float64)
  n = len(planes)
  if n == 1:
    step = normal * (planes[0].thickness or 1.0)  # nibabel's voxel_sizes rule.
  else:
    step = (positions[-1] - positions[0]) / (n - 1)
    along = positions @ normal
    gaps = np.diff(along)
    spacing = float(np.linalg.norm(step))
    if np.min(np.diff(np.sort(along))) < 1e-6 * max(spacing, 1.0):
      raise GeometryError("two of its slices share one ImagePositionPatient (several stacks "
                          "or time points in one series?)")
    if np.max(np.abs(gaps - gaps.mean())) > SPACING_TOLERANCE * abs(gaps.mean()):
      raise GeometryError(f"its slices are not evenly spaced: {np.min(np.abs(gaps)):.4g} to "
                          f"{np.max(np.abs(gaps)):.4g} mm apart along the slice normal "
                          "(missing slices?)")
    sideways = step - (step @ normal) * normal
    if np.linalg.norm(sideways) > SPACING_TOLERANCE * spacing:
      tilt = np.degrees(np.arctan2(np.linalg.norm(sideways), abs(step @ normal)))
      raise GeometryError(f"its slices step {tilt:.2f} degrees off the slice normal (gantry "
                          "tilt?); one affine would shear them")
    expected = positions[0] + np.arange(n)[:, None] * step
    stray = float(np.max(np.linalg.norm(positions - expected, axis=1)))
    if stray > SPACING_TOLERANCE * spacing:
      raise GeometryError(f"a slice lies {stray:.4g} mm off the straight, even stack from the "
                          "first slice to the last")
  row_spacing, col_spacing = spacings[0]
  lps = np.eye(4)
  lps[:3, 0] = row_dir * col_spacing  # Column index c: along a row.
  lps[:3, 1] = col_dir * row_spacing  # Row index r: down a column.
  lps[:3, 2] = step
  lps[:3, 3] = positions[0]
  return LPS_TO_RAS @ lps
