"""Who an input belongs to: the patient, study and series that `--holdout`
keeps together, read from BIDS names, folders or DICOM headers.

A patient is never guessed. The rules, in the order they are tried:
- `--patient_from=RULE` when given: `folder:N` (the N-th folder under the
  source root, 1 for the first), `file` (every NIfTI file is its own
  patient), or a DICOM attribute keyword (`OtherPatientIDs`, `IssuerOfPatientID`,
  ...) read from the series' header;
- DICOM: PatientID, else OtherPatientIDs (or the first item of
  OtherPatientIDsSequence), else PatientName together with PatientBirthDate
  (a name alone is not a person: de-identified files write one name for all);
- NIfTI and images: the BIDS `sub-<label>` entity of the path.
Anything else has no patient (""), and `--split_by=patient` refuses it with
the ways out (`splits.MEDICAL_WAYS_OUT`).

BIDS entities are parsed as pybids' `parse_file_entities` does: from every
`key-value` part of the folders and of the file name (split at `_`), with
the suffix (`T1w`, `bold`...) and every extension left out, never by
cutting a name at a fixed character.
"""

import os
import re

# Every extension a NIfTI (or compressed NIfTI) file may have, longest first.
NIFTI_EXTENSIONS = (".nii.gz", ".nii.bz2", ".nii.zst", ".nii")
FOLDER_PREFIX = "folder:"
FILE_RULE = "file"
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9.+]+)$")
_KEYWORD = re.compile(r"^[A-Z][A-Za-z0-9]*$")

# How a patient was identified (the log line counts these).
BY_RULE = "--patient_from"
BY_BIDS = "BIDS sub-"
UNIDENTIFIED = "unidentified"


class IdentityError(ValueError):
  """A bad --patient_from value."""


def strip_extensions(name):
  """`sub-01_T1w.nii.gz` -> `sub-01_T1w` (any NIfTI extension, else the last one)."""
  lower = name.lower()
  for ext in NIFTI_EXTENSIONS:
    if lower.endswith(ext):
      return name[:-len(ext)]
  return os.path.splitext(name)[0]


def is_nifti(path):
  return path.lower().endswith(NIFTI_EXTENSIONS)


def bids_entities(rel):
  """The BIDS entities of a relative path: {"sub": "01", "ses": "2", ...}.

  The file name's entities win over its folders' (`sub-01/anat/sub-01_T1w`).
  The suffix and extensions are not entities; a name part that is not
  `key-value` ends the entities of that name.
  """
  parts = rel.replace(os.sep, "/").split("/")
  found = {}
  for folder in parts[:-1]:
    m = _ENTITY.match(folder)
    if m:
      found.setdefault(m.group(1), m.group(2))
  name = {}
  for part in strip_extensions(parts[-1]).split("_"):
    m = _ENTITY.match(part)
    if not m:
      break
    name[m.group(1)] = m.group(2)
  found.update(name)
  return found


def bids_subject(rel):
  """`sub-<label>` of a BIDS path, or ""."""
  label = bids_entities(rel).get("sub")
  return f"sub-{label}" if label else ""


def bids_match_key(rel):
  """What pairs a BIDS file with its partner in another folder: its entities
  without the suffix (`sub-01_ses-2_run-1`); "" for a non-BIDS name."""
  entities = bids_entities(rel)
  if "sub" not in entities:
    return ""
  return "_".join(f"{k}-{v}" for k, v in entities.items())


def bids_suffix(rel):
  """The BIDS suffix of a file name (`sub-01_ses-2_T1w.nii.gz` -> `T1w`): its
  last `_` part when the parts before it are entities; "" otherwise."""
  parts = strip_extensions(os.path.basename(rel)).split("_")
  if len(parts) < 2 or _ENTITY.match(parts[-1]) or not all(_ENTITY.match(p) for p in parts[:-1]):
    return ""
  return parts[-1]


