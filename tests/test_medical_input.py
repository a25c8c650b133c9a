"""DICOM and NIfTI in: conversion of the real test files that the pydicom and
nibabel wheels ship (found through the installed packages, never copied into
the repository), windows, patient-level splits and privacy."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input import cache
from input import convert
from input import images
from input.medical import dicom
from input.medical import nifti
from input.medical import pseudonyms
from input.medical import window as window_lib
from tests import helpers

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
# Patient-identifying values in the test files (checked against every output byte).
IDENTIFIERS = ("CompressedSamples^CT1", "CompressedSamples^MR1", "1CT1", "4MR1")


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  kwargs.setdefault("min_shards", 2)
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _records(out_dir, manifest, split="train"):
  """{key: {feature: uint array}} of a converted split, from the raw bytes."""
  feats = manifest["features"]
  out = {}
  for shard in manifest["splits"][split]["shards"]:
    for raw in tf.data.TFRecordDataset(os.path.join(out_dir, shard["file"])):
      ex = tf.train.Example.FromString(raw.numpy()).features.feature
      key = ex["key"].bytes_list.value[0].decode()
      out[key] = {name: np.frombuffer(ex[name].bytes_list.value[0],
                                      np.dtype(f["dtype"]).newbyteorder("<")).reshape(f["shape"])
                  for name, f in feats.items()}
  return out


def _copy(name, folder, rename=None):
  os.makedirs(folder, exist_ok=True)
  dst = os.path.join(folder, rename or name)
  shutil.copy(get_testdata_file(name), dst)
  return dst


def _series(folder, n_slices, patient_id, series_uid, z_order=None, fill=None, name="s"):
  """Writes a series of CT_small copies; slice k at z = z_order[k], pixels = fill(k)."""
  os.makedirs(folder, exist_ok=True)
  base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  z_order = list(range(n_slices)) if z_order is None else z_order
  for k in range(n_slices):
    ds = base.copy()
    ds.PatientID = patient_id
    ds.PatientName = f"Doe^{patient_id}"
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImagePositionPatient = [0.0, 0.0, float(z_order[k])]
    ds.InstanceNumber = n_slices - k  # Disagrees with z: position must win.
    if fill is not None:
      arr = np.full((ds.Rows, ds.Columns), fill(k), np.int16)
      ds.PixelData = arr.tobytes()
    ds.save_as(os.path.join(folder, f"{name}{k:03d}"))  # No extension.


class DicomReadTest(tf.test.TestCase):

  def test_variants_decode_to_the_same_values(self):
    ref = dicom.slice_values(dicom.SliceRef(get_testdata_file("MR_small.dcm")))
    for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm"):
      self.assertAllEqual(dicom.slice_values(dicom.SliceRef(get_testdata_file(name))), ref,
                          msg=name)
    raw = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    self.assertAllEqual(ref, raw.astype(np.float32))  # MR_small has no rescale.

  def test_monochrome1_is_inverted_within_the_stored_range(self):
    folder = self.create_tempdir().full_path
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = os.path.join(folder, "m1.dcm")
    ds.save_as(path)
    bits, signed = int(ds.BitsStored), int(ds.PixelRepresentation)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    expected = (lo + hi) - ds.pixel_array.astype(np.float64)
    self.assertAllEqual(dicom.slice_values(dicom.SliceRef(path)), expected.astype(np.float32))

  def test_broken_and_undecodable_files_name_their_reason(self):
    with self.assertRaisesRegex(images.BadImageError, "truncated"):
      dicom.slice_values(dicom.SliceRef(get_testdata_file("MR_truncated.dcm")))
    with self.assertRaisesRegex(images.BadImageError, "install pylibjpeg-libjpeg"):
      dicom.slice_values(dicom.SliceRef(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")))

  def test_slices_ordered_by_position_along_the_normal(self):
    folder = self.create_tempdir().full_path
    z = [4.0, -2.0, 10.0, 0.0, 7.5]
    _series(folder, 5, "P1", "1.2.3.4", z_order=z, fill=lambda k: int(z[k] * 10))
    vols, skipped, _, _ = dicom.scan(folder, pseudonyms.Pseudonym("0" * 64))
    self.assertEqual(skipped, [])
    self.assertLen(vols, 1)
    self.assertEqual(vols[0].info["slice_order"], "ImagePositionPatient")
    values = [float(dicom.slice_values(r)[0, 0]) for r in vols[0].refs]
    # CT_small's rescale: HU = raw - 1024.
    self.assertEqual(values, [v * 10 - 1024 for v in sorted(z)])

  def test_multi_frame_file_gives_one_slice_per_frame(self):
    folder = self.create_tempdir().full_path
    _copy("rtdose.dcm", folder)
    vols, _, _, _ = dicom.scan(folder, pseudonyms.Pseudonym("0" * 64))
    self.assertLen(vols, 1)
    self.assertEqual(vols[0].num_slices, 15)
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    frames = ds.pixel_array.astype(np.float64)  # No rescale: DoseGridScaling is not one.
    got = np.stack([dicom.slice_values(r) for r in vols[0].refs])
    self.assertAllClose(got / got.max(), frames / frames.max(), rtol=1e-6)


class DicomConvertTest(tf.test.TestCase):

  def test_ct_hounsfield_units_round_trip_within_one_window_step(self):
    folder = self.create_tempdir().full_path
    _copy("CT_small.dcm", folder, "ct")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    for spec in ("auto", "40,80", "ct_lung"):
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"dicom:{folder}", out, window=spec)
      self.assertEqual(m["features"]["image"]["dtype"], "uint16")
      (sid, entry), = m["series"].items()
      self.assertEqual(entry["modality"], "CT")
      w = window_lib.Window.from_json(entry["window"])
      self.assertEqual(w.units, "HU")
      self.assertEqual(m["window"]["image"]["low"], w.low)
      recs = _records(out, m)
      self.assertEqual(list(recs), [f"{sid}/0000"])
      codes = recs[f"{sid}/0000"]["image"][..., 0]
      back = w.from_codes(codes, 16)
      step = (w.high - w.low) / 65535
      self.assertAllClose(back, np.clip(hu, w.low, w.high), atol=step / 2 + 1e-3, msg=spec)
      # One pixel computed by hand, independently of the window code.
      r, c = 64, 40
      expected = np.clip(round((hu[r, c] - w.low) / (w.high - w.low) * 65535), 0, 65535)
      self.assertEqual(int(codes[r, c]), int(expected), msg=spec)
    self.assertEqual((w.low, w.high), (-1350.0, 150.0))  # ct_lung: center -600, width 1500.

  def test_folder_of_test_files_converts_and_lists_what_it_skips(self):
    folder = self.create_tempdir().full_path
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "rtplan.dcm", "README.txt"):
      _copy(name, os.path.join(folder, "sub") if name.startswith("MR") else folder)
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"dicom:{folder}", out, image_size=32, max_skip_fraction=1.0)
    reasons = {s["key"].split(" ")[0]: s["reason"] for s in m["skipped"]}
    joined = " ".join(reasons.values())
    self.assertIn("truncated file", joined)
    self.assertIn("(file sub/MR_truncated.dcm)", joined)
    self.assertIn("install pylibjpeg-libjpeg", joined)
    self.assertLen(m["skipped"], 2)
    self.assertEqual([n["key"] for n in m["non_image_dicom"]], ["rtplan.dcm"])
    self.assertEqual(m["ignored_non_dicom_files"], 1)
    self.assertEqual(m["splits"]["train"]["num_examples"], 2)  # CT_small and MR_small.

  def test_no_patient_identifier_in_any_output_byte(self):
    folder = self.create_tempdir().full_path
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_truncated.dcm"):
      _copy(name, folder)
    parent = self.create_tempdir().full_path
    out = os.path.join(parent, "out")
    env = helpers.subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.convert", f"--source=dicom:{folder}", f"--output={out}",
         "--holdout=0.5", "--split_by=series", "--max_skip_fraction=1", "--num_workers=2",
         "--image_size=32",
         "-v", "1"], env=env, cwd=helpers.REPO_ROOT, capture_output=True, text=True,
        check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    blobs = [proc.stdout.encode(), proc.stderr.encode()]
    for path in glob.glob(os.path.join(out, "**"), recursive=True) + glob.glob(
        os.path.join(out, ".convert", "*")):
      if os.path.isfile(path):
        with open(path, "rb") as f:
          blobs.append(f.read())
    self.assertGreater(len(blobs), 6)
    for value in IDENTIFIERS:
      for blob in blobs:
        self.assertNotIn(value.encode(), blob, msg=value)
    with open(os.path.join(out, ".convert", pseudonyms.SALT_NAME), encoding="utf-8") as f:
      salt = f.read().strip()
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
      self.assertNotIn(salt, f.read())

  def test_split_by_patient_never_shares_a_patient(self):
    folder = self.create_tempdir().full_path
    uid = 0
    for p in range(6):
      for s in range(2):  # Two series per patient.
        uid += 1
        _series(os.path.join(folder, f"study{uid:02d}"), 3, f"PAT{p}", f"1.2.826.0.{uid}")
    for split_by, groups in (("patient", 6), ("series", 12)):
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"dicom:{folder}", out, holdout=0.34, split_by=split_by, seed=3)
      self.assertEqual(m["holdout"]["split_by"], split_by)
      self.assertEqual(sum(m["holdout"]["groups"].values()), groups)
      patients = {}
      for split in ("train", "test"):
        self.assertGreater(m["splits"][split]["num_examples"], 0)
        for key in _records(out, m, split):
          series = key.split("/")[0]
          patients.setdefault(split, set()).add(m["series"][series]["patient"])
      if split_by == "patient":
        self.assertEqual(patients["train"] & patients["test"], set())
        self.assertEqual(len(patients["train"] | patients["test"]), 6)
        self.assertEqual(m["holdout"]["groups"], {"train": 4, "test": 2})
      else:
        self.assertEqual(m["holdout"]["groups"], {"train": 8, "test": 4})

  def test_min_foreground_skips_empty_slices_and_counts_them(self):
    folder = self.create_tempdir().full_path
    # Raw 0 is -1024 HU (air); raw 1100 is +76 HU.
    _series(folder, 5, "P", "1.2.3", fill=lambda k: 0 if k in (0, 4) else 1100)
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"dicom:{folder}", out, window="ct_brain", min_foreground=0.5)
    self.assertEqual(m["splits"]["train"]["num_examples"], 3)
    self.assertEqual(m["below_min_foreground"], 2)
    self.assertEqual(m["skipped"], [])

  def test_unpaired_dicom_domains(self):
    a, b = self.create_tempdir().full_path, self.create_tempdir().full_path
    _series(os.path.join(a, "x"), 3, "P1", "1.2.1")
    _series(os.path.join(b, "y"), 4, "P2", "1.2.2")
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"unpaired:dicom:{a},{b}", out)
    self.assertEqual({s: v["num_examples"] for s, v in m["splits"].items()},
                     {"trainA": 3, "trainB": 4})
    self.assertEqual(sorted(m["window"]), ["A", "B"])


class NiftiTest(tf.test.TestCase):

  def test_slice_counts_along_each_axis_equal_the_canonical_shape(self):
    path = os.path.join(NIB_DATA, "anatomical.nii")
    img = nib.load(path)
    canon = nib.as_closest_canonical(img)
    self.assertEqual(nib.aff2axcodes(img.affine), ("L", "A", "S"))  # Reorientation matters.
    data = np.asarray(canon.dataobj, np.float32)
    for axis, a in nifti.AXES.items():
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"nifti:{path}", out, slice_axis=axis, window="percentile:0,100")
      self.assertEqual(m["splits"]["train"]["num_examples"], canon.shape[a], msg=axis)
      rows, cols = m["features"]["image"]["shape"][:2]
      plane = [canon.shape[i] for i in range(3) if i != a]
      self.assertEqual((rows, cols), (plane[1], plane[0]), msg=axis)
      # A slice's codes are the window of the canonical data's plane.
      w = window_lib.Window.from_json(m["series"]["anatomical"]["window"])
      self.assertEqual((w.low, w.high), (float(data.min()), float(data.max())))
      recs = _records(out, m)
      k = canon.shape[a] // 2
      expected = w.to_codes(np.flipud(np.take(data, k, axis=a).T), 16)
      self.assertAllEqual(recs[f"anatomical/{k:04d}"]["image"][..., 0], expected, msg=axis)

  def test_slices_to_volume_inverts_volume_to_slices(self):
    vol = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    for axis in nifti.AXES:
      self.assertAllEqual(nifti.slices_to_volume(nifti.volume_to_slices(vol, axis), axis), vol)

  def test_4d_volume_index(self):
    path = os.path.join(NIB_DATA, "example4d.nii.gz")
    for index, n in (("1", 24), ("all", 48)):
      out = os.path.join(self.create_tempdir().full_path, "out")
      m = _convert(f"nifti:{path}", out, volume_index=index)
      self.assertEqual(m["splits"]["train"]["num_examples"], n)
    with self.assertRaisesRegex(convert.ConvertError, "holds 2 volumes"):
      _convert(f"nifti:{path}", os.path.join(self.create_tempdir().full_path, "o"),
               volume_index="5")

  def test_paired_nifti_matched_by_name_and_mismatches_listed(self):
    a, b = self.create_tempdir().full_path, self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    for name, depth_b in (("s1", 4), ("s2", 4), ("s3", 5)):
      vol = rng.uniform(0, 100, size=(8, 8, 4)).astype(np.float32)
      nib.save(nib.Nifti1Image(vol, np.eye(4)), os.path.join(a, f"{name}.nii.gz"))
      vol_b = np.concatenate([100 - vol, vol[..., :1]], axis=-1)[..., :depth_b]
      nib.save(nib.Nifti1Image(vol_b, np.eye(4)), os.path.join(b, f"{name}.nii"))
    nib.save(nib.Nifti1Image(vol, np.eye(4)), os.path.join(a, "only_a.nii"))
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"paired:nifti:{a},{b}", out, max_skip_fraction=1.0,
                 window="percentile:0,100")
    self.assertEqual(m["kind"], "paired")
    self.assertEqual(m["splits"]["train"]["num_examples"], 8)
    reasons = {s["key"]: s["reason"] for s in m["skipped"]}
    self.assertIn("s3", reasons)
    self.assertIn("A has 4 slices", reasons["s3"])
    self.assertIn("A/only_a", reasons)
    self.assertEqual(sorted(m["pairs"]), ["s1", "s2"])
    recs = _records(out, m)
    self.assertEqual(m["pairs"]["s1"], {"A": "A/s1", "B": "B/s1"})
    wa = window_lib.Window.from_json(m["series"]["A/s1"]["window"])
    wb = window_lib.Window.from_json(m["series"]["B/s1"]["window"])
    ex = recs["s1/0002"]
    a_vals = wa.from_codes(ex["image_a"][..., 0])
    b_vals = wb.from_codes(ex["image_b"][..., 0])
    self.assertAllClose(a_vals + b_vals, np.full_like(a_vals, 100.0), atol=0.01)


class WindowTest(tf.test.TestCase):

  def test_parse(self):
    self.assertEqual(window_lib.parse("40,80"), window_lib.WindowSpec("fixed", 0.0, 80.0))
    self.assertEqual(window_lib.parse("ct_bone").low, 400 - 900)
    self.assertEqual(window_lib.parse("percentile:0.5,99.5"),
                     window_lib.WindowSpec("percentile", 0.5, 99.5))
    for bad in ("40", "40,0", "percentile:5,1", "ct_nose", "foo:1,2"):
      with self.assertRaises(window_lib.WindowError, msg=bad):
        window_lib.parse(bad)

  def test_codes_and_model_range(self):
    w = window_lib.Window(-100.0, 100.0)
    self.assertAllEqual(w.to_codes([-200, -100, 0, 100, 300], 16), [0, 0, 32768, 65535, 65535])
    self.assertAllEqual(w.to_codes([50], 8), [191])  # 150 / 200 * 255 = 191.25.
    self.assertAllClose(w.from_model([-1.0, 0.0, 1.0]), [-100.0, 0.0, 100.0])

  def test_percentile_window_is_per_volume(self):
    spec = window_lib.parse("percentile:0,100")
    w = window_lib.resolve(spec, np.arange(11.0), "MR")
    self.assertEqual((w.low, w.high, w.units), (0.0, 10.0, ""))
    auto_ct = window_lib.resolve(window_lib.parse("auto"), None, "CT")
    self.assertEqual((auto_ct.low, auto_ct.high, auto_ct.units), (-1024.0, 3071.0, "HU"))


class BadInputTest(tf.test.TestCase):

  def _cli(self, *args, block=None):
    code = "import runpy, sys\n"
    if block:
      code += f"sys.modules[{block!r}] = None\n"
    code += (f"sys.argv = ['pipeline.convert'] + {list(args)!r}\n"
             "runpy.run_module('pipeline.convert', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], env=helpers.subprocess_env(),
                          cwd=helpers.REPO_ROOT, capture_output=True, text=True, check=False)

  def test_without_the_extra_one_line_names_it(self):
    out = os.path.join(self.create_tempdir().full_path, "out")
    folder = self.create_tempdir().full_path
    proc = self._cli(f"--source=dicom:{folder}", f"--output={out}", block="pydicom")
    self.assertEqual(proc.returncode, 2, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertIn("gan-pipeline[medical]", lines[0])

  def test_bad_window_is_one_line(self):
    out = os.path.join(self.create_tempdir().full_path, "out")
    folder = self.create_tempdir().full_path
    proc = self._cli(f"--source=dicom:{folder}", f"--output={out}", "--window=40")
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertIn("--window=40", proc.stderr)
    self.assertLen([l for l in proc.stderr.strip().splitlines() if l.strip()], 1, proc.stderr)

  def test_undecodable_files_are_one_line_each_without_tracebacks(self):
    folder = self.create_tempdir().full_path
    for name in ("JPEG-lossy.dcm", "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm"):
      _copy(name, folder)
    out = os.path.join(self.create_tempdir().full_path, "out")
    proc = self._cli(f"--source=dicom:{folder}", f"--output={out}", "--max_skip_fraction=1",
                     "--num_workers=2", "--image_size=16")
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertNotIn("Traceback", proc.stderr)
    skipped = [l for l in proc.stderr.splitlines() if "] Skipped " in l]
    self.assertLen(skipped, 2, proc.stderr[-3000:])
    self.assertTrue(any("JPEG-lossy.dcm" in l for l in skipped), skipped)
    self.assertTrue(all("install pylibjpeg-libjpeg" in l for l in skipped), skipped)

  def test_max_image_pixels_raises_the_decompression_bomb_limit(self):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    folder = self.create_tempdir().full_path
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(os.path.join(folder, "big.png"))
    # Histology is often a 16-bit TIFF.
    Image.fromarray(np.zeros((30, 30), np.uint16)).save(os.path.join(folder, "big2.tif"))
    out = os.path.join(self.create_tempdir().full_path, "out")
    try:
      with self.assertRaises(convert.ConvertError):
        _convert(f"folder:{folder}", out, max_image_pixels=400, image_size=8, channels=1)
      m = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))
      self.assertIn("--max_image_pixels", m["skipped"][0]["reason"])
      m = _convert(f"folder:{folder}", os.path.join(self.create_tempdir().full_path, "o2"),
                   max_image_pixels=10_000, image_size=8, channels=1)
      self.assertEqual(m["splits"]["train"]["num_examples"], 2)
    finally:
      images.set_max_image_pixels(None)


class HoldoutAndCacheTest(tf.test.TestCase):

  def _folder(self, patients, per_patient, nested=True):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    root = self.create_tempdir().full_path
    for p in range(patients):
      for j in range(per_patient):
        folder = os.path.join(root, f"pat{p}") if nested else root
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.full((8, 8), 10 * p + j, np.uint8)).save(
            os.path.join(folder, f"p{p}_{j}.png"))
    return root

  def test_folder_split_by_patient_folder(self):
    root = self._folder(5, 3)
    out = os.path.join(self.create_tempdir().full_path, "out")
    m = _convert(f"folder:{root}", out, holdout=0.4, split_by="patient", labels="none")
    self.assertEqual(m["holdout"]["groups"], {"train": 3, "test": 2})
    folders = {split: {k.split("/")[0] for k in _records(out, m, split)}
               for split in ("train", "test")}
    self.assertEqual(folders["train"] & folders["test"], set())
    self.assertEqual(sorted(folders["test"]), sorted(m["holdout"]["test_groups"]))
    self.assertEqual(m["splits"]["test"]["num_examples"], 6)

  def test_files_directly_in_the_root_have_no_patient(self):
    root = self._folder(2, 2, nested=False)
    with self.assertRaisesRegex(convert.ConvertError, "--split_by=file"):
      _convert(f"folder:{root}", os.path.join(self.create_tempdir().full_path, "out"),
               holdout=0.5)
    m = _convert(f"folder:{root}", os.path.join(self.create_tempdir().full_path, "out"),
                 holdout=0.5, split_by="file")
    self.assertEqual((m["splits"]["train"]["num_examples"], m["splits"]["test"]["num_examples"]),
                     (2, 2))

  def test_dicom_source_through_the_data_cache(self):
    folder = self.create_tempdir().full_path
    _series(folder, 3, "P", "1.2.3")
    cache_dir = self.create_tempdir().full_path
    first = cache.ensure_converted(f"dicom:{folder}", cache_dir=cache_dir)
    self.assertEqual(cache.ensure_converted(f"dicom:{folder}", cache_dir=cache_dir), first)
    with open(os.path.join(first, "manifest.json"), encoding="utf-8") as f:
      m = json.load(f)
    self.assertEqual(m["splits"]["train"]["num_examples"], 3)
    self.assertEqual(m["features"]["image"]["dtype"], "uint16")
