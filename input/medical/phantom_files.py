"""Writing phantom subjects (`input.medical.phantom`) as the files users
bring: BIDS-named NIfTI volumes or DICOM series; the library behind
`pipeline.make_phantoms`.

    from input.medical import phantom_files
    phantom_files.run(phantom_files.PhantomConfig(output="/data/phantom", subjects=20))

Layout: one folder per contrast, each a BIDS-named tree of its own, so that
`paired:nifti:OUT/T1w,OUT/T2w` pairs `sub-01_T1w` with `sub-01_T2w` (paired
sources take one folder per side and match files by their BIDS entities
without the suffix; with all contrasts in one folder every subject would
match three ways):

    OUT/T1w/dataset_description.json, participants.tsv
    OUT/T1w/sub-01/anat/sub-01_T1w.nii.gz
    OUT/T2w/sub-01/anat/sub-01_T2w.nii.gz
    OUT/CT/sub-01/anat/sub-01_ct.nii.gz

BIDS has no suffix for CT yet; `_ct` is lower case like BIDS's other
non-MR suffixes (`_pet`). With `--format=dicom` each folder holds one series
per subject instead, `OUT/T1w/sub-01/IM0001.dcm`, ...: one file per axial
slice, with non-identifying but realistic headers (PatientID `PHANTOM-01`,
no birth date; the three series of a subject share its study and frame of
reference) and geometry that agrees with the NIfTI affine (DICOM's LPS
patient axes, standard axial orientation).

The output is deterministic: the same seed, size and subjects give
byte-identical files (gzip without a time stamp, UIDs derived from the seed).
It is written into a temporary folder and renamed when complete.
"""

import dataclasses
import gzip
import json
import os
import shutil
import time

from absl import logging
import numpy as np

from input.medical import phantom
from input.medical import volume as base
from settings import required, setting

FORMATS = ("nifti", "dicom")
SUFFIXES = {"T1w": "T1w", "T2w": "T2w", "CT": "ct"}  # BIDS suffix of each contrast.
BIDS_VERSION = "1.9.0"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, for UIDs derived from a hash.
_STUDY_DATE = "20000101"  # A fixed, obviously synthetic date.
# Realistic acquisition parameters of each series (spin echo MR, head CT).
_SERIES = {
    "T1w": dict(SeriesNumber=1, SeriesTime="091000", Modality="MR",
                SeriesDescription="T1w SE axial", ScanningSequence="SE", SequenceVariant="NONE",
                RepetitionTime=500.0, EchoTime=10.0, MagneticFieldStrength=3.0,
                ImagingFrequency=123.2, MRAcquisitionType="2D"),
    "T2w": dict(SeriesNumber=2, SeriesTime="092000", Modality="MR",
                SeriesDescription="T2w TSE axial", ScanningSequence="SE", SequenceVariant="SK",
                RepetitionTime=4000.0, EchoTime=100.0, MagneticFieldStrength=3.0,
                ImagingFrequency=123.2, MRAcquisitionType="2D"),
    "CT": dict(SeriesNumber=3, SeriesTime="093000", Modality="CT",
               SeriesDescription="CT head axial", KVP=120.0, ConvolutionKernel="STANDARD",
               RescaleType="HU"),
}
_CT_OFFSET = 1024  # CT stored as HU + 1024 (unsigned 12 bits), RescaleIntercept -1024.


