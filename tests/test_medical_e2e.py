"""Medical images end to end, through the binaries a user runs:

a folder of DICOM series (4 patients) -> `pipeline.convert` with a CT window
and a patient-level holdout -> `pipeline.train` -> `pipeline.sample
--format=nifti` in Hounsfield units -> `pipeline.evaluate --memorization`
against the held-out patients. The series are written here from pydicom's
own CT_small.dcm (found through the installed package)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from input.medical import window as window_lib
from tests import helpers

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # pylint: disable=g-import-not-at-top

PATIENTS = ("pat-a", "pat-b", "pat-c", "pat-d")
SLICES = 4


def _write_series(root, rng):
  """One series per patient, SLICES slices of smooth random tissue in HU."""
  base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  slope, intercept = float(base.RescaleSlope), float(base.RescaleIntercept)
  for p, patient in enumerate(PATIENTS):
    uid = pydicom.uid.generate_uid()
    for k in range(SLICES):
      ds = base.copy()
      ds.PatientID, ds.PatientName = patient, f"Doe^{patient}"
      ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
      ds.ImagePositionPatient = [0.0, 0.0, float(k)]
      hu = rng.uniform(-100, 200, (ds.Rows // 8, ds.Columns // 8))
      hu = np.kron(hu, np.ones((8, 8)))  # Blocks: something for a conv net to see.
      ds.PixelData = np.round((hu - intercept) / slope).astype(np.int16).tobytes()
      folder = os.path.join(root, f"study{p}")
      os.makedirs(folder, exist_ok=True)
      ds.save_as(os.path.join(folder, f"IM{k:04d}"))  # No extension, as scanners write.


def _binary(name, *flags):
  out = subprocess.run([sys.executable, "-m", f"pipeline.{name}", *flags],
                       capture_output=True, text=True, cwd=helpers.REPO_ROOT,
                       env=helpers.subprocess_env(), timeout=300)
  assert out.returncode == 0, f"pipeline.{name} failed:\n{out.stdout}\n{out.stderr}"
  return out


def test_dicom_folder_to_samples_in_hounsfield_units_and_an_audit(tmp_path):
  rng = np.random.default_rng(0)
  scans, data, run = tmp_path / "scans", tmp_path / "ct-tfr", tmp_path / "run"
  _write_series(str(scans), rng)

  _binary("convert", f"--source=dicom:{scans}", f"--output={data}", "--window=ct_abdomen",
          "--holdout=0.5", "--split_by=patient", "--image_size=16", "--num_workers=1")
  with open(data / "manifest.json", encoding="utf-8") as f:
    manifest = json.load(f)
  # Two of the four patients in each split, whole series only.
  counts = {s: manifest["splits"][s]["num_examples"] for s in ("train", "test")}
  assert counts == {"train": 2 * SLICES, "test": 2 * SLICES}, counts
  window = window_lib.Window.from_json(manifest["window"]["image"])
  assert (window.low, window.high) == (-160.0, 240.0)  # ct_abdomen: 40 +- 200 HU.
  text = json.dumps(manifest)
  assert not any(p in text for p in PATIENTS), "a PatientID reached the manifest"

  _binary("train", "--algo=dcgan", f"--data={data}", f"--model_dir={run}", "--train_steps=4",
          "--global_batch_size=4", "--base_channels=4", "--z_dim=8", "--log_every=2",
          "--checkpoint_every=4", "--sample_every=4", "--num_samples=4", "--deterministic")
  assert any(f.endswith(".png") for f in os.listdir(run / "samples"))

  synth = tmp_path / "synth"
  _binary("sample", f"--model_dir={run}", "--num=6", f"--output={synth}", "--format=nifti")
  volume = nib.load(str(synth / "samples.nii.gz"))
  values = np.asarray(volume.dataobj, np.float32)
  assert sorted(values.shape) == [6, 16, 16], values.shape
  # In HU, inside the window: tanh outputs map onto [low, high].
  assert values.min() >= window.low - 1e-3 and values.max() <= window.high + 1e-3
  assert values.std() > 0

  # Memorization audit against the held-out patients, with a small feature
  # network of the test's own (the default Inception needs a download).
  features = tmp_path / "features.keras"
  keras.utils.set_random_seed(0)
  keras.Sequential([keras.layers.Input((16, 16, 1)), keras.layers.Conv2D(8, 3),
                    keras.layers.GlobalAveragePooling2D(name="pool")]).save(str(features))
  report_path = tmp_path / "eval.json"
  _binary("evaluate", f"--model_dir={run}", f"--real={data}", f"--features={features}",
          "--num_samples=16", "--num_real=0", "--kid_subsets=2", "--kid_subset_size=4",
          "--memorization", f"--output={report_path}", "--nocache_stats")
  with open(report_path, encoding="utf-8") as f:
    report = json.load(f)["memorization"]
  assert (report["num_train"], report["num_test"]) == (2 * SLICES, 2 * SLICES)
  assert report["num_samples"] == 16
  assert report["memorized"] is False  # 3 training steps draw no copies.
  for space in ("pixel", "feature"):
    assert 0 <= report[space]["copies"] <= 16
    assert 0.0 <= report[space]["p_value"] <= 1.0
