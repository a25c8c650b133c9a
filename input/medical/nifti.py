"""Reading and writing NIfTI volumes with nibabel (the `[medical]` extra);
`READER` is the `volume.Reader` of `nifti:` sources.

Every volume is first reoriented to the closest canonical orientation (RAS+:
x to the patient's right, y anterior, z superior), then cut into 2-D slices
along one axis:

| axis     | slices along | slice rows (top to bottom) | slice columns |
|----------|--------------|----------------------------|---------------|
| axial    | z            | anterior to posterior      | x (L to R)    |
| coronal  | y            | superior to inferior       | x (L to R)    |
| sagittal | x            | superior to inferior       | y (P to A)    |

(the neurological convention: the patient's left on the image's left).
`volume_to_slices` and `slices_to_volume` are exact inverses, so a volume
translated slice by slice is written back with the input's shape, affine and
header (`write_like`).
"""

import collections
import os
from typing import NamedTuple

import numpy as np

from input import images
from input.medical import identity
from input.medical import volume as base
from input.source_base import SourceError

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


class SliceRef(NamedTuple):
  """One 2-D slice of a file: the 3-D volume of a 4-D file (None: a 3-D
  file), the axis it is cut along and the slice's index on that axis."""
  path: str
  volume: int | None
  axis: str
  index: int


def _nib():
  return base.require("nibabel", "nifti:")


is_nifti = identity.is_nifti


def stem(path):
  """A NIfTI file's name without its extensions (.nii, .nii.gz, ...)."""
  return identity.strip_extensions(os.path.basename(path))


def list_files(path):
  """(root, [relative paths]) of the NIfTI files that `path` names: one file,
  or every .nii/.nii.gz under a folder, recursively."""
  if os.path.isfile(path):
    return os.path.dirname(os.path.abspath(path)), [os.path.basename(path)]
  return path, [f for f in base.walk_files(path) if is_nifti(f)]


def canonical_shape(header_shape, affine):
  """The shape after reorientation to RAS+ (a permutation of the first 3 axes)."""
  nib = _nib()
  ornt = nib.orientations.io_orientation(affine)
  out = [0, 0, 0]
  for src in range(3):
    out[int(ornt[src, 0])] = header_shape[src]
  return tuple(out) + tuple(header_shape[3:])


def volume_to_slices(volume, axis):
  """A canonical [X, Y, Z] array -> [S, rows, cols] slices (see the table)."""
  a = AXES[axis]
  moved = np.moveaxis(volume, a, 0)  # [S, u, v] with u < v the remaining axes.
  return np.flip(np.swapaxes(moved, 1, 2), axis=1)


def slices_to_volume(slices, axis):
  """The inverse of `volume_to_slices`."""
  a = AXES[axis]
  moved = np.swapaxes(np.flip(slices, axis=1), 1, 2)
  return np.moveaxis(moved, 0, a)


def plane_spacing(zooms, axis):
  """(row spacing, column spacing) in mm of the slices along `axis` of a
  volume whose canonical (RAS+) voxel size is `zooms` (see the table)."""
  u, v = (i for i in range(3) if i != AXES[axis])
  return float(zooms[v]), float(zooms[u])


def dhw_spacing(img, axis):
  """The voxel size (D, H, W) in mm of a loaded image's volume cut along
  `axis`: D between its slices, H between rows, W between columns (as
  `volume_to_slices` orders them)."""
  zooms = canonical_shape(img.header.get_zooms()[:3], img.affine)
  return (float(zooms[AXES[axis]]),) + plane_spacing(zooms, axis)