def with_bids_suffix(rel, suffix):
  """`rel` with its BIDS suffix replaced by `suffix` (folders and extensions
  kept): `sub-01/anat/sub-01_T1w.nii.gz` -> `sub-01/anat/sub-01_T2w.nii.gz`.
  A name without a BIDS suffix is returned as it is."""
  old = bids_suffix(rel)
  if not old or not suffix:
    return rel
  folder, name = os.path.split(rel)
  stem = strip_extensions(name)
  return os.path.join(folder, stem[:-len(old)] + suffix + name[len(stem):])


def validate_rule(rule, fmt=None):
  """Raises IdentityError for a bad `--patient_from` (fmt: "dicom", "nifti" or None)."""
  if rule is None:
    return
  if rule.startswith(FOLDER_PREFIX):
    n = rule[len(FOLDER_PREFIX):]
    if not n.isdigit() or int(n) < 1:
      raise IdentityError(f"--patient_from={rule!r}: folder:N takes N >= 1 (1: the first "
                          "folder under the source root)")
    return
  if rule == FILE_RULE:
    if fmt == "dicom":
      raise IdentityError("--patient_from=file is for NIfTI files (one patient per file); for "
                          "DICOM name a header keyword or folder:N")
    return
  if not _KEYWORD.match(rule):
    raise IdentityError(f"--patient_from={rule!r} is none of folder:N, file, or a DICOM "
                        "keyword such as OtherPatientIDs")
  if fmt not in (None, "dicom"):
    raise IdentityError(f"--patient_from={rule!r} names a DICOM keyword, but the source is "
                        f"{fmt}; use folder:N or file")


def folder_part(rel, n):
  """The n-th folder (1-based) of a relative path, or "" when it is not that deep."""
  folders = rel.replace(os.sep, "/").split("/")[:-1]
  return folders[n - 1] if len(folders) >= n else ""


def path_patient(rel, rule=None):
  """(patient identity, how) of a file at `rel` under its source root, by
  `--patient_from` (`folder:N` or `file`) or the BIDS `sub-` entity."""
  if rule is not None and rule.startswith(FOLDER_PREFIX):
    found = folder_part(rel, int(rule[len(FOLDER_PREFIX):]))
    return (found, BY_RULE) if found else ("", UNIDENTIFIED)
  if rule == FILE_RULE:
    return strip_extensions(rel.replace(os.sep, "/")), BY_RULE
  subject = bids_subject(rel)
  return (subject, BY_BIDS) if subject else ("", UNIDENTIFIED)


def dicom_patient(ds, rel, rule=None):
  """(patient identity, how) of a DICOM header `ds` of a file at `rel`.

  The identity is a raw header value: callers pseudonymize it before it goes
  anywhere. `how` names the attribute(s) it came from.
  """
  if rule is not None:
    if rule.startswith(FOLDER_PREFIX):
      return path_patient(rel, rule)
    value = _text(ds.get(rule, ""))
    return (f"{rule}\0{value}", BY_RULE) if value else ("", UNIDENTIFIED)
  patient_id = _text(ds.get("PatientID", ""))
  if patient_id:
    issuer = _text(ds.get("IssuerOfPatientID", ""))
    return f"PatientID\0{issuer}\0{patient_id}", "PatientID"
  others = _text(ds.get("OtherPatientIDs", ""))
  if not others:
    seq = ds.get("OtherPatientIDsSequence")
    if seq:
      others = _text(seq[0].get("PatientID", ""))
  if others:
    return f"OtherPatientIDs\0{others}", "OtherPatientIDs"
  name, birth = _text(ds.get("PatientName", "")), _text(ds.get("PatientBirthDate", ""))
  if name and birth:
    return f"PatientName\0{name}\0{birth}", "PatientName+PatientBirthDate"
  return "", UNIDENTIFIED


def _text(value):
  """A header value as stripped text ("" for empty or missing); multi-valued
  values joined by backslash as DICOM stores them."""
  if value is None:
    return ""
  if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
    return "\\".join(str(v).strip() for v in value if str(v).strip())
  return str(value).strip()


def count_line(what, methods):
  """One log line: how many `what` were identified which way."""
  total = sum(methods.values())
  parts = ", ".join(f"{n} by {m}" for m, n in sorted(methods.items(), key=lambda kv: (-kv[1], kv[0])))
  return f"Patients of {total} {what}: {parts}"
