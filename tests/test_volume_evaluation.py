"""pipeline.evaluate on runs trained on volumes (issue 31): the held-out
split of paired 3-D patches stored as tiles and reassembled bit for bit;
paired fidelity of whole held-out volumes through the sliding window (an
identity model scores MAE 0 and SSIM 1, a known offset its MAE by hand); a
3-D pix2pix run scored end to end, and during training; the memorization
audit and FID of a 3-D wgan_gp run (features of the mid-planes).

Data: 4 phantom subjects at 16^3, half held out by patient."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation import during_training
from evaluation import evaluate
from evaluation import fidelity
from evaluation import paired_data
from evaluation import volume_features
from inference import sliding_window
from input import convert
from input import reader
from input.medical import tiles
from tests import test_volumes_3d
from training import samples as samples_lib
from training import trainer

nib = pytest.importorskip("nibabel")

SIZE = 16
PATCH = 8
_DATA = {}


def data(name):
  """Phantom data converted with --volumes --holdout=0.5, shared by this
  process's tests: `patches` (T1w -> T2w, 2 random 8^3 patches per training
  pair, held-out pairs as tiles), `same` (T1w -> T1w patches: the identity
  is exact), `whole` (T1w -> T1w whole volumes), `image` (T1w volumes)."""
  if name not in _DATA:
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "volume_evaluation")
    phantom = test_volumes_3d.small_phantom()
    t1, t2 = os.path.join(phantom, "T1w"), os.path.join(phantom, "T2w")
    source, extra = {
        "patches": (f"paired:nifti:{t1},{t2}", dict(patch_size=PATCH, patches_per_volume=2)),
        "same": (f"paired:nifti:{t1},{t1}", dict(patch_size=PATCH, patches_per_volume=2)),
        "whole": (f"paired:nifti:{t1},{t1}", {}),
        "image": (f"nifti:{t1}", {}),
    }[name]
    out = os.path.join(root, name)
    if not os.path.isdir(out):
      convert.run(convert.ConvertConfig(source=source, output=out, volumes=True,
                                        volume_size=(SIZE,), holdout=0.5, num_workers=1,
                                        min_shards=1, **extra))
    _DATA[name] = out
  return _DATA[name]


def _manifest(data_dir):
  with open(os.path.join(data_dir, "manifest.json"), encoding="utf-8") as f:
    return json.load(f)


def _records(data_dir, split):
  """{key: (image_a, image_b)} stored codes of a split."""
  ds = reader.make_dataset(reader.ReaderConfig(
      data_dir, split=split, shuffle_buffer=0, repeat=False, drop_remainder=False,
      deterministic=True, with_keys=True, normalize=False), 8)
  return {k.decode(): (a, b) for batch in ds.as_numpy_iterator()
          for k, a, b in zip(batch["key"], batch["image_a"], batch["image_b"])}


def feature_network(path):
  """A tiny untrained 2-D Keras network (16x16 gray in, an 8-d embedding)."""
  keras.utils.set_random_seed(0)
  keras.Sequential([
      keras.layers.Input((SIZE, SIZE, 1)),
      keras.layers.Conv2D(4, 3, activation="relu"),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(8, activation="relu", name="embedding"),
      keras.layers.Dense(2, name="logits"),
  ]).save(path)
  return path


class TilesTest(tf.test.TestCase):

  def test_grid_is_the_sliding_window_at_overlap_zero(self):
    for size, n in ((16, 8), (16, 16), (13, 4), (10, 3), (5, 5)):
      self.assertEqual(tiles.tile_starts(size, n), sliding_window.patch_starts(size, n, 0.0))
    self.assertEqual(tiles.tile_starts(10, 4), [0, 4, 6])  # The last flush with the border.
    with self.assertRaisesRegex(ValueError, "a tile of 9 voxels does not fit along an axis "
                                            "of 8"):
      tiles.tile_starts(8, 9)

  def test_reassembly_is_bit_for_bit(self):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 65536, (13, 10, 8, 1), dtype=np.uint16)
    corners = tiles.tile_corners(volume.shape[:3], 4)
    self.assertLen(corners, 4 * 3 * 2)  # Starts 0,4,8,9 / 0,4,6 / 0,4.
    cut = np.stack([volume[d:d + 4, h:h + 4, w:w + 4] for d, h, w in corners])
    order = rng.permutation(len(cut))  # Any order: the corners say where.
    back = tiles.assemble(cut[order], corners[order])
    self.assertEqual(back.dtype, np.uint16)
    self.assertAllEqual(back, volume)
    with self.assertRaisesRegex(ValueError, r"leave \d+ of 1040 voxels .* uncovered"):
      tiles.assemble(cut[1:], corners[1:])

  def test_held_out_tiles_are_the_held_out_volumes(self):
    out = data("patches")
    m = _manifest(out)
    self.assertEqual(m["medical"]["test_split"], "tiles")
    train, test = _records(out, "train"), _records(out, "test")
    # The training split keeps its random patches (2 per pair); tiles: 2^3 per held-out pair.
    self.assertTrue(all(k.rpartition("/")[2].startswith("p") for k in train))
    self.assertLen(train, 2 * 2)
    self.assertLen(test, 2 * 8)
    held_out = sorted({k.rpartition("/")[0] for k in test})
    self.assertEqual(held_out, sorted(m["holdout"]["test_groups"]))  # One pair per patient.
    whole = _records(data("whole"), "test")  # The same pairs' volumes, converted whole.
    for pid in held_out:
      keys = sorted(k for k in test if k.startswith(pid + "/"))
      corners = [m["patch_corners"][k] for k in keys]
      self.assertEqual(sorted(map(tuple, corners)),
                       sorted(map(tuple, tiles.tile_corners((SIZE,) * 3, PATCH).tolist())))
      a = tiles.assemble(np.stack([test[k][0] for k in keys]), corners)
      self.assertAllEqual(a, whole[pid][0])  # A is T1w in both conversions.

  def test_a_split_by_file_of_patches_is_refused(self):
    tmp = self.create_tempdir().full_path
    phantom = test_volumes_3d.small_phantom()
    with self.assertRaisesRegex(convert.ConvertError, r"has patches in both train and test: "
                                                      r".*--split_by=patient\|study\|series"):
      convert.run(convert.ConvertConfig(
          source=f"paired:nifti:{phantom}/T1w,{phantom}/T2w", output=tmp + "/x", volumes=True,
          volume_size=(SIZE,), holdout=0.5, split_by="file", patch_size=PATCH,
          patches_per_volume=4, num_workers=1, min_shards=1))


class HeldOutVolumesTest(tf.test.TestCase):
  """T1w -> T1w: the identity translates exactly, so every figure is known."""

  def held_out(self, name):
    return paired_data.HeldOutPairs(data(name), _manifest(data(name)), "AtoB")

  def test_identity_scores_mae_0_and_ssim_1(self):
    for name in ("same", "whole"):
      held_out = self.held_out(name)
      self.assertLen(held_out.volumes, 2)
      self.assertEqual(held_out.patch_size, (PATCH,) * 3 if name == "same" else (SIZE,) * 3)
      for v, p in zip(held_out.volumes, held_out.predict(lambda x: x)):
        self.assertEqual(v.reference.shape, (SIZE,) * 3)
        self.assertGreater(v.mask.sum(), 1000)
        f = fidelity.volume_figures(p, v.reference, v.window.high - v.window.low, v.mask)
        width = v.window.high - v.window.low
        # The Gaussian blend of equal patches divides a sum by its weights: float32 rounding.
        self.assertLess(f["mae"], 1e-6 * width, name)
        self.assertAllClose([f["ssim_2d"], f["ssim_3d"]], [1.0, 1.0], atol=1e-6)

  def test_patch_data_without_tiles_is_refused(self):
    manifest = _manifest(data("same"))
    del manifest["medical"]["test_split"]  # As converted before the held-out split was tiled.
    with self.assertRaisesRegex(ValueError, r"holds random 3-D patches in its held-out split, "
                                            r"which cannot be put back into whole volumes"):
      paired_data.HeldOutPairs(data("same"), manifest, "AtoB")

  def test_a_known_offset_gives_its_mae(self):
    held_out = self.held_out("same")
    offset = 0.25  # In the model's [-1, 1]: 1/8 of the window; clipped at its low end.
    predictions = held_out.predict(lambda x: x - offset)
    for v, p in zip(held_out.volumes, predictions):
      width = v.window.high - v.window.low
      # A voxel r above low + width/8 drops by width/8; below, to low (r - low).
      expected = np.minimum(v.reference - v.window.low, offset / 2 * width)[v.mask].mean()
      self.assertAllClose(fidelity.mae(p, v.reference, v.mask), expected, rtol=1e-5)
      self.assertGreater(expected, 0.1 * width)  # Most of the body is above low + width/8.


class Pix2pixVolumeTest(tf.test.TestCase):

  def test_pix2pix_on_patches_scored_end_to_end_and_during_training(self):
    tmp = self.create_tempdir().full_path
    features = feature_network(os.path.join(tmp, "features.keras"))
    run = os.path.join(tmp, "run")
    trainer.run(test_volumes_3d.tiny_config(
        "pix2pix", run, data=data("patches"), cpu_replicas=1, train_steps=2,
        checkpoint_every=2, eval_every=2, eval_features=features, eval_num_samples=10),
                evaluator_factory=during_training.DuringTraining)
    with open(os.path.join(run, "eval.jsonl"), encoding="utf-8") as f:
      line = json.loads(f.readlines()[-1])
    self.assertEqual(line["step"], 2)
    for name in ("mae", "rmse", "psnr", "ssim", "ssim_3d", "fid"):
      self.assertTrue(np.isfinite(line["metrics"][name]), name)
    output = os.path.join(tmp, "eval", "eval.json")
    result = evaluate.run(evaluate.EvaluateConfig(model_dir=run, real=data("patches"),
                                                  output=output))
    with open(output, encoding="utf-8") as f:
      written = json.load(f)
    paired = written["paired"]
    m = _manifest(data("patches"))
    self.assertEqual([v["name"] for v in paired["volumes"]], sorted(m["holdout"]["test_groups"]))
    # The same checkpoint (step 2) scored during training and afterwards.
    self.assertAllClose(line["metrics"]["mae"], paired["summary"]["model"]["mae"]["mean"],
                        rtol=1e-5)
    self.assertIn("intensity_mapping", paired["summary"])
    self.assertIn("skipped", paired["baselines"]["identity"])  # T1w and T2w: no shared units.
    self.assertIn("sliding windows of 8x8x8", paired["protocol"]["slices"])
    for v in paired["volumes"]:
      self.assertEqual(v["voxels"], int(v["voxels"]))
      for method in ("model", "intensity_mapping"):
        for figure in fidelity.FIGURES:
          self.assertIsNotNone(v[method][figure], (method, figure))
    self.assertLen(result["files"]["pictures"], 2)
    for png in result["files"]["pictures"]:
      self.assertTrue(os.path.isfile(png))


class SamplingVolumeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.dirname(data("image"))
    cls.features = feature_network(os.path.join(root, "features.keras"))
    cls.model_dir = os.path.join(root, "wgan_gp")
    if not os.path.isdir(cls.model_dir):
      trainer.run(test_volumes_3d.tiny_config("wgan_gp", cls.model_dir, data=data("image"),
                                              cpu_replicas=1, global_batch_size=2,
                                              checkpoint_every=2))

  def config(self, **kwargs):
    return evaluate.EvaluateConfig(real=data("image"), features=self.features, num_real=0,
                                   batch_size=4, kid_subsets=2, kid_subset_size=2,
                                   cache_stats=False, **kwargs)

  def test_planes_are_the_mid_slices_cells(self):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 5, 4, 1)).astype(np.float32)
    planes = volume_features.planes(x)
    self.assertEqual(planes.shape, (6, 6, 5, 1))  # Cells of max(H, D) x max(W, H).
    grid = samples_lib.mid_slices(x)
    for b in range(2):
      for i in range(3):
        self.assertAllEqual(planes[3 * b + i], grid[b, :, 5 * i:5 * (i + 1)])
    self.assertAllEqual(planes[0, 0:5, 0:4], x[0, 3])  # The plane at D // 2, centred.

  def test_fid_is_that_of_the_mid_planes(self):
    out = evaluate.run(self.config(model_dir=self.model_dir, num_samples=4))
    for name in ("fid", "kid", "precision", "recall"):
      self.assertIn(name, out["metrics"])
    self.assertTrue(np.isfinite(out["metrics"]["fid"]))
    self.assertEqual(out["protocol"]["volumes"], volume_features.PROTOCOL)
    self.assertEqual((out["protocol"]["num_fake"], out["protocol"]["num_real"]), (3 * 4, 3 * 2))

  def test_memorization_audit_of_a_3d_run(self):
    out = evaluate.run(self.config(model_dir=self.model_dir, num_samples=4, memorization=True,
                                   memorization_k=2))
    report = out["memorization"]
    self.assertEqual((report["num_samples"], report["num_train"], report["num_test"]),
                     (4, 2, 2))
    self.assertGreater(report["pixel"]["sample_ratio_median"], 0.0)
    # An exact copy of each training volume, injected as the samples: ratio 0 in both spaces.
    train = _records_of(data("image"), "train")
    tmp = self.create_tempdir().full_path
    npz = os.path.join(tmp, "copies.npz")
    np.savez(npz, x=train)
    copies = evaluate.run(self.config(samples=npz, memorization=True, trust_split=True,
                                      memorization_k=2, output=os.path.join(tmp, "eval.json")))
    report = copies["memorization"]
    self.assertEqual(report["pixel"]["copies"], 2)
    self.assertIn("mid-planes", report["protocol"]["volumes"])
    self.assertEqual(report["pixel"]["sample_ratio_median"], 0.0)
    self.assertEqual(report["feature"]["sample_ratio_median"], 0.0)
    self.assertEqual([p["pixel_ratio"] for p in report["pairs"]], [0.0, 0.0])
    # The pairs picture: a row of mid-planes (16 x 3*16) per pair, sample beside training copy.
    picture = np.asarray(tf.io.decode_png(tf.io.read_file(report["pairs_png"])))
    self.assertEqual(picture.shape, (2 * (SIZE + 2) + 2, 2 * (3 * SIZE + 2) + 2, 3))
    first = train[report["pairs"][0]["sample"]][None]
    self.assertAllEqual(picture[2:2 + SIZE, 2:2 + 3 * SIZE, 0],
                        samples_lib.to_uint8(samples_lib.mid_slices(first))[0, ..., 0])

  def test_a_folder_of_images_against_volumes_is_refused(self):
    folder = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, "^volume data is compared with a .npz or a model, "
                                            "not a folder of images$"):
      evaluate.run(self.config(samples=folder))


def _records_of(data_dir, split):
  """The [-1, 1] volumes of a split of image data, in shard order."""
  ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=split, shuffle_buffer=0,
                                               repeat=False, drop_remainder=False,
                                               deterministic=True), 8)
  return np.concatenate([b["image"] for b in ds.as_numpy_iterator()])


if __name__ == "__main__":
  tf.test.main()
