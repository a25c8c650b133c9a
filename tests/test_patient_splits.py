"""Patient-level splits that never leak, whatever the layout, and secrets that
stay private (issue 26): blank DICOM patient IDs, BIDS names, the same data
converted into several folders, split files shared between conversions, and
the pseudonym salt."""

import hashlib
import hmac
import json
import os
import pickle
import stat

import numpy as np
import pytest
import tensorflow as tf

from input import convert
from input.medical import identity
from input.medical import pseudonyms
from input.medical import splits
from input.source_base import Item
from input import sources

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

PATIENTS = ("PAT0", "PAT1", "PAT2", "PAT3", "PAT4", "PAT5")


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  kwargs.setdefault("min_shards", 1)
  kwargs.setdefault("image_size", 16)
  kwargs.setdefault("window", "-1024,4096")
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _write_series(folder, patient, series_uid, fill, n=2, blank_ids=False, **tags):
  """n CT slices of one series; every pixel of every slice is raw `fill`
  (so a record tells whose it is). blank_ids: PatientID and PatientName
  empty, as PS3.15 de-identification leaves them."""
  os.makedirs(folder, exist_ok=True)
  base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  for k in range(n):
    ds = base.copy()
    ds.PatientID = "" if blank_ids else patient
    ds.PatientName = "" if blank_ids else f"Doe^{patient}"
    ds.PatientBirthDate = ""
    if blank_ids:  # CT_small carries two more IDs in OtherPatientIDsSequence.
      for name in ("OtherPatientIDs", "OtherPatientIDsSequence"):
        if name in ds:
          delattr(ds, name)
    for name, value in tags.items():
      setattr(ds, name, value)
    ds.StudyInstanceUID = series_uid + ".9"
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImagePositionPatient = [0.0, 0.0, float(k)]
    ds.PixelData = np.full((ds.Rows, ds.Columns), fill, np.int16).tobytes()
    ds.save_as(os.path.join(folder, f"im{k}.dcm"))


def _cohort(root, patients=PATIENTS, series_per_patient=2, **kwargs):
  """root/case<i>/<series>/ (folders not named after patients): each patient's
  slices hold raw 100 * (i + 1)."""
  for p in patients:
    value = 100 * (PATIENTS.index(p) + 1)
    for s in range(series_per_patient):
      _write_series(os.path.join(root, f"case{PATIENTS.index(p)}", f"series{s}"), p,
                    f"1.2.826.0.1.{PATIENTS.index(p)}.{s}", value, **kwargs)


def _patients_by_split(out_dir, manifest):
  """{split: set of patient names}, read back from the pixel values of the records."""
  window = manifest["window"]["image"]
  low, high = window["low"], window["high"]
  found = {}
  for split, info in manifest["splits"].items():
    for shard in info["shards"]:
      for raw in tf.data.TFRecordDataset(os.path.join(out_dir, shard["file"])):
        ex = tf.train.Example.FromString(raw.numpy()).features.feature
        codes = np.frombuffer(ex["image"].bytes_list.value[0], "<u2")
        hu = low + float(np.median(codes)) / 65535 * (high - low)
        index = int(round((hu + 1024) / 100)) - 1  # CT_small: HU = raw - 1024.
        found.setdefault(split, set()).add(PATIENTS[index])
  return found


