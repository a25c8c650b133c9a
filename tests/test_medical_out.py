"""Medical data out: the run directory knows the data's window; samples as
16-bit PNG and NIfTI map back through it; NIfTI volumes translate with their
shape and affine kept; DICOM series translate without a trace of the patient;
export_info.json records the window.

The data are made here: small NIfTI volumes with a permuted, left-right
flipped affine (B = 200 - A), converted by `input.convert`; the DICOM files
are pydicom's own test files, found through the installed package (copied
into temporary folders only)."""

import dataclasses
import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from algorithms import base
from inference import export
from inference import sampling
from inference import translate
from inference import volumes
from input import convert
from input import images
from input.medical import nifti
from input.medical import window as window_lib
from tests import helpers
from training import config as config_lib
from training import data as data_lib
from training import run_dir
from training import trainer

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

# Voxel axis i -> x flipped (L), j -> z (S), k -> y (A): axis codes L, S, A.
AFFINE = np.array([[-2.0, 0.0, 0.0, 10.0], [0.0, 0.0, 1.5, -5.0], [0.0, 1.0, 0.0, 3.0],
                   [0.0, 0.0, 0.0, 1.0]])
DICOM_FILES = ("CT_small.dcm", "MR_small.dcm")
# The image run's fixed window: center -50, width 100.
LOW, HIGH = -100.0, 0.0


def _volume(rng, shape, low, high):
  """A smooth random volume (so that percentiles are not at the extremes)."""
  x = rng.uniform(low, high, shape).astype(np.float32)
  return (x + np.roll(x, 1, axis=0)) / 2


def _save(path, data, affine=AFFINE):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  nib.save(nib.Nifti1Image(data, affine), path)
  return path


def _tiny(algo, data, model_dir, **kwargs):
  """The smallest configs of tests/test_translation.py and tests/test_train.py."""
  defaults = dict(algo=algo, data=data, model_dir=model_dir, global_batch_size=2,
                  base_channels=4, log_every=10, sample_every=1000, checkpoint_every=1000,
                  shuffle_buffer=16, strategy="mirrored", deterministic=True, cpu_replicas=1,
                  fresh=True)
  defaults.update(kwargs)
  return config_lib.TrainConfig(**defaults)


def _all_files(root):
  return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]


def _dicom_series(folder, size, spacing, num_slices=2):
  """A CT series of `num_slices` size x size slices with PixelSpacing `spacing`."""
  os.makedirs(folder, exist_ok=True)
  template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  uid = pydicom.uid.generate_uid()
  rng = np.random.default_rng(size)
  for k in range(num_slices):
    ds = template.copy()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
    ds.ImagePositionPatient = [0.0, 0.0, float(k)]
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = list(spacing)
    ds.PixelData = rng.integers(0, 200, (size, size), dtype=np.int16).tobytes()
    ds.save_as(os.path.join(folder, f"{k:03d}.dcm"))


def _assert_sample_header(test, img, zooms):
  """A samples stack: `zooms`, no claimed space, axis 3 described as samples."""
  header = img.header
  test.assertAllClose(header.get_zooms(), zooms, atol=1e-5)
  test.assertEqual((int(header["qform_code"]), int(header["sform_code"])), (0, 0))
  test.assertEqual(header["descrip"].item().decode(), nifti.SAMPLES_DESCRIPTION)
  test.assertEqual(header.get_xyzt_units()[0], "mm")


class MedicalOutTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "medical_out")
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(3):  # Canonical 32 x 32 x 4: 4 axial slices of 32 x 32.
      a = _volume(rng, (32, 4, 32), 0.0, 100.0)
      _save(os.path.join(root, "A", f"v{i}.nii.gz"), a)
      _save(os.path.join(root, "B", f"v{i}.nii.gz"), 200.0 - a)
      _save(os.path.join(root, "I", f"v{i}.nii.gz"), _volume(rng, (16, 3, 16), -120.0, 20.0))
    # The PatchGAN of pix2pix needs at least 24 pixels: 32-pixel slices.
    cls.paired_manifest = convert.run(convert.ConvertConfig(
        source=f"paired:nifti:{root}/A,{root}/B", output=os.path.join(root, "paired"),
        image_size=32, num_workers=1))
    cls.pix2pix_dir = os.path.join(root, "pix2pix")
    cls.pix2pix = trainer.run(_tiny("pix2pix", os.path.join(root, "paired"), cls.pix2pix_dir,
                                    train_steps=20))
    convert.run(convert.ConvertConfig(source=f"nifti:{root}/I", output=os.path.join(root, "ct"),
                                      image_size=16, num_workers=1, window="-50,100"))
    cls.dcgan_dir = os.path.join(root, "dcgan")
    trainer.run(_tiny("dcgan", os.path.join(root, "ct"), cls.dcgan_dir, z_dim=8,
                      train_steps=1, num_samples=4))

  def _without_window(self, model_dir):
    """A copy of a run directory as written before DataInfo had a window."""
    old = os.path.join(self.create_tempdir().full_path, "old_run")
    shutil.copytree(model_dir, old)
    path = os.path.join(old, run_dir.DATA_INFO_NAME)
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    self.assertIn("window", info)
    del info["window"], info["medical"], info["pixel_spacing"]
    with open(path, "w", encoding="utf-8") as f:
      json.dump(info, f)
    return old

  # --- The run directory ---

  def test_run_dir_knows_the_window(self):
    _, data = run_dir.load_run(self.pix2pix_dir)
    self.assertEqual(data.window, self.paired_manifest["window"])
    self.assertEqual(set(data.window), {"A", "B"})
    # Axial slices of the volumes (AFFINE): rows along y (1.5 mm), columns x (2 mm).
    self.assertEqual(data.pixel_spacing, {"A": [1.5, 2.0], "B": [1.5, 2.0]})
    self.assertEqual(data.medical, {"format": "nifti", "window": "auto", "slice_axis": "axial",
                                    "volume_index": "0", "patient_from": None})
    _, data = run_dir.load_run(self.dcgan_dir)
    self.assertEqual((data.window["image"]["low"], data.window["image"]["high"]), (LOW, HIGH))
    self.assertEqual(data.pixel_spacing, {"image": [1.5, 2.0]})
    # Old run directories load, without a window.
    _, data = run_dir.load_run(self._without_window(self.dcgan_dir))
    self.assertEqual((data.window, data.medical, data.pixel_spacing), (None, None, None))
    self.assertEqual(data.shape, (16, 16, 1))

  # --- pipeline.sample --format ---

  def test_samples_as_png16_and_nifti_map_back_through_the_window(self):
    tmp = self.create_tempdir().full_path
    algorithm, _ = sampling.load_algorithm(self.dcgan_dir)
    x, _ = sampling.sample(algorithm, 5, seed=2)
    png_dir, nii_dir = os.path.join(tmp, "png16"), os.path.join(tmp, "nifti")
    cfg = dict(model_dir=self.dcgan_dir, num=5, seed=2)
    sampling.run(sampling.SampleConfig(output=png_dir, format="png16", **cfg))
    sampling.run(sampling.SampleConfig(output=nii_dir, format="nifti", **cfg))
    # png16: code = round((x + 1) / 2 * 65535), one 16-bit grayscale PNG each.
    self.assertEqual(sorted(os.listdir(png_dir)),
                     [f"{i:05d}.png" for i in range(5)] + ["window.json"])
    for i in range(5):
      got = images.read_file(os.path.join(png_dir, f"{i:05d}.png"))
      self.assertEqual((got.dtype, got.shape), (np.uint16, (16, 16, 1)))
      expected = np.round((np.clip(x[i], -1, 1) + 1) / 2 * 65535)
      self.assertAllClose(got.astype(np.float64), expected, atol=1.0)
    # nifti: one axial stack [W, H, N]; voxel (c, H-1-r, i) = sample i's (r, c),
    # in modality units: low + (x + 1) / 2 * (high - low).
    img = nib.load(os.path.join(nii_dir, volumes.STACK_NAME))
    self.assertEqual(img.shape, (16, 16, 5))
    # The training volumes' canonical zooms are x 2, y 1.5, z 1 mm (AFFINE):
    # axial slices of 1.5 mm rows and 2 mm columns, kept at 16 x 16.
    _assert_sample_header(self, img, (2.0, 1.5, 1.0))
    raw = np.asarray(img.dataobj, np.float64)[:, ::-1, :].transpose(2, 1, 0)
    self.assertAllClose(raw, LOW + (x[..., 0] + 1) / 2 * (HIGH - LOW), atol=1e-3)
    self.assertAllGreaterEqual(raw, LOW)
    self.assertAllLessEqual(raw, HIGH)
    for folder, fmt in ((png_dir, "png16"), (nii_dir, "nifti")):
      with open(os.path.join(folder, volumes.WINDOW_NAME), encoding="utf-8") as f:
        record = json.load(f)
      self.assertEqual((record["format"], record["domain"]), (fmt, "image"))
      self.assertEqual((record["window"]["low"], record["window"]["high"]), (LOW, HIGH))
      self.assertEqual(record["medical"]["window"], "-50,100")

  def test_samples_without_a_window(self):
    old = self._without_window(self.dcgan_dir)
    out = os.path.join(self.create_tempdir().full_path, "png16")
    sampling.run(sampling.SampleConfig(model_dir=old, output=out, num=2, format="png16"))
    with open(os.path.join(out, volumes.WINDOW_NAME), encoding="utf-8") as f:
      record = json.load(f)
    self.assertIsNone(record["window"])
    self.assertIn("no window", record["note"])
    self.assertEqual(images.read_file(os.path.join(out, "00001.png")).dtype, np.uint16)
    # nifti: refused in one line, by the binary too.
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.sample", f"--model_dir={old}", "--format=nifti",
         f"--output={os.path.join(out, 'n')}"], env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 2, done.stderr)
    self.assertRegex(done.stderr.strip().splitlines()[-1],
                     r"^sample: error: --format=nifti needs the data's window .*png16$")
    self.assertFalse(os.path.exists(os.path.join(out, "n")))

  def test_sample_formats_refused(self):
    window = {"image": {"low": 0.0, "high": 1.0}}
    rgb = base.DataInfo("image", (16, 16, 3), 0, "x", window=window)
    with self.assertRaisesRegex(ValueError, r"^--format=nifti writes 1-channel samples; this "
                                r"run's data has 3 channels \(use --format=png16\)$"):
      volumes.check_sample_format("nifti", rgb)
    volumes.check_sample_format("png16", rgb)  # RGB 16-bit PNGs are fine.
    with self.assertRaisesRegex(ValueError, "writes images; this run's data are 2-D vectors"):
      volumes.check_sample_format("png16", base.DataInfo("vector", (2,), 0, "ring"))
    with self.assertRaisesRegex(ValueError, "writes a directory"):
      sampling.SampleConfig(model_dir="m", output="x.npz", format="png16").validate()

  def test_samples_of_runs_that_predate_the_recorded_spacing(self):
    algorithm, _ = sampling.load_algorithm(self.dcgan_dir)
    old = dataclasses.replace(algorithm.data, pixel_spacing=None)
    ct = os.path.join(self.root, "ct")  # The run's --data: its manifest has the spacing.
    self.assertEqual(algorithm.config.data, ct)
    with self.assertLogs("absl", "INFO") as logs:
      self.assertEqual(volumes.sample_spacing(old, ct), (1.5, 2.0))
    self.assertIn(f"1.5 x 2 mm pixels (rows x columns), the training slices' in-plane spacing "
                  f"after resizing (from the manifest of {ct})", logs.output[-1])
    with self.assertLogs("absl", "INFO") as logs:
      self.assertEqual(volumes.sample_spacing(old, "dicom:/moved"), (1.0, 1.0))
    self.assertIn("1 x 1 mm pixels; the training slices' pixel spacing is not known",
                  logs.output[-1])

  # --- pipeline.translate ---

  def test_source_window_golden(self):
    values = np.arange(1001, dtype=np.float64)  # Percentile p of 0..1000 is 10 p.
    manifest = window_lib.Window(5.0, 7.0, "", "fixed")
    parse = window_lib.parse
    got = volumes.source_window(parse("percentile:1,90"), manifest, values)
    self.assertAllClose((got.low, got.high), (10.0, 900.0))
    got = volumes.source_window(parse("auto"), manifest, values)  # Not CT: 0.5-99.5.
    self.assertAllClose((got.low, got.high), (5.0, 995.0))
    self.assertIs(volumes.source_window(parse("40,80"), manifest, values), manifest)
    ct = window_lib.Window(-1024.0, 3071.0, "HU", "ct_full")
    self.assertIs(volumes.source_window(parse("auto"), ct, values), ct)
    # Into the model's range through the 16-bit codes.
    w = window_lib.Window(0.0, 100.0)
    self.assertAllClose(volumes.to_model(np.array([-5.0, 0.0, 50.0, 100.0, 200.0]), w),
                        [-1.0, -1.0, 2 * 32768 / 65535 - 1, 1.0, 1.0])

  def test_input_format(self):
    tmp = self.create_tempdir().full_path
    nii = _save(os.path.join(tmp, "n", "sub", "x.nii"), np.zeros((4, 4, 4), np.float32))
    self.assertEqual(volumes.input_format(nii), "nifti")
    self.assertEqual(volumes.input_format(os.path.join(tmp, "n")), "nifti")
    dcm = os.path.join(tmp, "d")
    os.makedirs(dcm)
    shutil.copy(get_testdata_file("CT_small.dcm"), os.path.join(dcm, "IM0001"))  # No extension.
    self.assertEqual(volumes.input_format(dcm), "dicom")
    helpers.save(os.path.join(tmp, "p", "a.png"), helpers.solid(4, 4, 9))
    self.assertEqual(volumes.input_format(os.path.join(tmp, "p")), "images")
    with self.assertRaisesRegex(ValueError, "is a file but not NIfTI"):
      volumes.input_format(os.path.join(tmp, "p", "a.png"))

  def test_translate_nifti_keeps_shape_affine_and_maps_windows(self):
    tmp = self.create_tempdir().full_path
    rng = np.random.default_rng(5)
    src = os.path.join(tmp, "in")
    # Another range than the training data's: the percentile window is this volume's.
    first = _save(os.path.join(src, "first.nii.gz"), _volume(rng, (32, 4, 32), 0.0, 300.0))
    # Another in-plane shape (28 rows x 20 columns, resized) and affine.
    other_affine = AFFINE.copy()
    other_affine[:3, 3] = [1.0, 2.0, 3.0]
    other = _save(os.path.join(src, "sub", "other.nii"), _volume(rng, (20, 5, 28), 0.0, 50.0),
                  other_affine)
    out = os.path.join(tmp, "out")
    result = translate.run(translate.TranslateConfig(self.pix2pix_dir, src, out))
    self.assertEqual(result.kind, "nifti")
    self.assertEqual(result.skipped, [])
    self.assertEqual(sorted(os.path.relpath(p, out) for p in result.written),
                     ["first.nii.gz", os.path.join("sub", "other.nii")])
    target = self.paired_manifest["window"]["B"]
    for path in (first, other):
      a, b = nib.load(path), nib.load(os.path.join(out, os.path.relpath(path, src)))
      self.assertEqual(b.shape, a.shape)
      self.assertTrue(np.array_equal(b.affine, a.affine), (b.affine, a.affine))
      self.assertEqual(nib.aff2axcodes(b.affine), ("L", "S", "A"))
      data = np.asarray(b.dataobj)
      self.assertTrue(np.all(np.isfinite(data)))
      self.assertAllGreaterEqual(data, target["low"] - 1e-3)
      self.assertAllLessEqual(data, target["high"] + 1e-3)
    # Golden: slice by slice, the 0.5-99.5 percentile window of this volume,
    # 16-bit codes, the generator, then B's window.
    values = nifti.read_slices(first, "axial")[0][0]  # [4, 32, 32]
    lo, hi = np.percentile(values.astype(np.float64), [0.5, 99.5])
    codes = np.clip(np.round((values - lo) * 65535 / (hi - lo)), 0, 65535)
    x = (codes / 65535 * 2 - 1).astype(np.float32)[..., None]
    y = self.pix2pix.algorithm.translate(tf.constant(x)).numpy()[..., 0]
    expected = target["low"] + (y + 1) / 2 * (target["high"] - target["low"])
    got = nifti.read_slices(os.path.join(out, "first.nii.gz"), "axial")[0][0]
    self.assertAllClose(got, expected, atol=1e-3)
    with open(os.path.join(out, volumes.WINDOW_NAME), encoding="utf-8") as f:
      record = json.load(f)
    self.assertAllClose((record["inputs"]["first.nii.gz"]["low"],
                         record["inputs"]["first.nii.gz"]["high"]), (lo, hi))
    self.assertEqual(record["target"], target)
    # --format=png16: a folder of 16-bit slices, the codes of B's window.
    png = os.path.join(tmp, "png")
    translate.run(translate.TranslateConfig(self.pix2pix_dir, first, png, format="png16"))
    self.assertEqual(sorted(os.listdir(os.path.join(png, "first"))),
                     [f"{k:04d}.png" for k in range(4)])
    slice2 = images.read_file(os.path.join(png, "first", "0002.png"))
    self.assertEqual((slice2.dtype, slice2.shape), (np.uint16, (32, 32, 1)))
    self.assertAllClose(slice2[..., 0].astype(np.float64), np.round((y[2] + 1) / 2 * 65535),
                        atol=1.0)

  def test_translate_refusals(self):
    tmp = self.create_tempdir().full_path
    nii = _save(os.path.join(tmp, "in", "x.nii.gz"), np.zeros((32, 2, 32), np.float32))
    with self.assertRaisesRegex(ValueError, "must not be the folder of --input"):
      translate.run(translate.TranslateConfig(self.pix2pix_dir, nii, os.path.join(tmp, "in")))
    with self.assertRaisesRegex(ValueError, "this run's data has no window for domain A"):
      translate.run(translate.TranslateConfig(self._without_window(self.pix2pix_dir), nii,
                                              os.path.join(tmp, "out")))

  def test_dicom_translation_leaves_no_patient_data(self):
    tmp = self.create_tempdir().full_path
    src = os.path.join(tmp, "dicom")
    identifiers, spacing = [], {}
    for i, name in enumerate(DICOM_FILES):
      path = get_testdata_file(name)
      ds = pydicom.dcmread(path, stop_before_pixels=True)
      identifiers += [str(ds.PatientName), str(ds.PatientID)]
      # One slice: its step is SpacingBetweenSlices, else SliceThickness (nibabel's rule).
      step = ds.get("SpacingBetweenSlices") or ds.SliceThickness
      spacing[ds.Modality] = [float(v) for v in ds.PixelSpacing] + [float(step)]
      os.makedirs(os.path.join(src, str(ds.PatientName)))  # A folder named after the patient.
      shutil.copy(path, os.path.join(src, str(ds.PatientName), f"{i}.dcm"))
    self.assertNotIn("", identifiers)
    for fmt in ("nifti", "png16"):
      out = os.path.join(tmp, fmt)
      result = translate.run(translate.TranslateConfig(self.pix2pix_dir, src, out, format=fmt))
      self.assertEqual((result.kind, result.skipped), ("dicom", []))
      files = _all_files(out)
      for path in files:
        with open(path, "rb") as f:
          data = f.read()
        if path.endswith(".gz"):
          data = gzip.decompress(data)
        self.assertNotEqual(data[128:132], b"DICM", path)
        for value in identifiers:
          self.assertNotIn(value.encode(), data, path)
          self.assertNotIn(value, os.path.relpath(path, out))
      names = sorted(os.path.relpath(p, out) for p in files)
      if fmt == "nifti":
        series = [n for n in names if n.startswith("series-")]
        self.assertLen(series, 2)
        for n in series:
          self.assertRegex(n, r"^series-s[0-9a-f]{12}\.nii\.gz$")
        shapes = sorted(nib.load(os.path.join(out, n)).shape for n in series)
        self.assertEqual(shapes, [(64, 64, 1), (128, 128, 1)])  # MR 64 x 64, CT 128 x 128.
        for n in series:
          img = nib.load(os.path.join(out, n))
          modality = "CT" if img.shape[0] == 128 else "MR"
          row, col, step = spacing[modality]
          self.assertAllClose(img.header.get_zooms(), (col, row, step))
          self.assertEqual(nib.aff2axcodes(img.affine), ("L", "A", "S"))  # Axial, in place.
          self.assertTrue(np.all(np.isfinite(np.asarray(img.dataobj))))
      else:
        pngs = [n for n in names if n.endswith(".png")]
        self.assertLen(pngs, 2)
        for n in pngs:
          self.assertRegex(n, r"^series-s[0-9a-f]{12}/0000\.png$")
      self.assertIn(volumes.WINDOW_NAME, names)
      # The salt stays in the (private) run directory, never in the output.
      self.assertNotIn("pseudonym_salt", " ".join(names))
      salt_path = os.path.join(self.pix2pix_dir, "pseudonym_salt")
      with open(salt_path, encoding="utf-8") as f:
        salt = f.read().strip()
      self.assertEqual(os.stat(salt_path).st_mode & 0o777, 0o600)
      for path in files:
        with open(path, "rb") as f:
          data = f.read()
        self.assertNotIn(salt.encode(), gzip.decompress(data) if path.endswith(".gz") else data)

  # --- pipeline.export ---

  def test_export_records_the_window_and_keeps_the_range(self):
    out = os.path.join(self.create_tempdir().full_path, "model")
    info = export.run(export.ExportConfig(self.pix2pix_dir, out))
    with open(os.path.join(out, export.INFO_NAME), encoding="utf-8") as f:
      stored = json.load(f)
    self.assertEqual(stored["window"], self.paired_manifest["window"])
    self.assertEqual(stored["medical"]["format"], "nifti")
    self.assertEqual((stored["input_domain"], stored["output_domain"]), ("A", "B"))
    self.assertEqual(stored["range"], [-1.0, 1.0])
    self.assertEqual(info["window"], stored["window"])
    # The signature takes and returns [-1, 1]: no rescaling inside.
    x = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    serve = tf.saved_model.load(out).signatures["serving_default"]
    got = serve(images=tf.constant(x))["images"].numpy()
    self.assertAllClose(got, self.pix2pix.algorithm.translate(tf.constant(x)), atol=1e-5)
    self.assertAllInRange(got, -1.0, 1.0)