class PhantomError(ValueError):
  """Settings that cannot be written (one line, naming the value)."""


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
  """What `pipeline.make_phantoms` writes (each field is one of its flags)."""
  output: str = required(
      "Folder to write: T1w/, T2w/ and CT/, each a BIDS-named tree of NIfTI volumes "
      "(sub-01/anat/sub-01_T1w.nii.gz) or, with --format=dicom, of DICOM series. Must not "
      "exist, or be empty.")
  subjects: int = setting(20, "Number of subjects (sub-01, sub-02, ...).")
  seed: int = setting(0,
      "Every subject is a pure function of the seed and its number: the same seed gives "
      "byte-identical files.")
  size: tuple = setting(phantom.DEFAULT_SIZE,
      f"Voxels X,Y,Z (RAS+) over a {'x'.join(f'{v:g}' for v in phantom.FOV_MM)} mm field of "
      "view: 64,64,48 is 3.5 x 3.5 x 4 mm voxels, 256,256,192 0.875 x 0.875 x 1 mm.",
      kind="int_list")
  format: str = setting("nifti", "nifti: BIDS-named .nii.gz volumes; dicom: DICOM series, one "
                        "file per axial slice.", choices=FORMATS)

  def validate(self):
    """Raises PhantomError naming the first bad value."""
    if not self.output:
      raise PhantomError("--output is required")
    if self.subjects < 1:
      raise PhantomError(f"--subjects must be >= 1, got {self.subjects}")
    if len(self.size) != 3 or min(self.size) < 2:
      raise PhantomError(f"--size takes three sizes of at least 2 voxels (X,Y,Z), got "
                         f"{','.join(str(s) for s in self.size)}")
    if self.format not in FORMATS:
      raise PhantomError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
    if os.path.exists(self.output) and (not os.path.isdir(self.output)
                                        or os.listdir(self.output)):
      raise PhantomError(f"--output {self.output!r} exists and is not an empty folder")


def subject_label(index, subjects):
  """`01` for subject 1 of 20: two digits at least, more for more subjects."""
  return f"{index:0{max(2, len(str(subjects)))}d}"


def nifti_path(root, contrast, label):
  """Where `write_bids` puts a subject's volume of `contrast`, under `root`."""
  suffix = SUFFIXES[contrast]
  return os.path.join(root, contrast, f"sub-{label}", "anat", f"sub-{label}_{suffix}.nii.gz")


def write_nifti(array, affine, path):
  """Writes an int16 volume as .nii.gz with the affine as its qform and sform
  (scanner space, mm), gzip without a time stamp so that the bytes depend
  on the data only."""
  nib = base.require("nibabel", "phantom NIfTI output")
  img = nib.Nifti1Image(np.asarray(array, np.int16), affine)
  img.header.set_xyzt_units("mm")
  img.set_qform(affine, code="scanner")
  img.set_sform(affine, code="scanner")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def _write_dataset_files(folder, contrast, config, labels):
  os.makedirs(folder, exist_ok=True)
  description = {
      "Name": f"gan-pipeline synthetic head phantom, {contrast}",
      "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
      "GeneratedBy": [{"Name": "gan-pipeline pipeline.make_phantoms",
                       "Description": f"seed={config.seed} size="
                                      f"{','.join(str(s) for s in config.size)} "
                                      f"subjects={config.subjects}; synthetic, no person"}]}
  with open(os.path.join(folder, "dataset_description.json"), "w", encoding="utf-8") as f:
    json.dump(description, f, indent=2)
    f.write("\n")
  with open(os.path.join(folder, "participants.tsv"), "w", encoding="utf-8") as f:
    f.write("participant_id\n" + "".join(f"sub-{label}\n" for label in labels))


def _uid(*parts):
  pydicom = base.require("pydicom", "phantom DICOM output")
  return pydicom.uid.generate_uid(_UID_ROOT, [str(p) for p in ("gan-pipeline phantom", *parts)])


def dicom_slice(volume, k):
  """Axial slice `k` of a RAS+ [X, Y, Z] volume as DICOM stores it: rows
  anterior to posterior, columns from the patient's right to left (pixel
  [i, j] is voxel [X-1-j, Y-1-i, k])."""
  return np.flip(volume[:, :, k], (0, 1)).T


def dicom_position(affine, shape, k):
  """ImagePositionPatient (LPS, mm) of the first pixel of axial slice `k`."""
  ras = affine @ np.array([shape[0] - 1, shape[1] - 1, k, 1.0])
  return [float(-ras[0]), float(-ras[1]), float(ras[2])]


