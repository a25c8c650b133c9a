"""Reading DICOM series with pydicom (the `[medical]` extra); `READER` is the
`volume.Reader` of `dicom:` sources.

`scan(root, pseudonym)` finds every DICOM file under `root` whatever its
extension, groups the image files into series by SeriesInstanceUID and orders
each series' slices by ImagePositionPatient along the slice normal (falling
back to InstanceNumber, then the file name). Multi-frame files contribute one
slice per frame. `slice_values(ref)` decodes one slice in modality units:
RescaleSlope/Intercept (or a Modality LUT) applied, MONOCHROME1 inverted.
`series_affine(volume)` places the series in the patient (RAS+ mm), from its
slices' ImageOrientationPatient, ImagePositionPatient and PixelSpacing
(`input.medical.geometry`).

Nothing read from a header that identifies a patient (PatientName, PatientID,
birth date, accession number, institution) leaves this module but in
`Volume.secret_ids`, which orders the held-out split in memory and is never
written or sent to a worker: series, studies and patients are named by the
salted hashes that `pseudonym` makes. Who the patient is follows
`input.medical.identity`.
"""

import collections
import dataclasses
import logging
import os
import warnings

import numpy as np

from input import images
from input.medical import geometry
from input.medical import identity
from input.medical import volume as base
from input.source_base import SourceError


@dataclasses.dataclass(frozen=True)
class SliceRef:
  """One 2-D slice: a file, and the frame within it (None: a single-frame file)."""
  path: str
  frame: int | None = None


def _pydicom():
  module = base.require("pydicom", "dicom:")
  # pydicom logs every lenient read, and a failed decode with its traceback at
  # ERROR; the converter reports each skipped file in one line of its own and
  # the manifest lists them, so keep the console for those lines.
  logging.getLogger("pydicom").setLevel(logging.CRITICAL)
  return module


def _float_list(value, n):
  try:
    out = [float(v) for v in value]
  except (TypeError, ValueError):
    return None
  return out if len(out) == n else None


def _position(ds):
  """The slice's position along its normal, or None when the header lacks it."""
  orient = _float_list(ds.get("ImageOrientationPatient"), 6)
  pos = _float_list(ds.get("ImagePositionPatient"), 3)
  if orient is None or pos is None:
    return None
  normal = np.cross(orient[:3], orient[3:])
  return float(np.dot(normal, pos))


def _int(ds, name, default=None):
  try:
    return int(ds.get(name, default))
  except (TypeError, ValueError):
    return default


def decoder_hint(message):
  """The package a pixel-data decode error asks for, in one line."""
  text = str(message)
  for needle, package in (("JPEG-LS", "pylibjpeg-libjpeg (or pyjpegls)"),
                          ("JPEG 2000", "pylibjpeg-openjpeg"),
                          ("JPEG Lossless", "pylibjpeg-libjpeg"),
                          ("JPEG Extended", "pylibjpeg-libjpeg"),
                          ("RLE", "pylibjpeg-rle")):
    if needle in text:
      return package
  return None


def _decode_reason(e):
  text = " ".join(str(e).split())
  text = text[:200] + ("..." if len(text) > 200 else "")
  package = decoder_hint(text)
  if package and ("missing dependencies" in text or "Unable to decode" in text):
    return f"cannot decode pixel data: no decoder installed; install {package} ({text})"
  if "less than expected" in text or "truncated" in text.lower():
    return f"truncated file: {text}"
  return f"cannot decode pixel data: {text}"


def scan(root, pseudonym, patient_from=None):
  """Finds the image series under `root`.

  Args:
    root: a folder, searched recursively (hidden files and folders skipped).
    pseudonym: `f(kind, value) -> str`, the salted hash naming series,
      studies and patients.
    patient_from: `--patient_from` (`input.medical.identity`), or None for the
      patient-module attributes.

  Returns:
    A `base.Scan`: volumes by series id; DICOM files that cannot be used;
    DICOM objects that hold no image (structured reports, RT plans,
    DICOMDIR), which are not errors; and the number of non-DICOM files.
  """
  pydicom = _pydicom()
  from pydicom.errors import InvalidDicomError  # pylint: disable=import-outside-toplevel
  headers = collections.defaultdict(list)
  skipped, non_images, ignored = [], [], 0
  for rel in base.walk_files(root):
    path = os.path.join(root, rel)
    try:
      with warnings.catch_warnings():  # pydicom warns about lenient reads.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
      if rel.lower().endswith((".dcm", ".dicom", ".ima")):
        skipped.append({"key": rel, "reason": "not a DICOM file (no DICM preamble)"})
      else:
        ignored += 1
      continue
    except Exception as e:  # pylint: disable=broad-except
      skipped.append({"key": rel, "reason": f"unreadable DICOM header: {images.first_line(e)}"})
      continue
    if "Rows" not in ds or "Columns" not in ds:
      sop = ds.get("SOPClassUID")
      name = getattr(sop, "name", "") or "unknown SOP class"
      non_images.append({"key": rel, "reason": f"no image in this DICOM object ({name})"})
      continue
    uid = str(ds.get("SeriesInstanceUID", "")) or f"file:{rel}"
    headers[uid].append((rel, ds))
  volumes = []
  for uid, members in headers.items():
    vol, vol_skipped = _series(root, uid, members, pseudonym, patient_from)
    skipped.extend(vol_skipped)
    if vol is not None:
      volumes.append(vol)
  volumes.sort(key=lambda v: v.id)
  return base.Scan(volumes, skipped, tuple(non_images), ignored)