class PixelSpacingTest(tf.test.TestCase):
  """The samples' pixel spacing: the training slices' after resizing."""

  def _manifest(self, series, size, resize="crop", fmt="dicom", kind="image"):
    feature = "image_a" if kind == "paired" else "image"
    return {"kind": kind, "features": {feature: {"shape": [*size, 1]}},
            "config": {"resize": resize}, "series": series,
            "medical": {"format": fmt, "slice_axis": "axial"}}

  def test_dicom_256_at_0_7_mm_converted_to_64_gives_2_8_mm(self):
    tmp = self.create_tempdir().full_path
    _dicom_series(os.path.join(tmp, "ct"), 256, (0.7, 0.7))
    out = os.path.join(tmp, "ct-tfr")
    manifest = convert.run(convert.ConvertConfig(source=f"dicom:{os.path.join(tmp, 'ct')}",
                                                 output=out, image_size=64, num_workers=1,
                                                 window="40,400"))
    info = data_lib.describe(manifest, out)
    self.assertAllClose(info.pixel_spacing["image"], [2.8, 2.8])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float32)
    folder = os.path.join(tmp, "samples")
    volumes.write_samples(folder, x, "nifti", info)
    img = nib.load(os.path.join(folder, volumes.STACK_NAME))
    self.assertEqual(img.shape, (64, 64, 3))
    _assert_sample_header(self, img, (2.8, 2.8, 1.0))

  def test_resize_modes_golden(self):
    # 200 rows x 100 columns at 0.5 mm between rows, 0.8 mm between columns,
    # onto 50 x 50: crop keeps 100 x 100 (the short side's scale), pad makes
    # 200 x 200 (the long side's), stretch takes 200 x 100.
    series = {"s": {"shape": [200, 100], "pixel_spacing": [0.5, 0.8]}}
    for mode, expected in (("crop", [1.0, 1.6]), ("pad", [2.0, 3.2]),
                           ("stretch", [2.0, 1.6])):
      got = data_lib.pixel_spacing(self._manifest(series, (50, 50), mode))
      self.assertAllClose(got["image"], expected, msg=mode)
    # 50 rows x 200 columns onto 40 x 80 (crop: 50 x 100; pad: 100 x 200).
    series = {"s": {"shape": [50, 200], "pixel_spacing": [1.0, 1.0]}}
    for mode, expected in (("crop", [1.25, 1.25]), ("pad", [2.5, 2.5]),
                           ("stretch", [1.25, 2.5])):
      got = data_lib.pixel_spacing(self._manifest(series, (40, 80), mode))
      self.assertAllClose(got["image"], expected, msg=mode)
    # Kept sizes need no resize: the spacing as read.
    got = data_lib.pixel_spacing(self._manifest(series, (50, 200), "crop"))
    self.assertAllClose(got["image"], [1.0, 1.0])

  def test_nifti_zooms_in_the_plane_of_the_slice_axis(self):
    # Canonical zooms x 0.9, y 1.1, z 3 mm; the series' shape is its slices'.
    for axis, shape, expected in (("axial", [40, 20], [1.1, 0.9]),
                                  ("coronal", [40, 20], [3.0, 0.9]),
                                  ("sagittal", [40, 20], [3.0, 1.1])):
      series = {"v": {"shape": shape, "zooms": [0.9, 1.1, 3.0], "axis": axis}}
      got = data_lib.pixel_spacing(self._manifest(series, (20, 10), "stretch", "nifti"))
      self.assertAllClose(got["image"], [2 * v for v in expected], msg=axis)
    # A volume whose voxel axes are permuted and flipped (AFFINE: i -> L,
    # j -> S, k -> A) records canonical zooms, as it records its shape.
    tmp = self.create_tempdir().full_path
    _save(os.path.join(tmp, "v.nii.gz"), np.zeros((4, 3, 5), np.float32))
    (volume,) = nifti.scan(tmp, "axial", "0").volumes
    self.assertEqual(volume.info["zooms"], [2.0, 1.5, 1.0])
    self.assertEqual(volume.shape, (5, 4))  # Rows along y (k), columns along x (i).

  def test_series_that_differ_take_the_median_per_domain(self):
    series = {f"s{i}": {"shape": [256, 256], "pixel_spacing": [v, v], "side": "A"}
              for i, v in enumerate((0.6, 0.7, 0.9))}
    series["b"] = {"shape": [256, 256], "pixel_spacing": [0.5, 0.6], "side": "B"}
    series["none"] = {"shape": [256, 256], "pixel_spacing": None, "side": "B"}
    with self.assertLogs("absl", "INFO") as logs:
      got = data_lib.pixel_spacing(self._manifest(series, (64, 64), kind="paired"))
    self.assertAllClose(got["A"], [2.8, 2.8])
    self.assertAllClose(got["B"], [2.0, 2.4])
    text = "\n".join(logs.output)
    self.assertIn("Pixel spacing of domain A: its 3 series differ after resizing to 64x64 (rows "
                  "2.4 to 3.6 mm, columns 2.4 to 3.6 mm); samples use the median, 2.8 x 2.8 mm",
                  text)
    self.assertIn("Pixel spacing of domain B: 1 of 2 series have none", text)
    self.assertNotIn("domain B: its", text)

  def test_without_a_spacing_samples_keep_1_mm_and_say_so(self):
    series = {"s": {"shape": [64, 64], "pixel_spacing": None}}
    self.assertIsNone(data_lib.pixel_spacing(self._manifest(series, (64, 64))))
    self.assertIsNone(data_lib.pixel_spacing({"kind": "image", "features": {}}))  # Not medical.
    info = base.DataInfo("image", (8, 8, 1), 0, "x", window={"image": {"low": 0.0, "high": 1.0}})
    folder = self.create_tempdir().full_path
    with self.assertLogs("absl", "INFO") as logs:
      volumes.write_samples(folder, np.zeros((2, 8, 8, 1), np.float32), "nifti", info)
    self.assertTrue(any("1 x 1 mm pixels; the training slices' pixel spacing is not known" in line
                        for line in logs.output), logs.output)
    _assert_sample_header(self, nib.load(os.path.join(folder, volumes.STACK_NAME)),
                          (1.0, 1.0, 1.0))


if __name__ == "__main__":
  tf.test.main()
