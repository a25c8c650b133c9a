"""The built-in head phantom (issue 29): deterministic from its seed, tissue
contrasts in the right order, Rician noise, and its files read back through
the project's own `paired:nifti:` and `dicom:` conversions with patient
holdouts."""

import json
import os
import shutil
import tempfile

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from input import convert
from input.medical import dicom
from input.medical import nifti
from input.medical import phantom
from input.medical import phantom_files
from input.medical import pseudonyms
from input.medical import window as window_lib
from pipeline import flags as pipeline_flags
from tests.test_medical_input import _records  # The same reader of raw records.

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

SMALL = (32, 32, 24)  # 7 x 7 x 8 mm voxels: fast, and every tissue still present.


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  kwargs.setdefault("min_shards", 1)
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _write(root, fmt="nifti", subjects=3, seed=0, size=SMALL):
  return phantom_files.run(phantom_files.PhantomConfig(
      output=os.path.join(root, f"phantom-{fmt}"), subjects=subjects, seed=seed, size=size,
      format=fmt))


class PhantomTest(tf.test.TestCase):

  def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_ones(self):
    a = phantom.make_subject(seed=3, index=2, size=SMALL)
    b = phantom.make_subject(seed=3, index=2, size=SMALL)
    for c in phantom.CONTRASTS:
      self.assertEqual(a.images[c].dtype, np.int16)
      self.assertEqual(a.images[c].tobytes(), b.images[c].tobytes(), c)
    self.assertEqual(a.labels.tobytes(), b.labels.tobytes())
    other_seed = phantom.make_subject(seed=4, index=2, size=SMALL)
    other_subject = phantom.make_subject(seed=3, index=3, size=SMALL)
    for c in phantom.CONTRASTS:
      self.assertNotEqual(a.images[c].tobytes(), other_seed.images[c].tobytes(), c)
      self.assertNotEqual(a.images[c].tobytes(), other_subject.images[c].tobytes(), c)
    # The anatomy differs too, not only the noise.
    self.assertNotEqual(a.labels.tobytes(), other_seed.labels.tobytes())

  def test_tissue_contrasts_in_order(self):
    s = phantom.make_subject(seed=0, index=1, size=(48, 48, 32))
    counts = np.bincount(s.labels.reshape(-1), minlength=len(phantom.LABELS))
    for label in (phantom.SCALP, phantom.SKULL, phantom.CSF, phantom.GREY, phantom.WHITE):
      self.assertGreater(counts[label], 50, phantom.LABELS[label])
    self.assertGreater(counts[phantom.LESION], 0)

    def mean(contrast, label):
      return float(s.images[contrast][s.labels == label].mean())

    wm, gm, csf = phantom.WHITE, phantom.GREY, phantom.CSF
    self.assertGreater(mean("T1w", wm), 1.2 * mean("T1w", gm))
    self.assertGreater(mean("T1w", gm), 1.2 * mean("T1w", csf))
    # Voxels labelled CSF (by their centre) are mostly partial volumes with
    # the skull, which is dark in T2: the margin is smaller (1.13-1.22 over
    # seeds 0-4) than the table's 1.0 / 0.6.
    self.assertGreater(mean("T2w", csf), 1.05 * mean("T2w", gm))
    self.assertGreater(mean("T2w", gm), 1.2 * mean("T2w", wm))
    # Lesions: dark in T1 and bright in T2 against the white matter around them.
    self.assertLess(mean("T1w", phantom.LESION), mean("T1w", wm))
    self.assertGreater(mean("T2w", phantom.LESION), mean("T2w", wm))
    # CT in Hounsfield units.
    ct = s.images["CT"]
    self.assertLess(mean("CT", phantom.AIR), -900)
    self.assertGreater(float(np.median(ct[s.labels == phantom.SKULL])), 300)
    self.assertGreater(float(ct.max()), 700)
    for label in (wm, gm):
      self.assertBetween(float(np.median(ct[s.labels == label])), 15, 50)
    self.assertGreaterEqual(int(ct.min()), phantom.CT_RANGE[0])

  def test_rician_noise_is_a_magnitude(self):
    rng = np.random.default_rng(0)
    # No signal: Rayleigh, mean sigma * sqrt(pi / 2), never negative (a
    # half-normal |N(0, sigma)| would have mean sigma * sqrt(2 / pi) = 7.98).
    floor = phantom.rician(rng, np.zeros(200_000), 10.0)
    self.assertGreaterEqual(float(floor.min()), 0.0)
    self.assertNear(float(floor.mean()), 10.0 * np.sqrt(np.pi / 2), 0.1)
    # A strong signal: about Gaussian around sqrt(S^2 + sigma^2).
    strong = phantom.rician(rng, np.full(200_000, 1000.0), 10.0)
    self.assertNear(float(strong.mean()), np.sqrt(1000.0 ** 2 + 10.0 ** 2), 0.2)
    self.assertNear(float(strong.std()), 10.0, 0.2)
    # In the volumes: no negative value, and a noise floor in the air.
    s = phantom.make_subject(seed=1, index=1, size=SMALL)
    for c in ("T1w", "T2w"):
      self.assertGreaterEqual(int(s.images[c].min()), 0, c)
      self.assertGreater(float(s.images[c][s.labels == phantom.AIR].mean()), 10.0, c)

  def test_the_grid_is_ras_and_centred(self):
    spacing, affine = phantom.grid((64, 64, 48))
    self.assertAllClose(spacing, [3.5, 3.5, 4.0])
    self.assertAllClose(affine @ [0, 0, 0, 1], [-110.25, -110.25, -94.0, 1.0])
    self.assertAllClose(affine @ [63, 63, 47, 1], [110.25, 110.25, 94.0, 1.0])
    with self.assertRaisesRegex(ValueError, r"got \(64, 64\)"):
      phantom.grid((64, 64))


