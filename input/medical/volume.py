"""What DICOM series and NIfTI volumes have in common: a `Volume` of ordered
2-D slices, the `Reader` interface that finds and decodes them (`dicom.READER`,
`nifti.READER`), the walk that finds their files, the 2.5-D context of a
slice (`context_indices`, `context_stacks`), and the check for the
`[medical]` extra."""

import dataclasses
import importlib
import os
from typing import NamedTuple

import numpy as np

EXTRA_HINT = "pip install 'gan-pipeline[medical]'"


class MissingExtraError(ImportError):
  """pydicom or nibabel is not installed."""


def require(module, what):
  """Imports `module`, or raises MissingExtraError naming the extra to install."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise MissingExtraError(f"{what} sources need {module}, which is not installed; "
                            f"install the medical extra: {EXTRA_HINT}") from None


def context_indices(index, num_slices, context_slices):
  """The slices whose values make the 2.5-D context of slice `index`.

  `pipeline.convert --context_slices=K` stores them as the 2K + 1 channels of
  the source side, and `pipeline.translate` stacks them alike: slices index
  - K to index + K in increasing order (channel K is the slice itself),
  clamped to the volume, so that an end slice repeats itself (edge
  replication).

  Args:
    index: the slice, in [0, num_slices).
    num_slices: the slices of the volume.
    context_slices: K >= 0.

  Returns:
    A list of 2K + 1 slice indices.
  """
  return [min(max(i, 0), num_slices - 1)
          for i in range(index - context_slices, index + context_slices + 1)]


def context_stacks(slices, context_slices):
  """Every slice of a volume with its 2.5-D context (`context_indices`).

  Args:
    slices: [S, rows, cols] values of one volume, in slice order.
    context_slices: K >= 0.

  Returns:
    [S, rows, cols, 2K + 1]: element s is slice s's context.
  """
  slices = np.asarray(slices)
  n = len(slices)
  return np.stack([slices[context_indices(s, n, context_slices)] for s in range(n)]
                  ).transpose(0, 2, 3, 1)


@dataclasses.dataclass(frozen=True)
class Volume:
  """One series or 3-D volume as a stack of 2-D slices.

  Attributes:
    id: names the volume in keys and the manifest; never holds patient data
      (a salted hash for DICOM, the file's relative name for NIfTI).
    match: the name pairs are matched by (a series' folder relative to its
      root, a NIfTI file's relative name without extension); "" when
      ambiguous.
    patient: the group for `--split_by=patient` (a salted hash for DICOM);
      "" when nothing identifies the patient (`input.medical.identity`).
    study: the group for `--split_by=study` (a salted hash of the DICOM
      StudyInstanceUID; the BIDS subject and session for NIfTI).
    modality: DICOM Modality ("CT", "MR", ...), "" for NIfTI.
    shape: in-plane (height, width) of every slice.
    refs: one reference per slice, in order (reader-specific).
    info: extra facts for the manifest (no patient data).
    identified_by: how the patient was identified (`input.medical.identity`).
    secret_ids: {group name: the raw value it was made from} for the split
      order (`input.medical.splits`), which must not depend on the salt. Raw header
      values: kept in memory only, never written or sent to a worker.
  """
  id: str
  match: str
  patient: str
  modality: str
  shape: tuple
  refs: tuple
  info: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
  study: str = ""
  identified_by: str = ""
  secret_ids: dict = dataclasses.field(default_factory=dict, hash=False, compare=False,
                                       repr=False)

  @property
  def num_slices(self):
    return len(self.refs)


def walk_files(root):
  """Every file under `root` relative to it, sorted; hidden entries skipped."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for name in filenames:
      if not name.startswith("."):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  return sorted(found)


class Scan(NamedTuple):
  """What a reader found under one root.

  Attributes:
    volumes: `Volume`s sorted by id.
    skipped: {"key": relative path, "reason"} of files of the format that
      cannot be used.
    non_images: {"key", "reason"} of files of the format that hold no image
      (DICOM structured reports, RT plans, DICOMDIR); not errors.
    ignored: the number of files not of the format.
  """
  volumes: list
  skipped: list
  non_images: tuple = ()
  ignored: int = 0


class Reader:
  """How `MedicalSource` finds and decodes one format.

  Subclasses set the attributes and implement the methods; `dicom.READER`
  and `nifti.READER` are the two.

  Attributes:
    name: the source scheme, `dicom` or `nifti`.
    label: the format in messages (`DICOM`, `NIfTI`).
    module: the package of the `[medical]` extra the reader needs.
    volumes_are: what a volume is called in the log (`series`, `volumes`).
    matched_by: what paired volumes are matched by, for messages.
    private_names: a volume's match name may name a patient (a DICOM folder),
      so that a pair is named by its pseudonym.
    reads: the conversion settings (`MedicalOptions`) the reader uses;
      `input.sources` refuses the others for its sources.
  """
  name = ""
  label = ""
  module = ""
  volumes_are = "volumes"
  matched_by = "name"
  private_names = False
  reads = ()

  def check_root(self, root, spec):
    """Raises SourceError when `root` cannot hold this format (from `spec`)."""
    raise NotImplementedError

  def scan(self, root, pseudonym, options):
    """The `Scan` of `root`, from headers only.

    Args:
      root: a path the source names.
      pseudonym: `f(kind, value) -> str`, the salted names (`pseudonyms`).
      options: the source's `MedicalOptions`.
    """
    raise NotImplementedError

  def slice_values(self, ref):
    """One slice in modality units: float32 [H, W], or [H, W, 3] colour.

    Raises:
      images.BadImageError: the slice cannot be decoded.
    """
    raise NotImplementedError

  def volume_values(self, volume):
    """Every value of a `Volume` (for percentile windows)."""
    raise NotImplementedError

  def voxel_spacing(self, volume):
    """(between slices, between rows, between columns) in mm of a `Volume`
    as its slices are ordered, or None when its headers do not say."""
    del volume
    return None

  def manifest(self, non_images, ignored):
    """The manifest's record of the files that were not images."""
    del non_images, ignored
    return {}
