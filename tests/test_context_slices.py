"""2.5-D context (`pipeline.convert --context_slices=K`): a paired source
slice is stored with its K neighbours on either side as 2K + 1 channels, in
slice order, the end slices repeated; pix2pix takes them and makes the
target's one slice; `pipeline.translate` stacks them alike from the input
volume.

The volumes are made here, small, with slice k of the source holding the
value 10 k, so that which slice lands in which channel is read off by hand.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import base
from algorithms import translation_ops
from inference import export
from inference import translate
from inference import volumes
from input import convert
from input import images
from input import reader
from input import shards
from input import sources
from input.medical import nifti
from input.medical import phantom_files
from input.medical import pseudonyms
from input.medical import volume as medical_volume
from input.medical import window as window_lib
from models import pix2pix as pix2pix_models
from training import config as config_lib
from training import run_dir
from training import trainer

nib = pytest.importorskip("nibabel")

WINDOW = "50,100"  # [0, 100]: both sides, fixed.
AFFINE = np.array([[0.0, 0.0, 1.2, -3.0], [-0.9, 0.0, 0.0, 4.0], [0.0, 1.5, 0.0, 2.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _save_slices(path, slices, affine=None):
  """Writes [S, rows, cols] axial slices as a canonical NIfTI (or with `affine`:
  the slices are those of its canonical form)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = nifti.slices_to_volume(np.asarray(slices, np.float32), "axial")
  if affine is not None:
    ornt = nib.orientations.io_orientation(affine)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    data = nib.orientations.apply_orientation(data, back)
  nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
  return path


def _numbered(num_slices, rows, cols):
  """Slice k holds 10 k everywhere."""
  return np.broadcast_to(10.0 * np.arange(num_slices)[:, None, None],
                         (num_slices, rows, cols)).astype(np.float32)


def _codes(value):
  return int(window_lib.Window(0.0, 100.0).to_codes(np.float64(value), 16))


class ContextIndicesTest(tf.test.TestCase):

  def test_golden(self):
    ctx = medical_volume.context_indices
    self.assertEqual(ctx(2, 5, 0), [2])
    self.assertEqual(ctx(2, 5, 1), [1, 2, 3])
    self.assertEqual(ctx(0, 5, 1), [0, 0, 1])  # The first slice repeats itself...
    self.assertEqual(ctx(4, 5, 2), [2, 3, 4, 4, 4])  # ...and the last.
    self.assertEqual(ctx(0, 1, 2), [0, 0, 0, 0, 0])

  def test_stacks_put_slice_order_on_channels(self):
    slices = _numbered(4, 2, 3)
    stacks = medical_volume.context_stacks(slices, 1)
    self.assertEqual(stacks.shape, (4, 2, 3, 3))
    self.assertAllEqual(stacks[:, 0, 0], [[0, 0, 10], [0, 10, 20], [10, 20, 30], [20, 30, 30]])
    self.assertAllEqual(medical_volume.context_stacks(slices, 0), slices[..., None])

  def test_to_spec_resizes_each_slice_of_a_stack_alike(self):
    stack = np.stack([np.full((4, 6), v, np.uint16) for v in (257, 257 * 100, 65535)], -1)
    out = images.to_spec(stack, images.ImageSpec(2, 2, 1, 8, "crop"), stack=True)
    self.assertEqual((out.shape, out.dtype), ((2, 2, 3), np.uint8))
    self.assertAllEqual(out[0, 0], [1, 100, 255])  # Never mixed into gray.
    with self.assertRaisesRegex(images.BadImageError, "unsupported array shape"):
      images.to_spec(stack[..., :2], images.ImageSpec(2, 2, 1))


class ConvertTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = root = os.path.join(tf.compat.v1.test.get_temp_dir(), "context_convert")
    a = _numbered(5, 8, 12)
    for name in ("sub-01", "sub-02"):
      _save_slices(os.path.join(root, "A", f"{name}_T1w.nii.gz"), a)
      _save_slices(os.path.join(root, "B", f"{name}_T2w.nii.gz"), 100.0 - a)
    cls.spec = f"paired:nifti:{root}/A,{root}/B"

  def _convert(self, name, **kwargs):
    out = os.path.join(self.create_tempdir().full_path, name)
    manifest = convert.run(convert.ConvertConfig(source=self.spec, output=out, num_workers=1,
                                                 window=WINDOW, min_shards=1, **kwargs))
    ds = reader.make_dataset(reader.ReaderConfig(
        out, shuffle_buffer=0, repeat=False, drop_remainder=False, deterministic=True,
        with_keys=True, normalize=False), 100)
    batch = next(iter(ds))
    return manifest, {k.decode(): (a, b) for k, a, b in zip(
        batch["key"].numpy(), batch["image_a"].numpy(), batch["image_b"].numpy())}

  def test_channel_order_by_hand(self):
    for k, encoding in ((1, "raw"), (2, "raw"), (1, "png")):
      manifest, examples = self._convert(f"k{k}{encoding}", context_slices=k, encoding=encoding)
      self.assertEqual(manifest["features"]["image_a"]["shape"], [8, 12, 2 * k + 1])
      self.assertEqual(manifest["features"]["image_b"]["shape"], [8, 12, 1])
      self.assertEqual(manifest["medical"]["context_slices"], k)
      self.assertLen(examples, 10)
      for s in range(5):
        a, b = examples[f"sub-01/{s:04d}"]
        # Channel c: slice s - K + c, clamped to the volume's 5 slices.
        neighbours = [min(max(s - k + c, 0), 4) for c in range(2 * k + 1)]
        self.assertAllEqual(a[0, 0], [_codes(10 * i) for i in neighbours], msg=(k, s))
        self.assertTrue(np.all(a == a[:1, :1]), (k, s))  # Every pixel of a slice alike.
        self.assertAllEqual(b[..., 0], np.full((8, 12), _codes(100 - 10 * s)), msg=(k, s))

  def test_without_context_nothing_is_recorded(self):
    manifest, examples = self._convert("k0")
    self.assertNotIn("context_slices", manifest["medical"])
    self.assertEqual(manifest["features"]["image_a"]["shape"], [8, 12, 1])
    self.assertEqual(examples["sub-02/0003"][0][0, 0, 0], _codes(30))

  def test_refusals(self):
    out = os.path.join(self.create_tempdir().full_path, "refused")
    root = self.root
    for spec in (f"nifti:{root}/A", f"unpaired:nifti:{root}/A,{root}/B", f"folder:{root}/A"):
      with self.assertRaisesRegex(convert.ConvertError,
                                  r"^--context_slices applies to paired:dicom: and "
                                  r"paired:nifti: sources, not"):
        convert.run(convert.ConvertConfig(source=spec, output=out, context_slices=1))
    with self.assertRaisesRegex(convert.ConvertError, r"^--context_slices must be >= 0, got -1$"):
      convert.run(convert.ConvertConfig(source=self.spec, output=out, context_slices=-1))
    with self.assertRaisesRegex(convert.ConvertError,
                                r"^--context_slices=2 stores 5 channels, more than PNG holds"):
      convert.run(convert.ConvertConfig(source=self.spec, output=out, context_slices=2,
                                        encoding="png"))
    with self.assertRaisesRegex(convert.ConvertError, "stacks gray slices.*--channels=3"):
      convert.run(convert.ConvertConfig(source=self.spec, output=out, context_slices=1,
                                        channels=3))
    self.assertFalse(os.path.exists(out))
    self.assertIn("context_slices", sources.find(self.spec).reads)


