"""Whole volumes in (issue 31, Data): `pipeline.convert --volumes` of NIfTI
trees and DICOM series, the 3-D resampling (one Lanczos kernel, applied
separably), spacing, patient holdout, paired 3-D patches inside the body
mask, and the reader's rank-5 batches, flips and resumable position.

Records are checked against the source voxels windowed by hand, and the
slices of slice mode stacked."""

import os

import numpy as np
import pytest
import tensorflow as tf

from input import convert
from input import images
from input import reader
from input.medical import mask as mask_lib
from input.medical import nifti
from input.medical import phantom_files
from input.medical import resample
from tests.test_medical_input import _records

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

SIZE = 16  # Phantom voxels per side: 224 x 224 x 192 mm, so 14 x 14 x 12 mm voxels.


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  kwargs.setdefault("min_shards", 1)
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _codes(values, window):
  """Modality values -> 16-bit codes of a manifest window, by hand."""
  low, high = window["low"], window["high"]
  x = (np.asarray(values, np.float64) - low) * (65535 / max(high - low, 1e-12))
  return np.clip(np.round(x), 0, 65535).astype(np.uint16)


def _nifti_volume(path, axis="axial"):
  """A NIfTI file's voxels as [D, H, W] slices along `axis` (RAS+, as read)."""
  img = nib.as_closest_canonical(nib.load(path))
  return nifti.volume_to_slices(np.asarray(img.dataobj, np.float32), axis)


def _ct_series(folder, patient, uid, z_positions, offset=0, fill=None):
  """CT_small copies at z = `z_positions` (files in that order); pixels
  are CT_small's plus 50 per mm of z (so the order shows), or `fill`."""
  os.makedirs(folder, exist_ok=True)
  base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  for k, z in enumerate(z_positions):
    ds = base.copy()
    ds.PatientID = patient
    ds.PatientName = f"Doe^{patient}"
    ds.SeriesInstanceUID = uid
    ds.StudyInstanceUID = uid + ".9"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    arr = (np.full((ds.Rows, ds.Columns), fill, np.int16) if fill is not None else
           (base.pixel_array.astype(np.int32) + int(50 * z) + offset).astype(np.int16))
    ds.PixelData = arr.tobytes()
    ds.save_as(os.path.join(folder, f"im{k}.dcm"))


def _hu(folder):
  """{z: HU slice} of a folder written by `_ct_series`."""
  out = {}
  for name in os.listdir(folder):
    ds = pydicom.dcmread(os.path.join(folder, name))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out[float(ds.ImagePositionPatient[2])] = hu
  return out