def scan(path, axis, volume_index, patient_from=None):
  """The volumes of a NIfTI file or folder, read from headers only.

  A volume's patient is its BIDS subject, or what `patient_from` says
  (`input.medical.identity`); its study is the subject and session; paired volumes
  match by their BIDS entities without the suffix (`sub-01_ses-2`), or by
  their relative name without extensions when the name is not BIDS.

  Args:
    path: a NIfTI file or a folder of them (recursive).
    axis: `axial`, `coronal` or `sagittal`.
    volume_index: for 4-D files, an int or "all".
    patient_from: `--patient_from` (`folder:N` or `file`), or None.

  Returns:
    A `base.Scan`: volumes sorted by id, and the files that cannot be used.
  """
  nib = _nib()
  root, files = list_files(path)
  volumes, skipped = [], []
  for rel in files:
    full = os.path.join(root, rel)
    try:
      img = nib.load(full)
      shape = canonical_shape(img.shape, img.affine)
    except Exception as e:  # pylint: disable=broad-except
      skipped.append({"key": rel, "reason": f"unreadable NIfTI: {images.first_line(e)}"})
      continue
    if len(shape) < 3:
      skipped.append({"key": rel, "reason": f"not a 3-D volume (shape {shape})"})
      continue
    frames = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if len(shape) > 4:
      skipped.append({"key": rel, "reason": f"{len(shape)}-D volumes are not supported"})
      continue
    if volume_index == "all":
      ts = list(range(frames)) if len(shape) == 4 else [None]
    elif len(shape) == 4:
      if not 0 <= int(volume_index) < frames:
        skipped.append({"key": rel, "reason": f"--volume_index={volume_index} but the file "
                                              f"holds {frames} volumes"})
        continue
      ts = [int(volume_index)]
    else:
      ts = [None]
    a = AXES[axis]
    plane = [shape[i] for i in range(3) if i != a]  # (u, v) -> rows v, cols u.
    name = identity.strip_extensions(rel.replace(os.sep, "/"))
    patient, how = identity.path_patient(rel, patient_from)
    entities = identity.bids_entities(rel)
    study = (f"{patient}_ses-{entities['ses']}" if patient and "ses" in entities
             else patient)
    match = identity.bids_match_key(rel) or name
    for t in ts:
      volumes.append(base.Volume(
          id=name if t is None else f"{name}@{t}",
          match=match if t is None else f"{match}@{t}",
          patient=patient,
          study=study,
          identified_by=how,
          modality="",
          shape=(plane[1], plane[0]),
          refs=tuple(SliceRef(full, t, axis, k) for k in range(shape[a])),
          # The manifest writes -1 for a 3-D file, as it always has.
          info={"file": rel, "volume_index": -1 if t is None else t, "axis": axis,
                # Canonical, as the shape: permuted as the axes are.
                "zooms": [float(z) for z in
                          canonical_shape(img.header.get_zooms()[:3], img.affine)]},
      ))
  volumes.sort(key=lambda v: v.id)
  return base.Scan(volumes, skipped)


class _VolumeCache:
  """The last few canonical volumes read in this process (slices of one
  volume are usually read together)."""

  def __init__(self, size=3):
    self.size = size
    self.entries = collections.OrderedDict()

  def get(self, path, t):
    key = (path, t)
    if key in self.entries:
      self.entries.move_to_end(key)
      return self.entries[key]
    nib = _nib()
    try:
      img = nib.as_closest_canonical(nib.load(path))
      data = img.dataobj[..., t] if t is not None else img.dataobj[...]
      data = np.asarray(data, np.float32)  # Applies scl_slope / scl_inter.
    except Exception as e:  # pylint: disable=broad-except
      raise images.BadImageError(f"unreadable NIfTI data: {images.first_line(e)}") from None
    if data.ndim != 3:
      raise images.BadImageError(f"NIfTI volume has shape {data.shape}, expected 3-D")
    self.entries[key] = data
    while len(self.entries) > self.size:
      self.entries.popitem(last=False)
    return data


_CACHE = _VolumeCache()


def volume_values(volume):
  """All values of a `base.Volume` (for percentile windows)."""
  ref = volume.refs[0]
  return _CACHE.get(ref.path, ref.volume)


def slice_values(ref):
  """One slice [rows, cols] of a `SliceRef` made by `scan`, float32."""
  data = _CACHE.get(ref.path, ref.volume)
  plane = np.take(data, ref.index, axis=AXES[ref.axis])  # [u, v]
  return np.ascontiguousarray(np.flipud(plane.T))



def read_slices(path, axis, volume_index=None):
  """Every slice of a file, for translation.

  Returns:
    (slices [T, S, rows, cols] float32 with T the 3-D volumes (1 for 3-D
    files), the loaded nibabel image).
  """
  nib = _nib()
  img = nib.load(path)
  canon = nib.as_closest_canonical(img)
  data = np.asarray(canon.dataobj, np.float32)
  if data.ndim == 3:
    data = data[..., None]
  if data.ndim != 4:
    raise images.BadImageError(f"NIfTI volume of shape {data.shape} is not 3-D or 4-D")
  ts = range(data.shape[3]) if volume_index in (None, "all") else [int(volume_index)]
  return np.stack([volume_to_slices(data[..., t], axis) for t in ts]), img


