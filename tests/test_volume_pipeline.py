"""The outputs of runs trained on volumes, end to end on phantom volumes
converted with --volumes: 3-D pix2pix and dcgan trained two steps, their
previews (three mid-planes per volume), pipeline.translate of a whole NIfTI
scan by sliding windows, pipeline.sample as NIfTI volumes with the training
spacing, and pipeline.export of both, loaded back."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from inference import export
from inference import sampling
from inference import translate
from inference import volumes
from input import convert
from input.medical import phantom_files
from training import config as config_lib
from training import run_dir
from training import trainer

nib = pytest.importorskip("nibabel")

SIZE = 16


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
  root = tmp_path_factory.mktemp("volume_pipeline")
  folder = os.path.join(root, "phantom")
  phantom_files.run(phantom_files.PhantomConfig(output=folder, subjects=3, seed=0,
                                                size=(20, 20, 18)))
  return root, folder


def _train(root, folder, algo):
  source = (f"paired:nifti:{folder}/T1w,{folder}/T2w" if algo == "pix2pix"
            else f"nifti:{folder}/T1w")
  data = os.path.join(root, f"data-{algo}")
  convert.run(convert.ConvertConfig(source=source, output=data, volumes=True,
                                    volume_size=(SIZE,), num_workers=1, min_shards=1))
  model_dir = os.path.join(root, f"run-{algo}")
  extra = {} if algo == "pix2pix" else {"z_dim": 8}
  trainer.run(config_lib.TrainConfig(
      algo=algo, data=data, model_dir=model_dir, global_batch_size=2, base_channels=4,
      train_steps=2, log_every=1, sample_every=1, checkpoint_every=2, num_samples=2,
      shuffle_buffer=4, strategy="one_device", **extra))
  return model_dir


def _preview(model_dir):
  folder = os.path.join(model_dir, run_dir.SAMPLES_SUBDIR)
  return np.asarray(Image.open(os.path.join(folder, sorted(os.listdir(folder))[-1])))


def test_pix2pix_previews_translate_and_export(phantom, tmp_path):
  root, folder = phantom
  model_dir = _train(root, folder, "pix2pix")
  # Rows of input | output | target, each its three 16 x 16 mid-planes.
  rows, cols, _ = _preview(model_dir).shape
  assert cols == 2 + 3 * (3 * SIZE + 2) and (rows - 2) % (SIZE + 2) == 0

  scan = os.path.join(folder, "T1w", "sub-01", "anat", "sub-01_T1w.nii.gz")
  out = os.path.join(tmp_path, "translated")
  result = translate.run(translate.TranslateConfig(model_dir=model_dir, input=scan, output=out,
                                                   overlap=0.5))
  assert not result.skipped
  # Named as the target contrast (the conversion recorded each side's BIDS suffix).
  assert result.written == [os.path.join(out, "sub-01_T2w.nii.gz")]
  src, dst = nib.load(scan), nib.load(result.written[0])
  assert dst.shape == src.shape == (20, 20, 18)
  np.testing.assert_array_equal(dst.affine, src.affine)
  values = dst.get_fdata()
  assert np.isfinite(values).all() and values.std() > 0
  with open(os.path.join(out, volumes.WINDOW_NAME), encoding="utf-8") as f:
    layout = json.load(f)["sliding_window"]
  assert layout["patch_size"] == [SIZE] * 3 and layout["overlap"] == 0.5

  exported = os.path.join(tmp_path, "exported")
  info = export.run(export.ExportConfig(model_dir=model_dir, output=exported))
  assert info["patch_size"] == [SIZE] * 3
  serve = tf.saved_model.load(exported).signatures["serving_default"]
  algorithm, _ = sampling.load_algorithm(model_dir)
  x = tf.random.stateless_uniform((1, SIZE, SIZE, SIZE, 1), (0, 1), -1.0, 1.0)
  np.testing.assert_allclose(serve(images=x)["images"], algorithm.translate(x), atol=1e-5)


def test_dcgan_previews_samples_and_export(phantom, tmp_path):
  root, folder = phantom
  model_dir = _train(root, folder, "dcgan")
  assert _preview(model_dir).shape == (2 + SIZE + 2, 2 + 2 * (3 * SIZE + 2), 3)

  out = os.path.join(tmp_path, "samples")
  sampling.run(sampling.SampleConfig(model_dir=model_dir, output=out, format="nifti", num=2))
  algorithm, _ = sampling.load_algorithm(model_dir)
  spacing = algorithm.data.voxel_spacing["image"]  # [D, H, W] mm, D along z (axial).
  for name in ("00000.nii.gz", "00001.nii.gz"):
    img = nib.load(os.path.join(out, name))
    assert img.shape == (SIZE,) * 3
    assert img.header.get_zooms() == pytest.approx((spacing[2], spacing[1], spacing[0]))
  with pytest.raises(ValueError, match="--format=png16 writes 2-D images"):
    sampling.run(sampling.SampleConfig(model_dir=model_dir, output=os.path.join(tmp_path, "p"),
                                       format="png16", num=1))

  exported = os.path.join(tmp_path, "exported")
  export.run(export.ExportConfig(model_dir=model_dir, output=exported))
  z = tf.random.stateless_normal((2, 8), (5, 6))
  y = tf.saved_model.load(exported).signatures["serving_default"](z=z)["images"]
  assert y.shape == (2, SIZE, SIZE, SIZE, 1)
  np.testing.assert_allclose(y, algorithm.sample(z), atol=1e-5)