def _nifti(path, fill=1.0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = np.full((8, 8, 3), fill, np.float32)
  data[0, 0, :] = 0.0  # A range for the percentile window.
  nib.save(nib.Nifti1Image(data, np.eye(4)), path)


class DicomIdentityTest(tf.test.TestCase):

  def test_blank_patient_ids_are_refused_with_the_ways_out(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:3], blank_ids=True)
    out = os.path.join(self.create_tempdir().full_path, "out")
    with self.assertRaises(convert.ConvertError) as ctx:
      _convert(f"dicom:{root}", out, holdout=0.34, split_by="patient")
    message = str(ctx.exception)
    self.assertEqual(ctx.exception.exit_code, convert.EXIT_USAGE)
    self.assertIn("6 of 6 series have no patient identity", message)
    for way_out in ("--patient_from=KEYWORD", "--patient_from=folder:N", "--split_by=study"):
      self.assertIn(way_out, message)
    self.assertNotIn("\n", message)
    self.assertFalse(os.path.exists(out))  # Nothing written, no salt.

  def test_folder_rule_keeps_every_patient_on_one_side(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:3], blank_ids=True)
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"dicom:{root}", out, holdout=0.34, split_by="patient",
                 patient_from="folder:1")
    found = _patients_by_split(out, m)
    self.assertEqual(found["train"] & found["test"], set())
    self.assertLen(found["train"] | found["test"], 3)
    self.assertEqual(m["holdout"]["groups"], {"train": 2, "test": 1})
    self.assertEqual({e["patient_from"] for e in m["series"].values()}, {"--patient_from"})

  def test_fallback_tags_identify_a_person(self):
    root = self.create_tempdir().full_path
    for i, p in enumerate(PATIENTS[:4]):
      tags = ({"OtherPatientIDs": f"MRN{i}"} if i % 2 else
              {"PatientName": f"Roe^{p}", "PatientBirthDate": f"1970010{i + 1}"})
      for s in range(2):
        _write_series(os.path.join(root, f"dump{i}{s}"), p, f"1.2.3.{i}.{s}", 100 * (i + 1),
                      blank_ids=True, **tags)
    out = os.path.join(self.create_tempdir().full_path, "out")
    with self.assertLogs("absl", "INFO") as logs:
      m = _convert(f"dicom:{root}", out, holdout=0.5, split_by="patient")
    self.assertIn("Patients of 8 series: 4 by OtherPatientIDs, 4 by "
                  "PatientName+PatientBirthDate", "\n".join(logs.output))
    found = _patients_by_split(out, m)
    self.assertEqual(found["train"] & found["test"], set())
    self.assertEqual(m["holdout"]["groups"], {"train": 2, "test": 2})

  def test_a_name_alone_is_not_a_person(self):
    ds = pydicom.Dataset()
    ds.PatientID, ds.PatientName = "", "ANONYMOUS"
    self.assertEqual(identity.dicom_patient(ds, "a/b.dcm"), ("", identity.UNIDENTIFIED))

  def test_split_by_study_holds_out_whole_studies(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:3], blank_ids=True)
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"dicom:{root}", out, holdout=0.34, split_by="study")
    self.assertEqual(m["holdout"]["groups"], {"train": 4, "test": 2})

  def test_bad_patient_from_is_one_line(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:2])
    for bad in ("folder:0", "folder:x", "not a tag", "file"):
      with self.assertRaisesRegex(convert.ConvertError, "--patient_from", msg=bad):
        _convert(f"dicom:{root}", os.path.join(root + "-out"), patient_from=bad)

  def test_dicom_source_given_a_nifti_file_says_what_it_is(self):
    path = os.path.join(self.create_tempdir().full_path, "t1.nii.gz")
    _nifti(path)
    with self.assertRaisesRegex(convert.ConvertError, "is a file; it is a NIfTI file: use "
                                "nifti:"):
      _convert(f"dicom:{path}", path + "-out")