class ResampleTest(tf.test.TestCase):

  def test_fitted_box_is_fitted_shape_for_two_axes(self):
    rng = np.random.default_rng(0)
    for _ in range(300):
      h, w, oh, ow = (int(v) for v in rng.integers(1, 90, 4))
      for mode in images.RESIZE_MODES:
        self.assertEqual(resample.fitted_box((h, w), (oh, ow), mode),
                         images.fitted_shape(h, w, oh, ow, mode), msg=(h, w, oh, ow, mode))

  def test_fitted_box_in_three_axes(self):
    # Crop keeps the axis that needs the largest scale whole (D: 8 -> 16).
    self.assertEqual(resample.fitted_box((8, 32, 64), (16, 16, 16), "crop"), (8, 8, 8))
    # Pad keeps the one that needs the smallest (W: 64 -> 16) and pads the others.
    self.assertEqual(resample.fitted_box((8, 32, 64), (16, 16, 16), "pad"), (64, 64, 64))
    self.assertEqual(resample.fitted_box((8, 32, 64), (16, 16, 16), "stretch"), (8, 32, 64))

  def test_a_volume_at_its_size_is_unchanged_bit_for_bit(self):
    codes = np.random.default_rng(1).integers(0, 65536, (5, 6, 7)).astype(np.uint16)
    geom = resample.geometry(codes.shape, (1.0, 1.0, 1.0), None, (5, 6, 7), "crop")
    self.assertIs(resample.apply(codes, geom, "crop"), codes)
    x = codes.astype(np.float32)
    self.assertAllEqual(resample.resize_volume(x, (5, 6, 7)), x)

  def test_a_linear_ramp_along_d_stays_a_linear_ramp(self):
    d, new_d = 12, 29
    ramp = np.broadcast_to(np.linspace(0.0, 1100.0, d, dtype=np.float32)[:, None, None],
                           (d, 4, 5))
    for size in (new_d, 7):
      out = resample.resize_volume(ramp, (size, 4, 5))
      self.assertEqual(out.shape, (size, 4, 5))
      # Each output voxel at its half-pixel centre in source coordinates.
      pos = (np.arange(size) + 0.5) * d / size - 0.5
      want = np.interp(pos, np.arange(d), np.linspace(0.0, 1100.0, d))
      inner = (pos >= 3) & (pos <= d - 4)  # Lanczos-3 away from the ends.
      self.assertAllClose(out[inner], np.broadcast_to(want[inner, None, None],
                                                      out[inner].shape), atol=0.01 * 1100)
      self.assertAllClose(out, out[:, :1, :1] + np.zeros_like(out))  # Nothing moves in-plane.

  def test_in_plane_is_the_slice_resize(self):
    x = np.random.default_rng(2).normal(size=(3, 10, 9)).astype(np.float32)
    out = resample.resize_volume(x, (3, 7, 5))
    for k in range(3):
      self.assertAllEqual(out[k], images.resize(x[k][..., None], 7, 5)[..., 0])


class NiftiVolumesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tf.compat.v1.test.get_temp_dir()
    cls.phantom = os.path.join(cls.tmp, "phantom")
    if not os.path.isdir(cls.phantom):
      phantom_files.run(phantom_files.PhantomConfig(output=cls.phantom, subjects=4, seed=3,
                                                    size=(SIZE, SIZE, SIZE)))
    cls.t1 = os.path.join(cls.phantom, "T1w")
    cls.data = os.path.join(cls.tmp, "t1_volumes")
    cls.manifest = _convert(f"nifti:{cls.t1}", cls.data, volumes=True)

  def test_records_are_the_windowed_source_voxels(self):
    m = self.manifest
    self.assertEqual(m["kind"], "image")
    self.assertEqual(m["features"]["image"], {"shape": [SIZE, SIZE, SIZE, 1], "dtype": "uint16",
                                              "encoding": "raw"})
    recs = _records(self.data, m)
    self.assertLen(recs, 4)
    for vid, rec in recs.items():
      path = os.path.join(self.t1, m["series"][vid]["file"])
      want = _codes(_nifti_volume(path), m["series"][vid]["window"])
      self.assertAllEqual(rec["image"][..., 0], want, msg=vid)

  def test_stacked_slices_of_slice_mode_are_the_volume(self):
    out = os.path.join(self.create_tempdir().full_path, "slices")
    m = _convert(f"nifti:{self.t1}", out)
    slices = _records(out, m)
    for vid, rec in _records(self.data, self.manifest).items():
      stacked = np.stack([slices[f"{vid}/{k:04d}"]["image"] for k in range(SIZE)])
      self.assertAllEqual(rec["image"], stacked, msg=vid)

  def test_manifest_records_volumes_size_and_spacing(self):
    medical = self.manifest["medical"]
    self.assertTrue(medical["volumes"])
    self.assertEqual(medical["volume_size"], [SIZE] * 3)
    self.assertIsNone(medical["spacing"])
    self.assertEqual(medical["voxel_spacing"], {"image": [12.0, 14.0, 14.0]})  # z, y, x.
    for entry in self.manifest["series"].values():
      self.assertEqual(entry["source_spacing"], [12.0, 14.0, 14.0])
      self.assertEqual(entry["voxel_spacing"], [12.0, 14.0, 14.0])
      self.assertIsNone(entry["resampled_spacing"])

  def test_spacing_then_volume_size(self):
    out = os.path.join(self.create_tempdir().full_path, "mm")
    m = _convert(f"nifti:{self.t1}", out, volumes=True, spacing=28.0, volume_size=(8,))
    self.assertEqual(m["features"]["image"]["shape"], [8, 8, 8, 1])
    medical = m["medical"]
    self.assertEqual((medical["spacing"], medical["volume_size"]), (28.0, [8, 8, 8]))
    # 16 x 12 mm -> 7 voxels of 192/7 mm; 16 x 14 mm -> 8 of 28 mm. Fitting
    # 7x8x8 to 8x8x8 by crop keeps D whole (scale 8/7) and crops the plane
    # to 7x7: stored voxels 192/8 = 24 mm and 28 * 7/8 = 24.5 mm.
    entry = next(iter(m["series"].values()))
    self.assertEqual(entry["source_spacing"], [12.0, 14.0, 14.0])
    self.assertAllClose(entry["resampled_spacing"], [192 / 7, 28.0, 28.0])
    self.assertAllClose(entry["voxel_spacing"], [24.0, 24.5, 24.5])
    self.assertAllClose(medical["voxel_spacing"]["image"], [24.0, 24.5, 24.5])
    # The values: the one resampling path, by hand.
    vid, rec = next(iter(_records(out, m).items()))
    codes = _codes(_nifti_volume(os.path.join(self.t1, m["series"][vid]["file"])),
                   m["series"][vid]["window"])
    x = resample.resize_volume(codes.astype(np.float32), (7, 8, 8))[:, 0:7, 0:7]
    want = np.clip(np.round(resample.resize_volume(x, (8, 8, 8))), 0, 65535)
    self.assertAllEqual(rec["image"][..., 0], want)

  def test_patient_holdout_keeps_whole_subjects(self):
    out = os.path.join(self.create_tempdir().full_path, "held")
    m = _convert(f"nifti:{self.t1}", out, volumes=True, holdout=0.5, volume_size=(8,))
    train, test = (set(_records(out, m, s)) for s in ("train", "test"))
    self.assertLen(train | test, 4)  # One record per volume.
    subjects = {s: {k.split("/")[0] for k in keys} for s, keys in
                (("train", train), ("test", test))}
    self.assertLen(subjects["test"], 2)
    self.assertEmpty(subjects["train"] & subjects["test"])
    self.assertEqual(sorted(m["holdout"]["test_groups"]), sorted(subjects["test"]))

  def test_one_folder_per_patient_layout(self):
    root = self.create_tempdir().full_path
    src = os.path.join(root, "scans")
    for p in range(4):  # Two scans each, not BIDS names: the folder is the patient.
      for scan in range(2):
        data = np.full((6, 6, 4), 100.0 * (p + 1) + scan, np.float32)
        data[0, 0, 0] = 0.0
        os.makedirs(os.path.join(src, f"case{p}"), exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)),
                 os.path.join(src, f"case{p}", f"scan{scan}.nii.gz"))
    out = os.path.join(root, "out")
    m = _convert(f"nifti:{src}", out, volumes=True, holdout=0.5, patient_from="folder:1",
                 window="500,1000")  # [0, 1000].
    sides = {}
    for split in ("train", "test"):
      for key, rec in _records(out, m, split).items():
        self.assertEqual(rec["image"].shape, (4, 6, 6, 1))
        patient = int(round(float(np.median(rec["image"])) / 65535 * 1000 / 100)) - 1
        sides.setdefault(patient, set()).add(split)
        self.assertEqual(key.split("/")[0], f"case{patient}")
    self.assertLen(sides, 4)
    self.assertTrue(all(len(s) == 1 for s in sides.values()), sides)

  def test_paired_patches_inside_the_mask_at_the_same_place(self):
    out = os.path.join(self.create_tempdir().full_path, "patches")
    t2 = os.path.join(self.phantom, "T2w")
    m = _convert(f"paired:nifti:{self.t1},{t2}", out, volumes=True, patch_size=6,
                 patches_per_volume=3, seed=7)
    self.assertEqual(m["kind"], "paired")
    for name in ("image_a", "image_b"):
      self.assertEqual(m["features"][name]["shape"], [6, 6, 6, 1])
    self.assertEqual((m["medical"]["patch_size"], m["medical"]["patches_per_volume"]), (6, 3))
    self.assertEqual(set(m["medical"]["voxel_spacing"]), {"A", "B"})
    recs = _records(out, m)
    self.assertLen(recs, 4 * 3)
    for key, rec in recs.items():
      pid, _, _ = key.rpartition("/")
      ids = m["pairs"][pid]
      a = _codes(_nifti_volume(os.path.join(self.t1, m["series"][ids["A"]]["file"])),
                 m["series"][ids["A"]]["window"])
      b = _codes(_nifti_volume(os.path.join(t2, m["series"][ids["B"]]["file"])),
                 m["series"][ids["B"]]["window"])
      d, h, w = m["patch_corners"][key]
      box = (slice(d, d + 6), slice(h, h + 6), slice(w, w + 6))
      self.assertAllEqual(rec["image_a"][..., 0], a[box], msg=key)
      self.assertAllEqual(rec["image_b"][..., 0], b[box], msg=key)
      body = mask_lib.auto_mask(b.astype(np.float64), 0.0, per_volume=True)
      self.assertTrue(body[d + 3, h + 3, w + 3], msg=key)  # The centre, in B's mask.
    # The same seed and ids: the same places in another output folder.
    again = _convert(f"paired:nifti:{self.t1},{t2}", out + "2", volumes=True, patch_size=6,
                     patches_per_volume=3, seed=7)
    self.assertEqual(again["patch_corners"], m["patch_corners"])

  def test_unpaired_volumes_read_as_two_domains(self):
    out = os.path.join(self.create_tempdir().full_path, "unpaired")
    t2 = os.path.join(self.phantom, "T2w")
    m = _convert(f"unpaired:nifti:{self.t1},{t2}", out, volumes=True, volume_size=(8,))
    self.assertEqual(m["kind"], "unpaired")
    self.assertEqual({s: v["num_examples"] for s, v in m["splits"].items()},
                     {"trainA": 4, "trainB": 4})
    batch = next(iter(reader.make_dataset(reader.ReaderConfig(out, shuffle_buffer=0), 2)))
    self.assertEqual(batch["image_a"].shape, (2, 8, 8, 8, 1))
    self.assertEqual(batch["image_b"].shape, (2, 8, 8, 8, 1))

  def test_reader_batches_and_resumes_exactly(self):
    config = reader.ReaderConfig(self.data, shuffle_buffer=4, seed=3, with_keys=True)
    it = iter(reader.make_dataset(config, 2))
    first = next(it)
    self.assertEqual(first["image"].shape, (2, SIZE, SIZE, SIZE, 1))
    self.assertEqual(first["image"].dtype, tf.float32)
    self.assertBetween(float(tf.reduce_min(first["image"])), -1.0, 1.0)
    self.assertBetween(float(tf.reduce_max(first["image"])), -1.0, 1.0)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(os.path.join(self.create_tempdir().full_path, "it"))
    want = [next(it) for _ in range(3)]
    it2 = iter(reader.make_dataset(config, 2))
    tf.train.Checkpoint(iterator=it2).restore(path).assert_consumed()
    for w in want:
      got = next(it2)
      self.assertAllEqual(got["key"], w["key"])
      self.assertAllEqual(got["image"], w["image"])

  def test_two_pipelines_read_each_volume_once(self):
    seen = []
    for pipe in (0, 1):
      config = reader.ReaderConfig(self.data, repeat=False, drop_remainder=False,
                                   with_keys=True, seed=5)
      ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipe,
                                       num_replicas_in_sync=2)
      ds = reader.make_dataset_fn(config, global_batch_size=2)(ctx)
      seen.append([k.decode() for b in ds.as_numpy_iterator() for k in b["key"]])
    self.assertLen(seen[0] + seen[1], 4)
    self.assertEqual(set(seen[0] + seen[1]), set(self.manifest["series"]))

  def test_requirements_say_dxhxwxc(self):
    with self.assertRaisesRegex(reader.ManifestError,
                                r"16x16x16x1 volumes \(DxHxWxC\) but the model needs "
                                r"32x32x32x1 volumes.*--volume_size"):
      reader.check_requirements(self.manifest, reader.Requirements(image_shape=(32, 32, 32, 1)))

  def test_flip_of_rank_5_batches_flips_w(self):
    x = tf.random.stateless_uniform([16, 3, 4, 5, 1], seed=[1, 2])
    batch = {"image_a": x, "image_b": x + 1.0}
    out = reader._flip(batch, tf.constant([4, 2], tf.int64))  # pylint: disable=protected-access
    a, b, x = out["image_a"].numpy(), out["image_b"].numpy(), x.numpy()
    flipped = np.all(a == x[:, :, :, ::-1], axis=(1, 2, 3, 4))
    same = np.all(a == x, axis=(1, 2, 3, 4))
    self.assertTrue(np.all(flipped ^ same))
    self.assertBetween(int(flipped.sum()), 1, 15)
    self.assertAllEqual(b - 1.0, a)  # One coin for A and B.


