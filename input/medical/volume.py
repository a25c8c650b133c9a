"""What DICOM series and NIfTI volumes have in common once found: a `Volume`
of ordered 2-D slices, the walk that finds their files, and the check for
the `[medical]` extra."""

import dataclasses
import importlib
import os

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