def _series(root, uid, members, pseudonym, patient_from):
  """One `base.Volume` from the headers of a series' files."""
  shapes = collections.Counter((int(ds.Rows), int(ds.Columns)) for _, ds in members)
  shape = shapes.most_common(1)[0][0]
  skipped, slices = [], []
  for rel, ds in members:
    if (int(ds.Rows), int(ds.Columns)) != shape:
      skipped.append({"key": rel, "reason": f"{ds.Rows}x{ds.Columns} slice in a series of "
                                            f"{shape[0]}x{shape[1]} slices"})
      continue
    frames = _int(ds, "NumberOfFrames", 1) or 1
    if "NumberOfFrames" in ds and _int(ds, "NumberOfFrames") is None:
      skipped.append({"key": rel, "reason": "bad NumberOfFrames in the header"})
      continue
    pos, inst = _position(ds), _int(ds, "InstanceNumber")
    for f in range(frames):
      slices.append((pos, inst, rel, f, frames))
  if not slices:
    return None, skipped
  if all(s[0] is not None for s in slices) and len({s[0] for s in slices}) == len(
      {(s[2]) for s in slices}):
    slices.sort(key=lambda s: (s[0], s[2], s[3]))
    order = "ImagePositionPatient"
  elif all(s[1] is not None for s in slices):
    slices.sort(key=lambda s: (s[1], s[2], s[3]))
    order = "InstanceNumber"
  else:
    slices.sort(key=lambda s: (s[2], s[3]))
    order = "file name"
  rel, ds = members[0]
  refs = tuple(SliceRef(os.path.join(root, rel), f if n > 1 else None)
               for _, _, rel, f, n in slices)
  folders = sorted({os.path.dirname(rel) for rel, _ in members})
  person, how = identity.dicom_patient(ds, rel, patient_from)
  study_uid = str(ds.get("StudyInstanceUID", "") or "")
  series_id = pseudonym("series", uid)
  patient = pseudonym("patient", person) if person else ""
  study = pseudonym("study", study_uid) if study_uid else ""
  spacing = _float_list(ds.get("PixelSpacing"), 2)
  return base.Volume(
      id=series_id,
      match=folders[0] if len(folders) == 1 else "",
      patient=patient,
      study=study,
      modality=str(ds.get("Modality", "") or ""),
      shape=shape,
      refs=refs,
      info={"slice_order": order, "pixel_spacing": spacing,
            "samples_per_pixel": _int(ds, "SamplesPerPixel", 1)},
      identified_by=how,
      secret_ids={k: v for k, v in ((series_id, uid), (patient, person), (study, study_uid))
                  if k},
  ), skipped


def slice_values(ref):
  """Decodes one slice into modality units.

  Returns:
    float32 [H, W] (grayscale) or uint8/uint16 [H, W, 3] (colour, no
    modality units).

  Raises:
    images.BadImageError: undecodable pixel data (the reason names the
      decoder package to install), a truncated file, or an unsupported layout.
  """
  pydicom = _pydicom()
  from pydicom import pixels  # pylint: disable=import-outside-toplevel
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      ds = pydicom.dcmread(ref.path)
      arr = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except
    raise images.BadImageError(_decode_reason(e)) from None
  if ref.frame is not None:
    arr = arr[ref.frame]
  samples = _int(ds, "SamplesPerPixel", 1)
  if samples == 3:
    if arr.dtype not in (np.uint8, np.uint16):
      raise images.BadImageError(f"{arr.dtype} colour pixel data is not supported")
    return arr
  if arr.ndim != 2:
    raise images.BadImageError(f"unsupported pixel array shape {arr.shape}")
  if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
    # Higher stored values are darker: flip within the stored range, so that
    # brighter is higher as in MONOCHROME2, before the modality transform.
    bits = _int(ds, "BitsStored", 16)
    if _int(ds, "PixelRepresentation", 0) == 1:
      lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
      lo, hi = 0, (1 << bits) - 1
    arr = (lo + hi) - arr.astype(np.int64)
  try:
    values = pixels.apply_modality_lut(arr, ds)
  except Exception as e:  # pylint: disable=broad-except
    raise images.BadImageError(f"cannot apply the modality LUT: {images.first_line(e)}") from None
  return np.asarray(values, np.float32)


def _item(ds, sequence):
  """The first item of a sequence attribute of `ds`, or None."""
  seq = ds.get(sequence) if ds is not None else None
  return seq[0] if seq else None