class DicomVolumesTest(tf.test.TestCase):

  def test_series_in_position_order_windowed_by_hand(self):
    root = self.create_tempdir().full_path
    folder = os.path.join(root, "ct")
    z = [5.0, 0.0, 2.5]  # Files out of order: positions decide.
    _ct_series(folder, "P1", "1.2.826.0.1.77", z)
    out = os.path.join(root, "out")
    m = _convert(f"dicom:{folder}", out, volumes=True, window="40,400")
    ((vid, rec),) = _records(out, m).items()
    hu = _hu(folder)
    want = _codes(np.stack([hu[k] for k in sorted(hu)]), m["series"][vid]["window"])
    self.assertEqual(rec["image"].shape, (3, 128, 128, 1))
    self.assertAllEqual(rec["image"][..., 0], want)
    spacing = float(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PixelSpacing[0])
    self.assertAllClose(m["medical"]["voxel_spacing"]["image"], [2.5, spacing, spacing])
    self.assertAllClose(m["series"][vid]["source_spacing"], [2.5, spacing, spacing])

  def test_a_series_without_spacing_says_so(self):
    root = self.create_tempdir().full_path
    folder = os.path.join(root, "ct")
    _ct_series(folder, "P1", "1.2.826.0.1.78", [0.0, 2.0, 7.0])  # Uneven: no one affine.
    m = _convert(f"dicom:{folder}", os.path.join(root, "out"), volumes=True)
    self.assertIsNone(m["medical"]["voxel_spacing"])
    self.assertIsNone(next(iter(m["series"].values()))["source_spacing"])
    with self.assertRaisesRegex(convert.ConvertError, "no voxel spacing.*--spacing=2"):
      _convert(f"dicom:{folder}", os.path.join(root, "out2"), volumes=True, spacing=2.0)

  def test_patient_holdout_keeps_whole_patients(self):
    root = self.create_tempdir().full_path
    src = os.path.join(root, "cohort")
    for p in range(4):  # case<p>/series<s>: two series per patient, raw 100 (p + 1).
      for s in range(2):
        _ct_series(os.path.join(src, f"case{p}", f"series{s}"), f"PAT{p}",
                   f"1.2.826.0.1.{p}.{s}", [0.0, 1.0], fill=100 * (p + 1))
    out = os.path.join(root, "out")
    m = _convert(f"dicom:{src}", out, volumes=True, volume_size=(2, 8, 8), holdout=0.5,
                 window="-1024,4096")
    sides, count = {}, 0
    for split in ("train", "test"):
      for key, rec in _records(out, m, split).items():
        count += 1
        self.assertNotIn("PAT", key)
        hu = -1024 + float(np.median(rec["image"])) / 65535 * 4096
        sides.setdefault(int(round((hu + 1024) / 100)) - 1, set()).add(split)
    self.assertEqual(count, 8)  # One record per series.
    self.assertLen(sides, 4)
    self.assertTrue(all(len(s) == 1 for s in sides.values()), sides)
    with open(os.path.join(out, "manifest.json"), "rb") as f:
      self.assertNotIn(b"PAT", f.read())