def write_dicom_series(subject, contrast, folder, seed, label):
  """Writes one contrast of a subject as a DICOM series: one file per axial
  slice, `folder/IM0001.dcm`, ...

  Raises:
    ValueError: the subject's affine is not a diagonal RAS+ one (as
      `phantom.grid` makes).
  """
  pydicom = base.require("pydicom", "phantom DICOM output")
  affine, volume = subject.affine, subject.images[contrast]
  if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))) or np.any(
      np.diag(affine)[:3] <= 0):
    raise ValueError("write_dicom_series takes a diagonal RAS+ affine")
  sx, sy, sz = (float(v) for v in np.diag(affine)[:3])
  ct = contrast == "CT"
  sop_class = (pydicom.uid.CTImageStorage if ct else pydicom.uid.MRImageStorage)
  study = _uid(seed, label, "study")
  series = _uid(seed, label, contrast, "series")
  frame = _uid(seed, label, "frame of reference")
  stored = (volume.astype(np.int32) + _CT_OFFSET if ct else volume).astype(np.uint16)
  if ct:
    center, width = 40.0, 80.0  # The brain window.
  else:
    lo, hi = np.percentile(volume, [0.5, 99.5])
    center, width = float(round((lo + hi) / 2)), float(max(1, round(hi - lo)))
  os.makedirs(folder, exist_ok=True)
  for k in range(volume.shape[2]):
    sop = _uid(seed, label, contrast, "slice", k)
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.dataset.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = frame
    # Who: a pseudonymous code, no name of a person, no birth date.
    ds.PatientName = f"PHANTOM^{label}"
    ds.PatientID = f"PHANTOM-{label}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom: no patient data"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _STUDY_DATE
    ds.StudyTime = "090000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic head phantom"
    ds.Manufacturer = "gan-pipeline"
    ds.ManufacturerModelName = "synthetic head phantom"
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.ProtocolName = contrast
    for name, value in _SERIES[contrast].items():
      setattr(ds, name, value)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    # Geometry: standard axial, LPS patient axes.
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = dicom_position(affine, volume.shape, k)
    ds.SliceLocation = ds.ImagePositionPatient[2]
    ds.PixelSpacing = [sy, sx]  # Between rows, between columns.
    ds.SliceThickness = ds.SpacingBetweenSlices = sz
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored, ds.HighBit = (12, 11) if ct else (16, 15)
    ds.PixelRepresentation = 0
    if ct:
      ds.RescaleIntercept, ds.RescaleSlope = -float(_CT_OFFSET), 1.0
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = np.ascontiguousarray(dicom_slice(stored, k)).astype("<u2").tobytes()
    ds.save_as(os.path.join(folder, f"IM{k + 1:04d}.dcm"), enforce_file_format=True)


def run(config):
  """Writes `config.subjects` phantom subjects (see the module docstring).

  Returns:
    The output folder.

  Raises:
    PhantomError: a bad setting (nothing is written).
    base.MissingExtraError: nibabel or pydicom missing (the `[medical]` extra).
  """
  config.validate()
  base.require("nibabel" if config.format == "nifti" else "pydicom", "pipeline.make_phantoms")
  out = os.path.abspath(config.output)
  tmp = f"{out}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  labels = [subject_label(i, config.subjects) for i in range(1, config.subjects + 1)]
  start = time.monotonic()
  try:
    if config.format == "nifti":
      for contrast in phantom.CONTRASTS:
        _write_dataset_files(os.path.join(tmp, contrast), contrast, config, labels)
    for i, label in enumerate(labels, start=1):
      subject = phantom.make_subject(config.seed, i, config.size)
      for contrast in phantom.CONTRASTS:
        if config.format == "nifti":
          write_nifti(subject.images[contrast], subject.affine, nifti_path(tmp, contrast, label))
        else:
          write_dicom_series(subject, contrast, os.path.join(tmp, contrast, f"sub-{label}"),
                             config.seed, label)
      logging.info("sub-%s written (%d of %d, %.1f s)", label, i, config.subjects,
                   time.monotonic() - start)
    if os.path.isdir(out):
      os.rmdir(out)  # Empty (validate): replaced whole.
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out