class BidsTest(tf.test.TestCase):

  def test_every_bids_layout_names_the_subject(self):
    for rel in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01.nii.gz", "sub-01_run-2.nii.gz",
                "sub-01_ses-2_T2w.nii.gz", "sub-01.nii", "sub-01_T1w.nii.bz2",
                "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz", "sub-01/scan.nii.gz"):
      self.assertEqual(identity.path_patient(rel), ("sub-01", identity.BY_BIDS), msg=rel)
    self.assertEqual(identity.path_patient("case001.nii.gz"), ("", identity.UNIDENTIFIED))
    self.assertEqual(identity.path_patient("x/subject-01.nii.gz"), ("", identity.UNIDENTIFIED))
    self.assertEqual(identity.strip_extensions("sub-01_T1w.nii.gz"), "sub-01_T1w")
    self.assertEqual(identity.bids_match_key("sub-01_ses-2_run-1_T1w.nii.gz"),
                     "sub-01_ses-2_run-1")
    self.assertEqual(identity.bids_match_key("sub-01/anat/sub-01_T2w.nii.gz"), "sub-01")

  def test_bids_suffix_and_renaming(self):
    for rel, suffix in (("sub-01/anat/sub-01_T1w.nii.gz", "T1w"),
                        ("sub-01_ses-2_run-1_ct.nii", "ct"), ("sub-01.nii.gz", ""),
                        ("sub-01_run-2.nii.gz", ""),
                        ("case_001_T1w.nii.gz", ""), ("scan.nii.gz", "")):
      self.assertEqual(identity.bids_suffix(rel), suffix, msg=rel)
    self.assertEqual(identity.with_bids_suffix("sub-01/anat/sub-01_T1w.nii.gz", "T2w"),
                     "sub-01/anat/sub-01_T2w.nii.gz")
    self.assertEqual(identity.with_bids_suffix("sub-01_ses-2_T1w.nii", "T2w"),
                     "sub-01_ses-2_T2w.nii")
    for rel in ("scan.nii.gz", "sub-01.nii.gz"):  # No suffix to replace.
      self.assertEqual(identity.with_bids_suffix(rel, "T2w"), rel)
    # A renamed output still matches its reference in --pairs.
    self.assertEqual(identity.bids_match_key("sub-01_ses-2_T2w.nii"),
                     identity.bids_match_key("sub-01_ses-2_T1w.nii.gz"))

  def test_one_subject_in_many_files_stays_on_one_side(self):
    root = self.create_tempdir().full_path
    names = {"sub-01": ["sub-01.nii.gz", "sub-01_run-2.nii.gz", "sub-01_ses-2_T2w.nii.gz",
                        "sub-01/anat/sub-01_T1w.nii.gz"],
             "sub-02": ["sub-02.nii.gz", "sub-02_run-2.nii.gz"],
             "sub-03": ["sub-03/anat/sub-03_T1w.nii.gz"],
             "sub-04": ["sub-04_T1w.nii.gz"]}
    for files in names.values():
      for rel in files:
        _nifti(os.path.join(root, rel))
    for seed in range(4):
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"nifti:{root}", out, holdout=0.5, split_by="patient", seed=seed,
                   window="percentile:0,100")
      sides = {}
      for sid, entry in m["series"].items():
        sides.setdefault(entry["patient"], set())
      for split in ("train", "test"):
        for shard in m["splits"][split]["shards"]:
          for raw in tf.data.TFRecordDataset(os.path.join(out, shard["file"])):
            key = tf.train.Example.FromString(raw.numpy()).features.feature["key"]
            vid = key.bytes_list.value[0].decode().rsplit("/", 1)[0]
            sides[m["series"][vid]["patient"]].add(split)
      self.assertEqual(sorted(sides), sorted(names))
      for patient, where in sides.items():
        self.assertLen(where, 1, msg=f"seed {seed}: {patient} in {where}")

  def test_non_bids_nifti_is_refused_unless_told(self):
    root = self.create_tempdir().full_path
    for name in ("case1_t1.nii.gz", "case1_t2.nii.gz", "case2_t1.nii.gz"):
      _nifti(os.path.join(root, name))
    with self.assertRaisesRegex(convert.ConvertError, "3 of 3 series have no patient"):
      _convert(f"nifti:{root}", root + "-out", holdout=0.5, window="percentile:0,100")
    self.assertFalse(os.path.exists(root + "-out"))
    m = _convert(f"nifti:{root}", root + "-out", holdout=0.5, window="percentile:0,100",
                 patient_from="file")
    self.assertEqual(sum(m["holdout"]["groups"].values()), 3)

  def test_paired_bids_volumes_pair_by_entities(self):
    parent = self.create_tempdir().full_path
    for sub in ("01", "02"):
      _nifti(os.path.join(parent, "A", f"sub-{sub}", "anat", f"sub-{sub}_T1w.nii.gz"), 1.0)
      _nifti(os.path.join(parent, "B", f"sub-{sub}", "anat", f"sub-{sub}_T2w.nii.gz"), 2.0)
    out = os.path.join(parent, "out")
    m = _convert(f"paired:nifti:{parent}/A,{parent}/B", out, holdout=0.5,
                 window="percentile:0,100")
    self.assertLen(m["pairs"], 2)
    self.assertEqual(m["skipped"], [])
    self.assertEqual(m["holdout"]["groups"], {"train": 1, "test": 1})


