"""Where a translated DICOM series lies: the affine of the NIfTI that
`pipeline.translate` writes, against one computed by hand from the DICOM
Image Plane attributes and against nibabel's DICOM wrapper; the series that
one affine cannot hold are refused by name; NIfTI in keeps its affine.

The series are built here: 4 rows x 5 columns, anisotropic PixelSpacing,
slices rotated off every axis, each pixel's value naming its slice, row and
column (100 k + 10 r + c), so that a voxel read back from the NIfTI says
which DICOM pixel it is. The translator is the identity, with one window for
both domains, so that values come back."""

import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from algorithms import base
from inference import volumes
from input.medical import dicom
from input.medical import geometry
from input.medical import nifti
from input.medical import pseudonyms

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
with warnings.catch_warnings():  # "The DICOM readers are highly experimental".
  warnings.simplefilter("ignore", UserWarning)
  from nibabel.nicom import dicomwrappers  # pylint: disable=g-import-not-at-top
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

ROWS, COLS = 4, 5
ROW_SPACING, COL_SPACING = 0.7, 1.3  # PixelSpacing = [between rows, between columns].
SLICE_SPACING = 2.5
ORIGIN = np.array([-10.2, 33.0, 5.5])  # LPS mm.


def _rotation(degrees_x=30.0, degrees_z=20.0):
  """Rz @ Rx: columns are the row direction, the column direction and the
  normal of an oblique slice (LPS)."""
  a, b = np.radians(degrees_x), np.radians(degrees_z)
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
  return rz @ rx


R = _rotation()
ROW_DIR, COL_DIR, NORMAL = R[:, 0], R[:, 1], R[:, 2]
IOP = list(np.concatenate([ROW_DIR, COL_DIR]))


def _write_series(folder, positions, orientations=None, uid=None):
  """Writes one slice per position, in reverse order and with InstanceNumbers
  that disagree with the positions (the reader must sort by position).
  Pixel (r, c) of slice k holds 100 k + 10 r + c."""
  os.makedirs(folder, exist_ok=True)
  template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  uid = uid or pydicom.uid.generate_uid()
  rows, cols = np.mgrid[0:ROWS, 0:COLS]
  for k, position in enumerate(positions):
    ds = template.copy()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
    ds.Rows, ds.Columns = ROWS, COLS
    ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
    ds.SliceThickness = 5.0  # Not the spacing: the positions say 2.5 mm.
    ds.SpacingBetweenSlices = 5.0
    ds.ImageOrientationPatient = [float(v) for v in
                                  (orientations[k] if orientations else IOP)]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.InstanceNumber = len(positions) - k
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = (100 * k + 10 * rows + cols).astype(np.int16).tobytes()
    ds.save_as(os.path.join(folder, f"im{len(positions) - 1 - k:02d}.dcm"))


def _positions(n=3, step=None):
  step = SLICE_SPACING * NORMAL if step is None else step
  return [ORIGIN + k * step for k in range(n)]


def _scan(folder, salt_dir=None):
  """The series under `folder`, named with the salt kept in `salt_dir` (as
  `translate_dicom` names them) or a fixed one."""
  salt = ("0" * 64 if salt_dir is None else pseudonyms.load_or_create_salt(
      os.path.join(salt_dir, pseudonyms.SALT_NAME)))
  return dicom.scan(folder, pseudonyms.Pseudonym(salt)).volumes


def _translate_dicom(root, out, fmt, salt_dir):
  os.makedirs(out, exist_ok=True)  # pipeline.translate makes it.
  return volumes.translate_dicom(_identity_translator(), root, out, fmt, salt_dir)


def _identity_translator(size=(ROWS, COLS)):
  """A translator that returns its input, with one fixed window [0, 1000]
  for both domains: values come back within 1000 / 65535."""
  window = {"low": 0.0, "high": 1000.0, "units": "HU", "source": "fixed"}
  data = base.DataInfo(kind="paired", shape=(*size, 1), num_classes=0, name="t",
                       window={"A": window, "B": window},
                       medical={"format": "dicom", "window": "500,1000", "slice_axis": "axial"})
  return volumes.VolumeTranslator(lambda x: x, data, "AtoB", channels=1)


