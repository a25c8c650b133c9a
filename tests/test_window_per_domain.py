"""A window per domain (`--window_b`): paired and unpaired medical sources
window their B side with its own spec, record both, and translation maps each
side with its own.

Why it matters, shown on CT targets: with a per-volume percentile window the
stored codes are relative to each volume's own window, so a perfect model's
codes, mapped back through the data's summary window, come out shifted for a
held-out volume whose content differs (here a partial scan, mostly soft
tissue). A fixed HU window (`--window_b=ct_full`) maps codes to HU the same
way for every volume, and the shift is gone.
"""

import json
import os

import nibabel as nib
import numpy as np
import tensorflow as tf

from inference import volumes
from input import convert
from input import reader
from input.medical import window as window_lib

AIR, TISSUE, BONE = -1000.0, 40.0, 1000.0


def _head_ct(partial, seed):
  """A 16x16x8 CT in HU: a full head (air around tissue, a bone ring), or a
  partial scan inside the head (tissue, a little bone, no air)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:16, :16]
  r = np.hypot(y - 7.5, x - 7.5)
  if partial:
    plane = np.where(r < 2, BONE, TISSUE)
  else:
    plane = np.where(r < 5, TISSUE, np.where(r < 7, BONE, AIR))
  vol = np.repeat(plane[..., None], 8, axis=2) + rng.normal(0, 1.0, (16, 16, 8))
  return vol.astype(np.float32)


def _write(root, name, vol):
  os.makedirs(root, exist_ok=True)
  nib.save(nib.Nifti1Image(vol, np.eye(4)), os.path.join(root, f"{name}.nii.gz"))


def _convert(a, b, output, **kwargs):
  return convert.run(convert.ConvertConfig(source=f"paired:nifti:{a},{b}", output=output,
                                           num_workers=1, **kwargs))


def _manifest(data):
  with open(os.path.join(data, "manifest.json"), encoding="utf-8") as f:
    return json.load(f)


def _decoded_b(data, window):
  """Every stored B pixel of `data`, mapped back to HU through `window`."""
  ds = reader.make_dataset(reader.ReaderConfig(data, split="train", repeat=False,
                                               drop_remainder=False), 64)
  x = np.concatenate([batch["image_b"].numpy() for batch in ds])  # Codes, normalized to [-1, 1].
  return window.from_model(x)


class WindowPerDomainTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    tmp = self.create_tempdir().full_path
    self.dirs = {k: os.path.join(tmp, k) for k in ("a", "b", "a_test", "b_test")}
    for i in range(3):  # Training subjects: MR-like A (arbitrary units), CT B.
      _write(self.dirs["a"], f"sub-0{i + 1}", _head_ct(False, i) * 0.5 + 600.0)
      _write(self.dirs["b"], f"sub-0{i + 1}", _head_ct(False, 10 + i))
    _write(self.dirs["a_test"], "sub-04", _head_ct(True, 3) * 0.5 + 600.0)
    _write(self.dirs["b_test"], "sub-04", _head_ct(True, 13))
    self.tmp = tmp

  def _pair(self, name, **kwargs):
    train = _convert(self.dirs["a"], self.dirs["b"], os.path.join(self.tmp, name), **kwargs)
    test = _convert(self.dirs["a_test"], self.dirs["b_test"],
                    os.path.join(self.tmp, name + "-test"), **kwargs)
    del train, test
    return os.path.join(self.tmp, name), os.path.join(self.tmp, name + "-test")

  def test_each_side_windowed_with_its_own_spec_and_recorded(self):
    data, _ = self._pair("both", window="percentile:0.5,99.5", window_b="ct_full")
    manifest = _manifest(data)
    self.assertEqual(manifest["medical"]["window"], "percentile:0.5,99.5")
    self.assertEqual(manifest["medical"]["window_b"], "ct_full")
    sides = {"A": [], "B": []}
    for entry in manifest["series"].values():
      sides[entry["side"]].append((entry["window"]["low"], entry["window"]["high"]))
    ct_full = window_lib.resolve(window_lib.parse("ct_full"), None, "CT")
    self.assertEqual(set(sides["B"]), {(ct_full.low, ct_full.high)})  # The fixed HU window.
    self.assertLen(set(sides["A"]), 3)  # Each A volume at its own percentiles.
    for low, high in sides["A"]:
      self.assertBetween(low, 90.0, 110.0)  # 0.5 x air + 600, noise aside.
      self.assertBetween(high, 1090.0, 1110.0)  # 0.5 x bone + 600.
    # pipeline.translate maps a B -> A run's input with B's own spec.
    self.assertEqual(volumes.domain_spec(manifest["medical"], "B"), "ct_full")
    self.assertEqual(volumes.domain_spec(manifest["medical"], "A"), "percentile:0.5,99.5")
    self.assertEqual(volumes.domain_spec({"window": "ct_brain"}, "B"), "ct_brain")

  def test_without_window_b_both_sides_share_window(self):
    data, _ = self._pair("one", window="percentile:0.5,99.5")
    manifest = _manifest(data)
    self.assertNotIn("window_b", manifest["medical"])
    for entry in manifest["series"].values():
      self.assertLess(entry["window"]["low"], entry["window"]["high"])
      if entry["side"] == "B":  # Percentiles of a full head: air to bone.
        self.assertBetween(entry["window"]["low"], -1010.0, -990.0)

  def test_a_fixed_target_window_removes_the_shift_of_a_partial_scan(self):
    medians = {}
    for name, kwargs in (("percentile", {}), ("fixed", dict(window_b="ct_full"))):
      data, test = self._pair(name, window="percentile:0.5,99.5", **kwargs)
      # The run's window for its B domain, as translate and sample map back with.
      summary = window_lib.Window.from_json(_manifest(data)["window"]["B"])
      # A perfect model gives the held-out volume's own stored codes.
      hu = _decoded_b(test, summary)
      medians[name] = float(np.median(hu))
    # The partial scan is mostly soft tissue (40 HU): through its own percentile
    # window tissue is code 0, which the training data's window reads as air.
    self.assertLess(medians["percentile"], -900.0)
    self.assertAllClose(medians["fixed"], TISSUE, atol=1.0)
    print(f"median HU of the held-out partial scan, 40 HU of tissue: "
          f"{medians['percentile']:.0f} (percentile B window), {medians['fixed']:.1f} (ct_full)")

  def test_refused_by_sources_with_one_side(self):
    with self.assertRaisesRegex(Exception, "window_b"):
      convert.run(convert.ConvertConfig(source=f"nifti:{self.dirs['b']}",
                                        output=os.path.join(self.tmp, "x"), window_b="ct_full",
                                        num_workers=1))


if __name__ == "__main__":
  tf.test.main()