class BidsTreeTest(tf.test.TestCase):

  def test_layout_and_identical_files_from_the_same_seed(self):
    root = self.create_tempdir().full_path
    out = _write(os.path.join(root, "a"), subjects=2)
    again = _write(os.path.join(root, "b"), subjects=2)
    expected = {os.path.join(c, f"sub-{n}", "anat", f"sub-{n}_{s}.nii.gz")
                for c, s in phantom_files.SUFFIXES.items() for n in ("01", "02")}
    expected |= {os.path.join(c, name) for c in phantom.CONTRASTS
                 for name in ("dataset_description.json", "participants.tsv")}
    found = {os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs}
    self.assertEqual(found, expected)
    for rel in sorted(expected):
      with open(os.path.join(out, rel), "rb") as f1, open(os.path.join(again, rel), "rb") as f2:
        self.assertEqual(f1.read(), f2.read(), rel)
    with open(os.path.join(out, "T1w", "participants.tsv"), encoding="utf-8") as f:
      self.assertEqual(f.read(), "participant_id\nsub-01\nsub-02\n")
    with open(os.path.join(out, "CT", "dataset_description.json"), encoding="utf-8") as f:
      self.assertIn("BIDSVersion", json.load(f))
    # The volume on disk is the rendered one, with its affine.
    img = nib.load(os.path.join(out, "CT", "sub-02", "anat", "sub-02_ct.nii.gz"))
    subject = phantom.make_subject(0, 2, SMALL)
    self.assertEqual(img.get_data_dtype(), np.int16)
    self.assertAllEqual(np.asarray(img.dataobj), subject.images["CT"])
    self.assertAllClose(img.affine, subject.affine)
    self.assertEqual(nib.aff2axcodes(img.affine), ("R", "A", "S"))

  def test_refuses_a_folder_that_holds_files(self):
    root = self.create_tempdir().full_path
    with open(os.path.join(root, "keep.txt"), "w", encoding="utf-8") as f:
      f.write("x")
    with self.assertRaisesRegex(phantom_files.PhantomError, "exists and is not an empty folder"):
      phantom_files.run(phantom_files.PhantomConfig(output=root, subjects=1, size=SMALL))
    self.assertEqual(os.listdir(root), ["keep.txt"])
    with self.assertRaisesRegex(phantom_files.PhantomError, r"--size .* got 32,32"):
      phantom_files.run(phantom_files.PhantomConfig(output=root + "-x", size=(32, 32)))

  def test_paired_nifti_conversion_pairs_t1_with_t2_of_one_subject_and_holds_out_patients(self):
    root = self.create_tempdir().full_path
    out = _write(root, subjects=4)
    data = os.path.join(root, "t1t2")
    m = _convert(f"paired:nifti:{out}/T1w,{out}/T2w", data, holdout=0.25, split_by="patient",
                 window="percentile:0.5,99.5")
    self.assertEqual(m["skipped"], [])
    self.assertEqual(sorted(m["pairs"]), [f"sub-0{i}" for i in range(1, 5)])
    for pid, pair in m["pairs"].items():
      self.assertEqual(pair, {"A": f"A/{pid}/anat/{pid}_T1w", "B": f"B/{pid}/anat/{pid}_T2w"})
    # Each side's BIDS suffix, for pipeline.translate to name its outputs by.
    self.assertEqual(m["medical"]["bids_suffix"], {"A": "T1w", "B": "T2w"})
    self.assertEqual(m["holdout"]["groups"], {"train": 3, "test": 1})
    (held_out,) = m["holdout"]["test_groups"]
    test = _records(data, m, "test")
    self.assertLen(test, SMALL[2])
    self.assertEqual({k.split("/")[0] for k in test}, {held_out})
    # Each record holds slice k of that subject's T1w (A) and T2w (B), windowed.
    index = int(held_out[-2:])
    subject = phantom.make_subject(0, index, SMALL)
    for side, contrast in (("A", "T1w"), ("B", "T2w")):
      volume_id = m["pairs"][held_out][side]
      window = window_lib.Window.from_json(m["series"][volume_id]["window"])
      slices = nifti.volume_to_slices(subject.images[contrast].astype(np.float32), "axial")
      for k in (0, SMALL[2] // 2):
        record = test[f"{held_out}/{k:04d}"][f"image_{side.lower()}"]
        self.assertAllEqual(record[..., 0], window.to_codes(slices[k]), f"{contrast} {k}")


class DicomSeriesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.out = _write(cls.root, fmt="dicom", subjects=3, seed=5)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_geometry_and_values_agree_with_the_nifti_volume_by_hand(self):
    subject = phantom.make_subject(5, 2, SMALL)
    inverse = np.linalg.inv(subject.affine)
    for contrast in phantom.CONTRASTS:
      folder = os.path.join(self.out, contrast, "sub-02")
      self.assertLen(os.listdir(folder), SMALL[2])
      for k in (0, 7, SMALL[2] - 1):
        ds = pydicom.dcmread(os.path.join(folder, f"IM{k + 1:04d}.dcm"))
        self.assertEqual((ds.PatientID, str(ds.PatientName)), ("PHANTOM-02", "PHANTOM^02"))
        self.assertEqual(ds.PatientBirthDate, "")
        self.assertEqual(ds.Modality, "CT" if contrast == "CT" else "MR")
        values = dicom.slice_values(dicom.SliceRef(ds.filename))  # Modality units.
        ipp = np.array(ds.ImagePositionPatient, float)
        row_dir = np.array(ds.ImageOrientationPatient[:3], float)
        col_dir = np.array(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        for i, j in ((0, 0), (5, 20), (16, 16), (31, 3)):
          lps = ipp + j * dc * row_dir + i * dr * col_dir
          ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
          voxel = inverse @ ras
          self.assertAllClose(voxel[:3], np.round(voxel[:3]), atol=1e-6)
          x, y, z = (int(v) for v in np.round(voxel[:3]))
          self.assertEqual(z, k)
          self.assertEqual(values[i, j], subject.images[contrast][x, y, z],
                           f"{contrast} slice {k} pixel {i},{j}")

  def test_the_dicom_reader_places_each_series_where_the_nifti_affine_does(self):
    # dicom.series_affine maps (column, row, slice) to RAS+; the series'
    # pixel [i, j] of slice k is voxel [X-1-j, Y-1-i, k] of the NIfTI.
    nx, ny, _ = SMALL
    flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    expected = phantom.make_subject(5, 1, SMALL).affine @ flip
    found = dicom.scan(os.path.join(self.out, "T2w", "sub-01"),
                       pseudonyms.Pseudonym(pseudonyms.new_salt()))
    (volume,) = found.volumes
    self.assertEqual(volume.num_slices, SMALL[2])
    self.assertAllClose(dicom.series_affine(volume), expected, atol=1e-6)

  def test_dicom_source_keeps_each_subject_one_patient_across_its_three_series(self):
    data = os.path.join(self.root, "all-tfr")
    m = _convert(f"dicom:{self.out}", data, holdout=0.34, split_by="patient", image_size=16)
    self.assertLen(m["series"], 9)
    by_patient = {}
    for entry in m["series"].values():
      by_patient.setdefault(entry["patient"], set()).add(entry["modality"])
    self.assertLen(by_patient, 3)
    for modalities in by_patient.values():
      self.assertEqual(modalities, {"MR", "CT"})
    self.assertEqual(m["holdout"]["groups"], {"train": 2, "test": 1})
    self.assertEqual(m["splits"]["test"]["num_examples"], 3 * SMALL[2])
    self.assertNotIn("PHANTOM", json.dumps(m))  # Pseudonyms only.

  def test_paired_dicom_series_pair_by_subject_folder(self):
    data = os.path.join(self.root, "pairs-tfr")
    m = _convert(f"paired:dicom:{self.out}/T1w,{self.out}/CT", data, window="auto",
                 image_size=16)
    self.assertLen(m["pairs"], 3)
    self.assertEqual(m["skipped"], [])
    sides = {entry["side"]: entry["modality"] for entry in m["series"].values()}
    self.assertEqual(sides, {"A": "MR", "B": "CT"})


class BinaryFlagsTest(tf.test.TestCase):

  def test_flags_build_the_config(self):
    fv = flags.FlagValues()
    pipeline_flags.define_config_flags(phantom_files.PhantomConfig, fv)
    fv(["prog", "--output=/x", "--subjects=5", "--size=32,32,24", "--format=dicom"])
    config = pipeline_flags.config_from_flags(phantom_files.PhantomConfig, fv)
    self.assertEqual(config, phantom_files.PhantomConfig(
        output="/x", subjects=5, seed=0, size=(32, 32, 24), format="dicom"))


if __name__ == "__main__":
  tf.test.main()