class PortableSplitTest(tf.test.TestCase):

  def test_the_split_does_not_depend_on_the_output_folder(self):
    root = self.create_tempdir().full_path
    _cohort(root, series_per_patient=1)
    held_out, pseudonyms = [], []
    for i in range(3):
      out = os.path.join(self.create_tempdir().full_path, f"out{i}")
      m = _convert(f"dicom:{root}", out, holdout=0.5, split_by="patient", seed=7)
      found = _patients_by_split(out, m)
      self.assertEqual(found["train"] & found["test"], set())
      held_out.append(found["test"])
      pseudonyms.append(sorted(m["holdout"]["test_groups"]))
    self.assertEqual(held_out[0], held_out[1])
    self.assertEqual(held_out[0], held_out[2])
    self.assertLen(held_out[0], 3)
    # Each folder has its own salt, so its own pseudonyms.
    self.assertNotEqual(pseudonyms[0], pseudonyms[1])

  def test_the_seed_changes_the_split(self):
    root = self.create_tempdir().full_path
    _cohort(root, series_per_patient=1)
    seen = set()
    for seed in range(6):
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"dicom:{root}", out, holdout=0.5, seed=seed)
      seen.add(frozenset(_patients_by_split(out, m)["test"]))
    self.assertGreater(len(seen), 1)

  def test_a_split_file_holds_out_the_same_patients_in_another_conversion(self):
    parent = self.create_tempdir().full_path
    t1, t2 = os.path.join(parent, "T1"), os.path.join(parent, "T2")
    _cohort(t1, PATIENTS[:5], series_per_patient=1)
    _cohort(t2, PATIENTS[1:], series_per_patient=1)  # PAT0 missing, PAT5 new.
    split_file = os.path.join(parent, "splits", "split.json")
    m1 = _convert(f"dicom:{t1}", os.path.join(parent, "t1-tfr"), holdout=0.4,
                  split_file=split_file)
    with self.assertLogs("absl", "WARNING") as logs:
      m2 = _convert(f"dicom:{t2}", os.path.join(parent, "t2-tfr"), split_file=split_file,
                    image_size=8)
    self.assertIn("1 of 5 patient groups are not in the split file", "\n".join(logs.output))
    f1 = _patients_by_split(os.path.join(parent, "t1-tfr"), m1)
    f2 = _patients_by_split(os.path.join(parent, "t2-tfr"), m2)
    self.assertLen(f1["test"], 2)
    self.assertEqual(f2["test"], f1["test"] - {"PAT0"})
    self.assertIn("PAT5", f2["train"])
    self.assertEqual(f2["train"] & f1["test"], set())
    self.assertEqual(m1["holdout"]["fingerprint"], m2["holdout"]["fingerprint"])
    self.assertEqual(m2["holdout"]["made"], "reused from --split_file")
    # The split file holds pseudonyms only; its key is private and beside it.
    with open(split_file, encoding="utf-8") as f:
      text = f.read()
    for p in PATIENTS:
      self.assertNotIn(p, text)
    self.assertEqual(json.loads(text)["test"], sorted(m1["holdout"]["test_groups"]))
    key = split_file + convert.KEY_SUFFIX
    self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
    with open(key, encoding="utf-8") as f:
      secret = f.read().strip()
    for out in ("t1-tfr", "t2-tfr"):
      with open(os.path.join(parent, out, "manifest.json"), encoding="utf-8") as f:
        self.assertNotIn(secret, f.read())
      # The identities that order the split reach no file (plan, sidecars, shards).
      for folder, _, files in os.walk(os.path.join(parent, out)):
        for name in files:
          if name == pseudonyms.SALT_NAME:
            continue
          with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
          for p in PATIENTS:
            self.assertNotIn(p.encode(), data, msg=f"{p} in {name}")

  def test_workers_get_no_identity(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:2], series_per_patient=1)
    salt = pseudonyms.new_salt()
    source = sources.build(f"dicom:{root}", convert.ConvertConfig(output=f"{root}-out"),
                           pseudonym_salt=lambda: salt)
    source.items()
    self.assertIn("PAT0", "".join(source.secret_ids().values()))
    state = pickle.dumps(source)  # What a spawned worker receives.
    for p in PATIENTS[:2]:
      self.assertNotIn(p.encode(), state)
    self.assertNotIn(salt.encode(), state)  # Nor the salt: workers name nothing.

  def test_a_split_file_without_its_key_is_refused(self):
    parent = self.create_tempdir().full_path
    _cohort(os.path.join(parent, "src"), PATIENTS[:3], series_per_patient=1)
    split_file = os.path.join(parent, "split.json")
    _convert(f"dicom:{parent}/src", os.path.join(parent, "a"), holdout=0.4, split_file=split_file)
    os.remove(split_file + convert.KEY_SUFFIX)
    with self.assertRaisesRegex(convert.ConvertError, "has no key beside it"):
      _convert(f"dicom:{parent}/src", os.path.join(parent, "b"), split_file=split_file)
    self.assertFalse(os.path.exists(os.path.join(parent, "b")))

  def test_unit_split_order_uses_identities_not_names(self):
    items = {"train": [splits_item(f"p{i}") for i in range(10)]}
    # Two salts name the same patients differently; the identities agree.
    names_a = {f"p{i}": f"A{i * 7 % 10}" for i in range(10)}
    names_b = {f"p{i}": f"B{i * 3 % 10}" for i in range(10)}
    tests = []
    for names in (names_a, names_b):
      renamed = {"train": [splits_item(names[it.patient]) for it in items["train"]]}
      secret = {names[p]: p for p in names}
      _, summary, _ = splits.holdout(renamed, 0.3, "patient", 5, secret_ids=secret)
      inverse = {v: k for k, v in names.items()}
      tests.append(sorted(inverse[g] for g in summary["test_groups"]))
    self.assertEqual(tests[0], tests[1])
    self.assertLen(tests[0], 3)


