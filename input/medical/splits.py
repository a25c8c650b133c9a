"""`--holdout=FRACTION --split_by=patient|study|series|file`: a held-out `test`
split that shares no patient (or study, series, file) with `train`.

The split depends only on who the groups are, `--holdout` and `--seed`:
groups are ordered by a hash of the seed and the *identity* they were made
from (a DICOM PatientID, a BIDS subject, a folder; `Item.secret_id`), never
by their salted pseudonyms, so that the same data converted into any folder
holds out the same patients. The first round(FRACTION x groups) of them (at
least one, never all) go to `test`. The same group goes to `test` in every
domain of an unpaired source, so the T1 and T2 scans of one patient are held
out together.

`--split_file=PATH` writes the split (group names only: pseudonyms, BIDS
subjects, folders) or, when PATH exists, reuses it, so that several
conversions (T1 and T2 folders, a re-conversion at another size) hold out
the same patients. Groups the file does not name go to `train` (they were in
no earlier test set), with a warning. The split's fingerprint (a hash of how
it groups and of its test groups) goes into the manifest, where
`pipeline.evaluate --memorization` compares it with the training data's.
"""

import hashlib
import json
import os

from absl import logging

from input import manifest as manifest_lib

SPLIT_BY = ("patient", "study", "series", "file")
SPLIT_FILE_FORMAT = "gan-pipeline split v1"


class SplitError(ValueError):
  """A holdout that cannot be made (no groups, a single group, ...)."""


def group_of(item, split_by):
  """The group of an `Item` under `split_by` ("" when it has none)."""
  if split_by == "file":
    return item.key
  if split_by == "patient":
    return item.patient
  if split_by == "study":
    return item.study or item.series
  return item.series or item.patient


MEDICAL_WAYS_OUT = (
    "no PatientID, OtherPatientIDs, or PatientName with PatientBirthDate; no BIDS sub- name), so "
    "patients cannot be kept apart. Say how to tell them apart with --patient_from=KEYWORD (a "
    "DICOM attribute) or --patient_from=folder:N (the N-th folder under the source root; "
    "--patient_from=file: one NIfTI file per patient), or hold out whole studies or series with "
    "--split_by=study|series")
FOLDER_WAYS_OUT = (
    "files directly in the source folder); put each patient's images in a folder of its own "
    "(or use a BIDS sub- name), or use --split_by=file")


def unidentified_message(num_unidentified, num_series, ways_out):
  """The one line that refuses a patient split of inputs without a patient."""
  return (f"--split_by=patient: {num_unidentified} of {num_series} series have no patient "
          f"identity ({ways_out}")


def fingerprint(split_by, test_groups):
  """A hash that names a split: how it groups and which groups it holds out."""
  text = json.dumps({"split_by": split_by, "test": sorted(test_groups)}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def _order(groups, seed, secret_ids):
  def key(g):
    return hashlib.sha256(f"{seed}\0{secret_ids.get(g, g)}".encode()).hexdigest()
  return sorted(groups, key=key)


def read_split_file(path):
  """A split written by `write_split_file`.

  Raises:
    SplitError: not a split file (one line, naming it).
  """
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise SplitError(f"--split_file {path!r} cannot be read: {e}") from None
  if not isinstance(data, dict) or data.get("format") != SPLIT_FILE_FORMAT:
    raise SplitError(f"--split_file {path!r} is not a split written by pipeline.convert")
  return data


def write_split_file(path, summary, groups):
  """Writes the split of a conversion: group names and how they were made.

  Args:
    path: the file.
    summary, groups: as `holdout` returns them.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  manifest_lib.write_json_atomic(path, {
      "format": SPLIT_FILE_FORMAT, "split_by": summary["split_by"],
      "fraction": summary["fraction"], "seed": summary["seed"],
      "fingerprint": summary["fingerprint"], **groups})


def holdout(items, fraction, split_by, seed, secret_ids=None, reuse=None,
            ways_out=FOLDER_WAYS_OUT):
  """Moves whole groups from each `train*` split into `test*`.

  Args:
    items: {split: [Item, ...]} as a source lists them.
    fraction: the fraction of groups to hold out, in (0, 1); ignored with
      `reuse`.
    split_by: one of SPLIT_BY.
    seed: orders the groups.
    secret_ids: {group: the identity it was made from}, for the order (a
      group missing here is its own identity). Never written.
    reuse: a split file's contents (`read_split_file`): its test groups are
      held out, whatever `fraction` and `seed` say.
    ways_out: what the refusal of unidentified patients suggests
      (MEDICAL_WAYS_OUT or FOLDER_WAYS_OUT).

  Returns:
    ({split: [Item, ...]} with `test*` splits added, a summary dict for the
    manifest, {"test": [...], "train": [...]} the group names of the split
    for `write_split_file`).

  Raises:
    SplitError: a source that already has test splits, items without a
      group (the message names the ways out), fewer than two groups, or a
      split file made with another --split_by.
  """
  if split_by not in SPLIT_BY:
    raise SplitError(f"--split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
  if reuse is not None and reuse["split_by"] != split_by:
    raise SplitError(f"the --split_file was made with --split_by={reuse['split_by']}, not "
                     f"--split_by={split_by}")
  secret_ids = secret_ids or {}
  train = [s for s in items if s.startswith("train")]
  for s in train:
    if "test" + s[len("train"):] in items:
      raise SplitError(f"the source already has a {'test' + s[len('train'):]!r} split; "
                       "--holdout makes one from train only")
  groups, series, unidentified = set(), set(), set()
  for s in train:
    for it in items[s]:
      g = group_of(it, split_by)
      series.add(it.series or it.key)
      if not g:
        unidentified.add(it.series or it.key)
      groups.add(g)
  if unidentified:
    if split_by == "patient":
      raise SplitError(unidentified_message(len(unidentified), len(series), ways_out))
    raise SplitError(f"--split_by={split_by} needs a {split_by} for every example, and "
                     f"{len(unidentified)} have none (e.g. {sorted(unidentified)[0]!r}); use "
                     "--split_by=file")
  if len(groups) < 2:
    raise SplitError(f"--holdout needs at least two {split_by} groups, found {len(groups)}")
  if reuse is not None:
    test_list = sorted(reuse["test"])
    test = groups & set(test_list)
    known = test_list + list(reuse["train"])
    new = groups - set(known)
    if new:
      logging.warning("--split_file: %d of %d %s groups are not in the split file; they go to "
                      "train (no earlier conversion held them out)", len(new), len(groups),
                      split_by)
    made = "reused from --split_file"
    fraction = reuse["fraction"]
  else:
    order = _order(groups, seed, secret_ids)
    n_test = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    test = set(order[:n_test])
    test_list = sorted(test)
    made = "hash order of the group identities and --seed (independent of the output folder)"
  out = {s: v for s, v in items.items() if s not in train}
  counts = {}
  for s in train:
    suffix = s[len("train"):]
    out[s] = [it for it in items[s] if group_of(it, split_by) not in test]
    out["test" + suffix] = [it for it in items[s] if group_of(it, split_by) in test]
    counts[s] = len({group_of(it, split_by) for it in out[s]})
    counts["test" + suffix] = len({group_of(it, split_by) for it in out["test" + suffix]})
  summary = {"fraction": fraction, "split_by": split_by, "seed": seed, "groups": counts,
             "test_groups": sorted(test) if split_by != "file" else len(test),
             "made": made, "fingerprint": fingerprint(split_by, test_list)}
  return out, summary, {"test": test_list, "train": sorted(groups - test)}