def _hand_voxel_affine():
  """The affine of the written NIfTI, by hand: voxel (i, j, k) of the
  [cols, rows, slices] stack holds column i, row ROWS - 1 - j, slice k."""
  flip = np.diag([-1.0, -1.0, 1.0])
  out = np.eye(4)
  out[:3, 0] = flip @ ROW_DIR * COL_SPACING
  out[:3, 1] = -(flip @ COL_DIR) * ROW_SPACING
  out[:3, 2] = flip @ NORMAL * SLICE_SPACING
  out[:3, 3] = flip @ (ORIGIN + (ROWS - 1) * ROW_SPACING * COL_DIR)
  return out


class SeriesAffineTest(tf.test.TestCase):

  def test_oblique_series_affine_by_hand_and_by_nibabel(self):
    folder = self.create_tempdir().full_path
    _write_series(folder, _positions())
    (volume,) = _scan(folder)
    got = dicom.series_affine(volume)
    hand = np.eye(4)  # (column, row, slice) -> RAS.
    hand[:3, 0] = [-1, -1, 1] * ROW_DIR * COL_SPACING
    hand[:3, 1] = [-1, -1, 1] * COL_DIR * ROW_SPACING
    hand[:3, 2] = [-1, -1, 1] * NORMAL * SLICE_SPACING
    hand[:3, 3] = [-1, -1, 1] * ORIGIN
    self.assertAllClose(got, hand, atol=1e-5)
    # nibabel's wrapper: each slice's LPS affine over (row, column).
    for k, ref in enumerate(volume.refs):
      wrapped = dicomwrappers.wrapper_from_data(pydicom.dcmread(ref.path))
      for r, c in ((0, 0), (ROWS - 1, 0), (0, COLS - 1), (2, 3)):
        lps = wrapped.affine @ [r, c, 0, 1]
        self.assertAllClose(geometry.LPS_TO_RAS @ lps, got @ [c, r, k, 1], atol=1e-4)

  def test_descending_order_gives_a_negative_step(self):
    # InstanceNumber order, top down: the affine follows the stored order.
    planes = [geometry.Plane(tuple(IOP), tuple(p), (ROW_SPACING, COL_SPACING))
              for p in reversed(_positions())]
    got = geometry.affine(planes)
    self.assertAllClose(got[:3, 2], [-1, -1, 1] * -NORMAL * SLICE_SPACING, atol=1e-6)
    self.assertAllClose(got[:3, 3], [-1, -1, 1] * _positions()[-1], atol=1e-6)

  def test_one_slice_steps_by_spacing_between_slices(self):
    plane = geometry.Plane(tuple(IOP), tuple(ORIGIN), (ROW_SPACING, COL_SPACING), 3.0)
    self.assertAllClose(geometry.affine([plane])[:3, 2], [-1, -1, 1] * NORMAL * 3.0)
    plane = geometry.Plane(tuple(IOP), tuple(ORIGIN), (ROW_SPACING, COL_SPACING))
    self.assertAllClose(geometry.affine([plane])[:3, 2], [-1, -1, 1] * NORMAL)

  def test_refusals_say_why(self):
    planes = lambda positions, iops=None: [  # pylint: disable=g-long-lambda
        geometry.Plane(tuple(iops[k] if iops else IOP), tuple(p), (ROW_SPACING, COL_SPACING))
        for k, p in enumerate(positions)]
    missing = [p for k, p in enumerate(_positions(5)) if k != 2]
    with self.assertRaisesRegex(geometry.GeometryError, r"not evenly spaced: 2\.5 to 5 mm"):
      geometry.affine(planes(missing))
    tilted = _positions(4, SLICE_SPACING * NORMAL + 0.5 * ROW_DIR)
    with self.assertRaisesRegex(geometry.GeometryError, r"11\.31 degrees off the slice normal"):
      geometry.affine(planes(tilted))
    other = np.concatenate([_rotation(35.0)[:, 0], _rotation(35.0)[:, 1]])
    with self.assertRaisesRegex(geometry.GeometryError, "2 different ImageOrientationPatient"):
      geometry.affine(planes(_positions(), [IOP, other, IOP]))
    twice = _positions(2) + _positions(2)
    with self.assertRaisesRegex(geometry.GeometryError, "share one ImagePositionPatient"):
      geometry.affine(planes(twice))
    lacking = [geometry.Plane(tuple(IOP), None, (1.0, 1.0))] + planes(_positions(2))
    with self.assertRaisesRegex(geometry.GeometryError, "1 of 3 slices lack ImagePositionPatient"):
      geometry.affine(lacking)
    with self.assertRaisesRegex(geometry.GeometryError, "not two orthogonal unit vectors"):
      geometry.affine(planes(_positions(), [[1, 0, 0, 0.5, 1, 0]] * 3))
    # Rounded positions (a hundredth of a millimetre) are not uneven spacing.
    rounded = [np.round(p, 2) for p in _positions(6)]
    self.assertAllClose(geometry.affine(planes(rounded))[:3, 2],
                        [-1, -1, 1] * NORMAL * SLICE_SPACING, atol=0.01)

  def test_enhanced_multi_frame_planes_from_functional_groups(self):
    ds = pydicom.Dataset()
    ds.NumberOfFrames = 3
    shared = pydicom.Dataset()
    shared.PixelMeasuresSequence = [pydicom.Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [ROW_SPACING, COL_SPACING]
    shared.PlaneOrientationSequence = [pydicom.Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = IOP
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for p in _positions():
      frame = pydicom.Dataset()
      frame.PlanePositionSequence = [pydicom.Dataset()]
      frame.PlanePositionSequence[0].ImagePositionPatient = [float(v) for v in p]
      frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    got = geometry.affine([dicom._plane(ds, f) for f in range(3)])  # pylint: disable=protected-access
    self.assertAllClose(got[:3, 2], [-1, -1, 1] * NORMAL * SLICE_SPACING, atol=1e-6)
    self.assertAllClose(got[:3, 0], [-1, -1, 1] * ROW_DIR * COL_SPACING, atol=1e-6)

  def test_rt_dose_frames_by_grid_frame_offsets(self):
    folder = self.create_tempdir().full_path
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    ds.save_as(os.path.join(folder, "dose.dcm"))
    (volume,) = _scan(folder)
    got = dicom.series_affine(volume)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    for k, offset in enumerate(ds.GridFrameOffsetVector):
      # Axial (IOP 1,0,0,0,1,0): frame k lies `offset` mm up from the position.
      self.assertAllClose(got @ [0, 0, k, 1], [-ipp[0], -ipp[1], ipp[2] + float(offset), 1])


class TranslatedSeriesTest(tf.test.TestCase):

  def test_written_nifti_overlays_the_dicom_pixels(self):
    tmp = self.create_tempdir().full_path
    src, out = os.path.join(tmp, "dicom", "s1"), os.path.join(tmp, "out")
    _write_series(src, _positions())
    written, skipped = _translate_dicom(os.path.dirname(src), out, "nifti", tmp)
    self.assertEqual(skipped, [])
    (path,) = written
    img = nib.load(path)
    self.assertAllClose(img.affine, _hand_voxel_affine(), atol=1e-5)
    self.assertEqual([int(img.header["qform_code"]), int(img.header["sform_code"])], [1, 1])
    self.assertAllClose(img.get_qform(), img.affine, atol=1e-4)
    self.assertEqual(img.shape, (COLS, ROWS, 3))
    # Every voxel: its value names the DICOM pixel (k, r, c); its world
    # coordinate must be where that slice's header puts that pixel.
    data = np.round(np.asarray(img.dataobj)).astype(int)
    headers = {int(pydicom.dcmread(os.path.join(src, f)).pixel_array[0, 0]) // 100:
               pydicom.dcmread(os.path.join(src, f)) for f in os.listdir(src)}
    for i, j, k in np.ndindex(data.shape):
      value = data[i, j, k]
      slice_k, r, c = value // 100, value // 10 % 10, value % 10
      ds = headers[slice_k]
      iop = np.array([float(v) for v in ds.ImageOrientationPatient])
      row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
      lps = (np.array([float(v) for v in ds.ImagePositionPatient])
             + c * col_spacing * iop[:3] + r * row_spacing * iop[3:])
      self.assertAllClose((img.affine @ [i, j, k, 1])[:3], [-lps[0], -lps[1], lps[2]],
                          atol=1e-4, msg=(i, j, k))

  def test_series_that_one_affine_cannot_hold_are_skipped_by_name(self):
    tmp = self.create_tempdir().full_path
    root = os.path.join(tmp, "dicom")
    _write_series(os.path.join(root, "gap"), [p for k, p in enumerate(_positions(4)) if k != 1])
    _write_series(os.path.join(root, "good"), _positions())
    out = os.path.join(tmp, "out")
    written, skipped = _translate_dicom(root, out, "nifti", tmp)
    (gap,) = [v for v in _scan(root, tmp) if v.match == "gap"]
    self.assertLen(written, 1)
    self.assertLen(skipped, 1)
    name, reason = skipped[0]
    self.assertEqual(name, f"series-{gap.id}")
    self.assertRegex(reason, r"^cannot be placed in the patient by one affine: its slices are "
                             r"not evenly spaced: 2\.5 to 5 mm apart .*--format=png16")
    self.assertNotIn("\n", reason)
    # As PNG slices it needs no affine.
    written, skipped = _translate_dicom(root, os.path.join(tmp, "png"), "png16", tmp)
    self.assertEqual((len(written), skipped), (6, []))

  def test_single_slice_without_geometry_keeps_its_pixel_spacing(self):
    tmp = self.create_tempdir().full_path
    src = os.path.join(tmp, "dicom")
    _write_series(src, _positions(1))
    path = os.path.join(src, "im00.dcm")
    ds = pydicom.dcmread(path)
    del ds.ImageOrientationPatient, ds.ImagePositionPatient
    ds.save_as(path)
    with self.assertLogs(level="WARNING") as logs:
      written, skipped = _translate_dicom(src, os.path.join(tmp, "out"), "nifti", tmp)
    self.assertEqual((len(written), skipped), (1, []))
    self.assertIn("not placed in the patient", "\n".join(logs.output))
    self.assertAllClose(nib.load(written[0]).header.get_zooms(), (COL_SPACING, ROW_SPACING, 1))


class NiftiKeepsItsAffineTest(tf.test.TestCase):

  def test_oblique_nifti_translates_in_place(self):
    tmp = self.create_tempdir().full_path
    affine = np.eye(4)
    affine[:3, :3] = R @ np.diag([1.3, 0.7, 2.5])
    affine[:3, 3] = [4.0, -7.0, 12.0]
    data = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3) * 3.0
    src = os.path.join(tmp, "in", "oblique.nii.gz")
    os.makedirs(os.path.dirname(src))
    nib.save(nib.Nifti1Image(data, affine), src)
    slices = nifti.read_slices(src, "axial")[0]  # The model's size: no resizing.
    translator = _identity_translator(slices.shape[2:])
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    written, skipped = volumes.translate_nifti(translator, src, out, "nifti")
    self.assertEqual(skipped, [])
    img = nib.load(written[0])
    self.assertTrue(np.array_equal(img.affine, nib.load(src).affine))
    self.assertAllClose(np.asarray(img.dataobj), data, atol=0.02)


if __name__ == "__main__":
  tf.test.main()