def splits_item(patient):
  return Item(f"{patient}/0", patient=patient, series=patient)


class SaltTest(tf.test.TestCase):

  def test_pseudonyms_depend_on_the_private_salt(self):
    root = self.create_tempdir().full_path
    _cohort(root, PATIENTS[:2], series_per_patient=1)
    outs = [os.path.join(self.create_tempdir().full_path, "out") for _ in range(2)]
    manifests = [_convert(f"dicom:{root}", out, holdout=0.5) for out in outs]
    patients = [sorted(e["patient"] for e in m["series"].values()) for m in manifests]
    self.assertNotEqual(patients[0], patients[1])  # Two salts: two sets of pseudonyms.
    salt_path = os.path.join(outs[0], ".convert", pseudonyms.SALT_NAME)
    self.assertEqual(stat.S_IMODE(os.stat(salt_path).st_mode), 0o600)
    salt = pseudonyms.read_salt(salt_path)
    expected = sorted(
        "p" + hmac.new(salt.encode(), f"patient\0PatientID\0\0{p}".encode(),
                       hashlib.sha256).hexdigest()[:12] for p in PATIENTS[:2])
    self.assertEqual(patients[0], expected)
    unsalted = {"p" + hashlib.sha256(p.encode()).hexdigest()[:12] for p in PATIENTS[:2]}
    self.assertEqual(unsalted & set(patients[0]), set())

  def test_a_failed_conversion_leaves_nothing(self):
    parent = self.create_tempdir().full_path
    empty = os.path.join(parent, "empty")
    os.makedirs(empty)
    rt_only = os.path.join(parent, "rt")
    os.makedirs(rt_only)
    rt = get_testdata_file("rtplan.dcm")
    with open(rt, "rb") as src, open(os.path.join(rt_only, "plan.dcm"), "wb") as dst:
      dst.write(src.read())
    one = os.path.join(parent, "one")
    _cohort(one, PATIENTS[:1])
    for source, kwargs in ((empty, {}), (rt_only, {}), (one, {"holdout": 0.5})):
      out = os.path.join(parent, "out-" + os.path.basename(source))
      with self.assertRaises(convert.ConvertError, msg=source) as ctx:
        _convert(f"dicom:{source}", out, **kwargs)
      self.assertEqual(ctx.exception.exit_code, convert.EXIT_USAGE)
      self.assertFalse(os.path.exists(out), msg=source)
    # An output folder that existed keeps only what it had.
    out = os.path.join(parent, "kept")
    os.makedirs(out)
    with self.assertRaises(convert.ConvertError):
      _convert(f"dicom:{one}", out, holdout=0.5)
    self.assertEqual(os.listdir(out), [])