class DicomTest(tf.test.TestCase):

  def test_context_of_dicom_series_is_their_neighbouring_slices(self):
    """DICOM series are ordered by position, not by file; the context comes
    from the same slices that a conversion without it stores, in two worker
    processes (the source's slice cache travels empty)."""
    root = self.create_tempdir().full_path
    phantom_files.run(phantom_files.PhantomConfig(output=os.path.join(root, "ph"), subjects=2,
                                                  size=(32, 32, 6), format="dicom"))
    spec = f"paired:dicom:{root}/ph/T1w,{root}/ph/T2w"
    got = {}
    for k, workers in ((0, 1), (2, 2)):
      out = os.path.join(root, f"k{k}")
      if k:  # The same salt: the same pseudonyms name the pairs.
        os.makedirs(os.path.join(out, shards.STATE_DIR))
        shutil.copy2(os.path.join(root, "k0", shards.STATE_DIR, pseudonyms.SALT_NAME),
                     os.path.join(out, shards.STATE_DIR, pseudonyms.SALT_NAME))
      convert.run(convert.ConvertConfig(source=spec, output=out, num_workers=workers,
                                        min_shards=2, context_slices=k, window="500,1000"))
      ds = reader.make_dataset(reader.ReaderConfig(
          out, shuffle_buffer=0, repeat=False, drop_remainder=False, with_keys=True,
          normalize=False), 100)
      got[k] = {key.decode(): (a, b) for batch in ds for key, a, b in zip(
          batch["key"].numpy(), batch["image_a"].numpy(), batch["image_b"].numpy())}
    self.assertLen(got[2], 12)
    self.assertEqual(sorted(got[2]), sorted(got[0]))
    for key, (a, b) in got[2].items():
      series, _, index = key.rpartition("/")
      s = int(index)
      self.assertEqual(a.shape, (32, 32, 5))
      for c in range(5):
        neighbour = f"{series}/{min(max(s - 2 + c, 0), 5):04d}"
        self.assertAllEqual(a[..., c], got[0][neighbour][0][..., 0], msg=(key, c))
      self.assertAllEqual(b, got[0][key][1])
    # The phantom's slices differ: the stacks are not one slice repeated.
    self.assertGreater(np.abs(got[0][f"{series}/0002"][0].astype(float)
                              - got[0][f"{series}/0003"][0]).max(), 0)


def _data(context_slices, size=(16, 16)):
  """A paired medical DataInfo with context: both sides in the window [0, 100]."""
  w = window_lib.Window(0.0, 100.0).to_json()
  k = 2 * context_slices + 1
  return base.DataInfo(kind="paired", shape=(*size, k), num_classes=0, name="t",
                       window={"A": w, "B": w}, resize="crop",
                       medical={"format": "nifti", "window": WINDOW, "slice_axis": "axial",
                                "context_slices": context_slices},
                       shapes={"image_a": (*size, k), "image_b": (*size, 1)})


class TranslateVolumeTest(tf.test.TestCase):

  def test_channel_order_by_hand(self):
    values = _numbered(4, 16, 16)
    for channel, expected in ((0, [0, 0, 10, 20]), (1, [0, 10, 20, 30]), (2, [10, 20, 30, 30])):
      # A "model" that returns one channel of its input: the one that holds
      # slice s - 1 + channel.
      translator = volumes.VolumeTranslator(lambda x, c=channel: x[..., c:c + 1], _data(1),
                                            "AtoB", channels=3)
      got = translator.target.from_model(translator.translate(values, translator.source))
      self.assertAllClose(got[:, 5, 7], expected, atol=1e-3, msg=channel)

  def test_volume_equals_its_context_stacks_one_by_one(self):
    tmp = self.create_tempdir().full_path
    rng = np.random.default_rng(3)
    slices = rng.uniform(0.0, 100.0, (5, 16, 16)).astype(np.float32)
    path = _save_slices(os.path.join(tmp, "in", "v.nii.gz"), slices, AFFINE)
    self.assertAllClose(nifti.read_slices(path, "axial")[0][0], slices)
    generator = pix2pix_models.UNetGenerator(1, image_size=(16, 16), base_channels=4)
    generator(tf.zeros((1, 16, 16, 5)))
    fn = lambda x: generator(x, training=False)  # noqa: E731
    translator = volumes.VolumeTranslator(fn, _data(2), "AtoB", channels=5, stride=16)
    out = os.path.join(tmp, "out")
    written, skipped = volumes.translate_nifti(translator, path, out, "nifti")
    self.assertEqual(skipped, [])
    img = nib.load(written[0])
    self.assertEqual(img.shape, nib.load(path).shape)
    self.assertTrue(np.array_equal(img.affine, nib.load(path).affine))
    got = nifti.read_slices(written[0], "axial")[0][0]
    window = window_lib.Window(0.0, 100.0)
    for s in range(5):
      # Stacked by hand: slices s - 2 .. s + 2, the ends repeated.
      stack = np.stack([slices[min(max(i, 0), 4)] for i in range(s - 2, s + 3)], axis=-1)
      x = window.to_codes(stack, 16).astype(np.float32) / 65535 * 2 - 1
      y = fn(tf.constant(x[None])).numpy()[0, ..., 0]
      self.assertAllClose(got[s], window.from_model(y), atol=1e-3, msg=s)