def _plane(ds, frame):
  """The `geometry.Plane` of one slice: frame `frame` of `ds` (None: a
  single-frame file).

  An enhanced multi-frame file holds each frame's plane in its per-frame
  functional groups (or the shared ones); an RT Dose file offsets its frames
  along the normal by GridFrameOffsetVector; other files hold one plane at
  the top level.
  """
  index = frame or 0
  per_frame = ds.get("PerFrameFunctionalGroupsSequence")
  groups = [per_frame[index] if per_frame and index < len(per_frame) else None,
            _item(ds, "SharedFunctionalGroupsSequence"), ds]

  def find(sequence, name, n):
    for group in groups:
      holder = group if group is ds else _item(group, sequence)
      value = holder.get(name) if holder is not None else None
      if n == 1 and value is not None and not isinstance(value, (list, tuple)):
        value = [value]  # pydicom gives one value as a scalar.
      value = _float_list(value, n) if value is not None else None
      if value is not None:
        return value
    return None

  orientation = find("PlaneOrientationSequence", "ImageOrientationPatient", 6)
  position = find("PlanePositionSequence", "ImagePositionPatient", 3)
  spacing = find("PixelMeasuresSequence", "PixelSpacing", 2)
  thickness = (find("PixelMeasuresSequence", "SpacingBetweenSlices", 1)
               or find("PixelMeasuresSequence", "SliceThickness", 1))
  offsets = _float_list(ds.get("GridFrameOffsetVector"), _int(ds, "NumberOfFrames", 1) or 1)
  if offsets and orientation and position and len(offsets) > 1:
    # Offsets from the position when the first is 0; else the frames' z
    # along the normal (DICOM permits that form for axial grids only).
    normal = np.cross(orientation[:3], orientation[3:])
    start = 0.0 if offsets[0] == 0 else float(np.dot(normal, position))
    position = [float(v) for v in np.asarray(position) + (offsets[index] - start) * normal]
  return geometry.Plane(
      orientation=tuple(orientation) if orientation else None,
      position=tuple(position) if position else None,
      spacing=tuple(spacing) if spacing else None,
      thickness=abs(thickness[0]) if thickness and thickness[0] else None)


def series_affine(volume):
  """The affine of a series as its slices are ordered (`volume.refs`).

  Returns:
    float64 [4, 4] mapping (column, row, slice) indices to RAS+ mm; None when
    no slice has an orientation or position (secondary captures, some
    ultrasound): nothing places the series in the patient.

  Raises:
    geometry.GeometryError: the slices cannot be given one affine (the
      message says why; the caller names the series).
    images.BadImageError: a header cannot be read again.
  """
  pydicom = _pydicom()
  headers, planes = {}, []
  for ref in volume.refs:
    if ref.path not in headers:
      try:
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          headers[ref.path] = pydicom.dcmread(ref.path, stop_before_pixels=True)
      except Exception as e:  # pylint: disable=broad-except
        raise images.BadImageError(f"unreadable DICOM header: {images.first_line(e)}") from None
    planes.append(_plane(headers[ref.path], ref.frame))
  if not geometry.has_geometry(planes):
    return None
  return geometry.affine(planes)


def volume_values(volume):
  """Every value of a series' decodable grayscale slices (for percentile
  windows); a slice that cannot be decoded is skipped here and reported when
  it is loaded itself.

  Raises:
    images.BadImageError: no slice of the series can be decoded.
  """
  parts = []
  for ref in volume.refs:
    try:
      x = slice_values(ref)
    except images.BadImageError:
      continue
    if x.ndim == 2:
      parts.append(x.reshape(-1))
  if not parts:
    raise images.BadImageError("no decodable slice in this series")
  return np.concatenate(parts)


class DicomReader(base.Reader):
  """`dicom:` sources: a folder of DICOM files, searched recursively."""
  name = "dicom"
  label = "DICOM"
  module = "pydicom"
  volumes_are = "series"
  matched_by = "folder"
  private_names = True  # A folder may be named after the patient.
  reads = ("window", "patient_from")

  def check_root(self, root, spec):
    if os.path.isfile(root):
      hint = (f"; it is a NIfTI file: use nifti:{root}" if identity.is_nifti(root)
              else "; give the folder that holds it")
      raise SourceError(f"dicom: takes a folder of DICOM files, and {root!r} is a file{hint} "
                        f"(from {spec!r})")
    if not os.path.isdir(root):
      raise SourceError(f"DICOM folder {root!r} does not exist (from {spec!r})")

  def scan(self, root, pseudonym, options):
    return scan(root, pseudonym, options.patient_from)

  def slice_values(self, ref):
    return slice_values(ref)

  def volume_values(self, volume):
    return volume_values(volume)

  def voxel_spacing(self, volume):
    # The affine's columns step one column, one row, one slice (`series_affine`).
    try:
      affine = series_affine(volume)
    except (geometry.GeometryError, images.BadImageError):
      return None
    if affine is None:
      return None
    steps = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    spacing = (float(steps[2]), float(steps[1]), float(steps[0]))
    return spacing if all(np.isfinite(v) and v > 0 for v in spacing) else None

  def manifest(self, non_images, ignored):
    return {"non_image_dicom": list(non_images), "ignored_non_dicom_files": ignored}


READER = DicomReader()