class PoolSizeTest(tf.test.TestCase):
  """The default pool is as large as the work pays for (input/workers.py)."""

  def test_golden_pool_sizes(self):
    from input import workers  # pylint: disable=import-outside-toplevel
    start = 0.5
    # 0.1 s of work: a pool (0.5 s a worker) never pays.
    self.assertEqual(workers.pool_size(2, 10, 0.001, 100, start), 1)
    # 2.0 s: 2 workers take 2 x 0.5 + 1.0 = 2.0 s, not less.
    self.assertEqual(workers.pool_size(2, 10, 0.02, 100, start), 1)
    # 10 s: 2 workers take 1 + 5 = 6 s.
    self.assertEqual(workers.pool_size(2, 10, 0.01, 1000, start), 2)
    # 10 s on 8 CPUs: 4 workers (2 + 2.5) beat 3 (1.5 + 3.33); 5 only ties (2.5 + 2).
    self.assertEqual(workers.pool_size(8, 30, 0.01, 1000, start), 4)
    # No more workers than shards left, nor than CPUs.
    self.assertEqual(workers.pool_size(8, 3, 0.01, 1000, start), 3)
    self.assertEqual(workers.pool_size(2, 30, 0.01, 1000, start), 2)
    # The default cost (3.5 s a worker): 60 slices at 20 ms (1.2 s) stay in one
    # process, and so do 512 at 25 ms (12.8 s: 2 workers 7 + 6.4).
    self.assertEqual(workers.pool_size(2, 4, 0.02, 60), 1)
    self.assertEqual(workers.pool_size(2, 14, 0.025, 512), 1)
    self.assertEqual(workers.pool_size(2, 14, 0.1, 512), 2)  # 51 s: 7 + 25.6.
    self.assertEqual(workers.pool_size(1, 30, 0.01, 1000, start), 1)


class SplitFileTasksTest(tf.test.TestCase):

  def test_tasks_that_reuse_the_new_split_file_plan_alike(self):
    parent = self.create_tempdir().full_path
    _cohort(os.path.join(parent, "src"), PATIENTS[:4], series_per_patient=1)
    split_file = os.path.join(parent, "split.json")
    out = os.path.join(parent, "out")
    for task in range(2):  # Task 0 writes the split file; task 1 finds and reuses it.
      self.assertIsNone(_convert(f"dicom:{parent}/src", out, holdout=0.5, split_file=split_file,
                                 num_tasks=2, task_index=task))
    m = convert.finalize(out)
    self.assertEqual(m["holdout"]["groups"], {"train": 2, "test": 2})