def _tiny(data, model_dir, **kwargs):
  defaults = dict(algo="pix2pix", data=data, model_dir=model_dir, global_batch_size=2,
                  base_channels=4, log_every=10, sample_every=2, checkpoint_every=1000,
                  shuffle_buffer=16, strategy="mirrored", deterministic=True, cpu_replicas=1,
                  fresh=True, train_steps=2, num_samples=2)
  defaults.update(kwargs)
  return config_lib.TrainConfig(**defaults)


class EndToEndTest(tf.test.TestCase):
  """Convert with --context_slices=1, train pix2pix 2 steps, translate a volume."""

  def test_convert_train_translate(self):
    root = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    for i in range(2):
      a = rng.uniform(0.0, 100.0, (4, 32, 32)).astype(np.float32)
      _save_slices(os.path.join(root, "A", f"sub-0{i}_T1w.nii.gz"), a, AFFINE)
      _save_slices(os.path.join(root, "B", f"sub-0{i}_T2w.nii.gz"), 100.0 - a, AFFINE)
    data = os.path.join(root, "data")
    convert.run(convert.ConvertConfig(source=f"paired:nifti:{root}/A,{root}/B", output=data,
                                      num_workers=1, window=WINDOW, context_slices=1))
    model_dir = os.path.join(root, "run")
    result = trainer.run(_tiny(data, model_dir))
    algorithm = result.algorithm
    self.assertEqual(algorithm.generator.downs[0].kernel.shape[2], 3)  # Takes 3 slices...
    self.assertEqual(algorithm.generator.to_image.kernel.shape[2], 1)  # ...makes one.
    grid = images.read_file(os.path.join(model_dir, "samples", "step_0000002.png"))
    self.assertEqual(grid.shape[-1], 3)  # Input centre | output | target, in gray as RGB.
    _, info = run_dir.load_run(model_dir)
    self.assertEqual(info.shapes, {"image_a": (32, 32, 3), "image_b": (32, 32, 1)})
    self.assertEqual(info.context_slices, 1)

    volume = os.path.join(root, "A", "sub-01_T1w.nii.gz")
    out = os.path.join(root, "out")
    done = translate.run(translate.TranslateConfig(model_dir, volume, out))
    self.assertEqual(done.skipped, [])
    img = nib.load(done.written[0])
    self.assertEqual(img.shape, nib.load(volume).shape)
    self.assertTrue(np.array_equal(img.affine, nib.load(volume).affine))
    self.assertAllInRange(np.asarray(img.dataobj), -1e-3, 100.0 + 1e-3)

    info = export.export(algorithm, os.path.join(root, "export"))
    self.assertEqual((info["channels"], info["output_shape"]), (3, [None, 32, 32, 1]))
    with open(os.path.join(root, "export", export.INFO_NAME), encoding="utf-8") as f:
      self.assertEqual(json.load(f)["medical"]["context_slices"], 1)

    png_dir = os.path.join(root, "png")
    os.makedirs(png_dir)
    with open(os.path.join(png_dir, "a.png"), "wb") as f:
      f.write(images.encode(np.zeros((32, 32, 1), np.uint8), "png"))
    with self.assertRaisesRegex(ValueError, r"--context_slices=1.*holds images: give NIfTI"):
      translate.run(translate.TranslateConfig(model_dir, png_dir, os.path.join(root, "o2")))
    with self.assertRaisesRegex(ValueError, r"^--direction=BtoA, but the data holds A's slices"):
      algorithms.get("pix2pix").resolve(
          _tiny(data, model_dir, direction="BtoA"), algorithm.data)

  def test_preview_shows_the_centre_slice(self):
    config = algorithms.get("pix2pix").resolve(
        _tiny("unused", "unused", jitter=False), _data(1, (32, 32)))
    algo = algorithms.get("pix2pix")(config, _data(1, (32, 32)))
    algo.build()
    x = tf.random.uniform((2, 32, 32, 3), -1.0, 1.0)
    y = tf.random.uniform((2, 32, 32, 1), -1.0, 1.0)
    rows = algo.preview({"image_a": x, "image_b": y}).numpy()
    self.assertEqual(rows.shape, (6, 32, 32, 1))
    self.assertAllEqual(rows[0], x[0, ..., 1:2])
    self.assertAllEqual(rows[2], y[0])
    self.assertAllEqual(translation_ops.centre_slice(tf.reshape(tf.range(5), (1, 5)))[0], [2])


if __name__ == "__main__":
  tf.test.main()