def write_like(reference, slices, axis, out_path):
  """Writes translated `slices` [T, S, rows, cols] as a NIfTI with the
  reference image's shape, affine and header (data type float32)."""
  nib = _nib()
  vols = np.stack([slices_to_volume(s, axis) for s in slices], axis=-1)  # RAS+ [X,Y,Z,T]
  ornt = nib.orientations.io_orientation(reference.affine)
  back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
  data = nib.orientations.apply_orientation(vols, back)
  if len(reference.shape) == 3:
    data = data[..., 0]
  header = reference.header.copy()
  header.set_data_dtype(np.float32)
  out = nib.Nifti1Image(data.astype(np.float32), reference.affine, header)
  out.header.set_slope_inter(1.0, 0.0)
  nib.save(out, out_path)


def stack_to_slice_index(rows):
  """The 4x4 map from a voxel (i, j, k) of an axial stack written by
  `write_stack` or `write_series` to the (column, row, slice) it holds:
  column i, row rows - 1 - j (rows are flipped as `slices_to_volume` flips
  them), slice k."""
  return np.array([[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, rows - 1.0],
                   [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def write_series(slices, affine, out_path):
  """Writes [N, rows, cols] slices placed in the patient as one NIfTI.

  The voxels are laid out as `write_stack`'s axial stack [cols, rows, N];
  the written affine is `affine` composed with that layout
  (`stack_to_slice_index`), so that every voxel keeps its place. The qform
  and sform are marked `scanner` (code 1), as for an image converted from
  DICOM.

  Args:
    slices: [N, rows, cols] values.
    affine: [4, 4] from (column, row, slice) indices of `slices` to RAS+ mm
      (`dicom.series_affine`).
    out_path: a .nii or .nii.gz path.
  """
  nib = _nib()
  slices = np.asarray(slices, np.float32)
  vol = slices_to_volume(slices, "axial")
  voxel_affine = np.asarray(affine, np.float64) @ stack_to_slice_index(slices.shape[1])
  img = nib.Nifti1Image(vol, voxel_affine)
  img.set_sform(voxel_affine, code="scanner")
  img.set_qform(voxel_affine, code="scanner")
  img.header.set_xyzt_units("mm")
  nib.save(img, out_path)


SAMPLES_DESCRIPTION = "axis 3 indexes independent 2-D samples, not slices of a volume"


def write_stack(slices, out_path, zooms=(1.0, 1.0, 1.0), samples=False):
  """Writes [N, rows, cols] images as one axial NIfTI stack [cols, rows, N], RAS+.

  Args:
    slices: [N, rows, cols] values.
    out_path: a .nii or .nii.gz path.
    zooms: the voxel size in mm: (column spacing, row spacing, slice spacing).
    samples: the N images are independent samples, not slices of one volume.
      The header then claims no space: qform_code and sform_code 0
      (`unknown`: NIfTI-1's "method 1" puts voxel (i, j, k) at (i, j, k) times
      the zooms, though nibabel falls back to Analyze's x-flipped affine), and
      its description (`descrip`) says that axis 3 indexes samples
      (`SAMPLES_DESCRIPTION`). Otherwise the affine is marked `aligned`
      (sform_code 2, nibabel's default).
  """
  nib = _nib()
  vol = slices_to_volume(np.asarray(slices, np.float32), "axial")
  affine = np.diag([float(zooms[0]), float(zooms[1]), float(zooms[2]), 1.0])
  img = nib.Nifti1Image(vol, affine)
  img.header.set_xyzt_units("mm")
  if samples:
    img.set_qform(affine, code="unknown")
    img.set_sform(affine, code="unknown")
    img.header["descrip"] = SAMPLES_DESCRIPTION.encode("ascii")
  nib.save(img, out_path)


class NiftiReader(base.Reader):
  """`nifti:` sources: a NIfTI file, or a folder of them searched recursively."""
  name = "nifti"
  label = "NIfTI"
  module = "nibabel"
  volumes_are = "volumes"
  matched_by = "file name"
  reads = ("window", "slice_axis", "volume_index", "patient_from")

  def check_root(self, root, spec):
    if not os.path.exists(root):
      raise SourceError(f"NIfTI path {root!r} does not exist (from {spec!r})")

  def scan(self, root, pseudonym, options):
    del pseudonym  # NIfTI headers name no patient.
    return scan(root, options.slice_axis, options.volume_index, options.patient_from)

  def slice_values(self, ref):
    return slice_values(ref)

  def volume_values(self, volume):
    return volume_values(volume)

  def voxel_spacing(self, volume):
    zooms, axis = volume.info["zooms"], volume.info["axis"]
    return (float(zooms[AXES[axis]]), *plane_spacing(zooms, axis))


READER = NiftiReader()