class RefusalTest(tf.test.TestCase):

  def _refused(self, pattern, source="nifti:/nowhere", **kwargs):
    out = os.path.join(self.create_tempdir().full_path, "out")
    with self.assertRaisesRegex(convert.ConvertError, pattern):
      _convert(source, out, **kwargs)
    self.assertFalse(os.path.exists(out))  # Nothing written.

  def test_refusals(self):
    self._refused(r"--context_slices=1 stacks 2-D slices.*--volumes stores whole volumes",
                  volumes=True, context_slices=1)
    self._refused(r"--volume_size applies to --volumes", volume_size=(8,))
    self._refused(r"--patch_size applies to --volumes", patch_size=8, patches_per_volume=2)
    self._refused(r"--spacing applies to --volumes", spacing=1.0)
    self._refused(r"--volume_size takes D,H,W or one N", volumes=True, volume_size=(8, 8))
    self._refused(r"--patch_size=N and --patches_per_volume=K go together", volumes=True,
                  patch_size=8)
    self._refused(r"--patch_size=32 does not fit in --volume_size=16", volumes=True,
                  volume_size=(16,), patch_size=32, patches_per_volume=1)
    self._refused(r"--image_size sizes slices; with --volumes give --volume_size",
                  volumes=True, image_size=32)
    self._refused(r"PNG cannot hold; use --encoding=raw", volumes=True, encoding="png")
    folder = self.create_tempdir().full_path
    self._refused(rf"--volumes applies to dicom: and nifti: sources, not 'folder:{folder}'",
                  source=f"folder:{folder}", volumes=True)
    self._refused(r"--patch_size applies to paired:dicom: and paired:nifti: sources, not "
                  r"'nifti:", volumes=True, patch_size=4, patches_per_volume=1)

  def test_volumes_of_different_sizes_need_volume_size(self):
    root = self.create_tempdir().full_path
    for name, shape in (("a", (6, 6, 4)), ("b", (6, 6, 5))):
      data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
      nib.save(nib.Nifti1Image(data, np.eye(4)), os.path.join(root, f"{name}.nii.gz"))
    self._refused(r"2 different sizes \(DxHxW.*pass --volume_size=D,H,W",
                  source=f"nifti:{root}", volumes=True)

  def test_paired_sides_resampled_to_different_sizes_are_refused(self):
    root = self.create_tempdir().full_path
    for side, mm in (("A", 2.0), ("B", 1.0)):  # Same voxels, other spacings.
      data = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
      os.makedirs(os.path.join(root, side))
      nib.save(nib.Nifti1Image(data, np.diag([mm, mm, mm, 1.0])),
               os.path.join(root, side, "sub-01_T1w.nii.gz"))
    self._refused(r"A is stored as 8x8x8 and B as 4x4x4 voxels.*--volume_size",
                  source=f"paired:nifti:{root}/A,{root}/B", volumes=True, spacing=2.0,
                  patch_size=2, patches_per_volume=1)
