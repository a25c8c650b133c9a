"""What DICOM series and NIfTI volumes have in common once found: a `Volume`
of ordered 2-D slices, pseudonyms for series and patients, and the check for
the `[medical]` extra."""

import dataclasses
import hashlib
import hmac
import importlib
import os
import secrets

EXTRA_HINT = "pip install 'gan-pipeline[medical]'"
SALT_NAME = "pseudonym_salt"


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
      "" when nothing identifies the patient (`input.identity`).
    study: the group for `--split_by=study` (a salted hash of the DICOM
      StudyInstanceUID; the BIDS subject and session for NIfTI).
    modality: DICOM Modality ("CT", "MR", ...), "" for NIfTI.
    shape: in-plane (height, width) of every slice.
    refs: one reference per slice, in order (reader-specific).
    info: extra facts for the manifest (no patient data).
    identified_by: how the patient was identified (`input.identity`).
    secret_ids: {group name: the raw value it was made from} for the split
      order (`input.splits`), which must not depend on the salt. Raw header
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


def new_salt():
  """32 random bytes, hex: the secret of a set of pseudonyms."""
  return secrets.token_hex(32)


def read_salt(path):
  """The salt in `path`, or None when there is no such file.

  Raises:
    OSError: a file that is not a salt written by this pipeline.
  """
  try:
    with open(path, encoding="utf-8") as f:
      salt = f.read().strip()
  except FileNotFoundError:
    return None
  if len(salt) != 64:
    raise OSError(f"{path} is not a salt written by this pipeline")
  return salt


def claim_salt(path, salt):
  """Writes `salt` to `path` unless a salt is there already; returns the one
  in the file and whether this call wrote it.

  The file is created exclusively (so that concurrent tasks agree on one
  salt) and private (mode 0600): without it a hash of a short PatientID
  could be reversed by trying every ID, so it never goes where outputs are
  shared.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  except FileExistsError:
    return read_salt(path), False
  with os.fdopen(fd, "w") as f:
    f.write(salt)
    f.flush()
    os.fsync(f.fileno())
  return salt, True


def load_or_create_salt(path):
  """The salt in `path`, made there (private) when absent."""
  return read_salt(path) or claim_salt(path, new_salt())[0]


class Pseudonym:
  """`pseudonym(kind, value)`: a 12-hex-digit HMAC-SHA256 of `value` under a
  secret salt, prefixed by `kind`'s first letter (`s3f...`, `p9a...`)."""

  def __init__(self, salt):
    self.salt = salt.encode()

  def __call__(self, kind, value):
    digest = hmac.new(self.salt, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}{digest[:12]}"
