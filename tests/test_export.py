"""pipeline.export: exported generators run in a fresh process that has only
TensorFlow (not this project), and give what the generators give in process."""

import json
import os
import site
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from inference import export
from inference import sampling
from inference import volumes
from tests import helpers
from tests import test_train
from tests import test_translation
from training import trainer

# Run with `python -S` (no site processing: no .pth files, so not even an
# editable install of this project) and only the interpreter's site-packages
# on sys.path, from an empty temporary directory.
_CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:] = [p for p in sys.path if p] + json.loads(sys.argv[1])
    for name in ("training", "models", "pipeline", "input"):
      try:
        __import__(name)
      except ImportError:
        pass
      else:
        raise SystemExit(f"project module {name!r} is importable in the child")
    import numpy as np
    import tensorflow as tf
    jobs = json.loads(sys.argv[2])
    out = {}
    for key, (path, inputs) in jobs.items():
      serve = tf.saved_model.load(path).signatures["serving_default"]
      args = {k: tf.constant(np.load(v)) for k, v in inputs.items()}
      out[key] = serve(**args)["images"].numpy()
    np.savez(sys.argv[3], **out)
    print("child ok")
""")


def _site_packages():
  return [p for p in site.getsitepackages() + [site.getusersitepackages()]
          if os.path.isdir(p) and os.path.realpath(p) != os.path.realpath(helpers.REPO_ROOT)]


def run_in_fresh_process(jobs, tmp):
  """Loads and runs SavedModels in a process without this project's modules.

  Args:
    jobs: {key: (saved_model_dir, {input_name: array})}.

  Returns:
    {key: output images}.
  """
  spec = {}
  for key, (path, inputs) in jobs.items():
    files = {}
    for name, value in inputs.items():
      files[name] = os.path.join(tmp, f"{key}_{name}.npy")
      np.save(files[name], value)
    spec[key] = (path, files)
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  result_path = os.path.join(tmp, "child_outputs.npz")
  cwd = os.path.join(tmp, "empty_cwd")
  os.makedirs(cwd, exist_ok=True)
  done = subprocess.run([sys.executable, "-S", "-c", _CHILD, json.dumps(_site_packages()),
                         json.dumps(spec), result_path],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and "child ok" in done.stdout, done.stdout + done.stderr
  with np.load(result_path) as f:
    return {k: f[k] for k in f.files}


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "export_runs")
    run = lambda cfg: trainer.run(cfg)  # noqa: E731
    flags = dict(train_steps=1, checkpoint_every=1, cpu_replicas=1, fresh=True)
    cls.cdcgan_dir = os.path.join(root, "cdcgan")
    cls.cdcgan = run(test_train.tiny_config("cdcgan", cls.cdcgan_dir, ema_decay=0.5, **flags))
    cls.cyclegan_dir = os.path.join(root, "cyclegan")
    cls.cyclegan = run(test_translation.tiny_config("cyclegan", cls.cyclegan_dir, **flags))

  def test_exports_run_without_the_project(self):
    tmp = self.create_tempdir().full_path
    # Conditional sampling GAN with an EMA generator.
    gan_out = os.path.join(tmp, "cdcgan_model")
    info = export.run(export.ExportConfig(self.cdcgan_dir, gan_out))
    self.assertEqual(info["generator"], "ema_generator")
    self.assertEqual(set(info["inputs"]), {"z", "labels"})
    algorithm, _ = sampling.load_algorithm(self.cdcgan_dir)
    z = np.random.default_rng(0).standard_normal((5, algorithm.config.z_dim)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    expected_gan = algorithm.ema_generator(z, labels, training=False).numpy()
    self.assertNotAllClose(expected_gan, algorithm.generator(z, labels, training=False))
    # Translation, at the training size and at a size that is no multiple of
    # the stride (padded inside the signature, as pipeline.translate pads).
    ab_out, ba_out = os.path.join(tmp, "cyclegan_ab"), os.path.join(tmp, "cyclegan_ba")
    export.run(export.ExportConfig(self.cyclegan_dir, ab_out))
    export.run(export.ExportConfig(self.cyclegan_dir, ba_out, direction="BtoA"))
    cyc = self.cyclegan.algorithm
    rng = np.random.default_rng(1)
    square = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    odd = rng.uniform(-1, 1, (1, 21, 30, 3)).astype(np.float32)
    padded = volumes.pad_to_stride(odd[0], cyc.stride)[None]
    expected = {
        "gan": expected_gan,
        "ab_square": cyc.translate_ab(square).numpy(),
        "ab_odd": cyc.translate_ab(padded).numpy()[:, :21, :30],
        "ba_square": cyc.translate_ba(square).numpy(),
    }
    got = run_in_fresh_process({
        "gan": (gan_out, {"z": z, "labels": labels}),
        "ab_square": (ab_out, {"images": square}),
        "ab_odd": (ab_out, {"images": odd}),
        "ba_square": (ba_out, {"images": square}),
    }, tmp)
    for key, value in expected.items():
      self.assertEqual(got[key].shape, value.shape, msg=key)
      self.assertAllClose(got[key], value, atol=1e-5, msg=key)
    self.assertNotAllClose(got["ab_square"], got["ba_square"])

  def test_pad_to_stride_matches_numpy(self):
    rng = np.random.default_rng(2)
    for h, w in ((21, 30), (3, 9), (4, 4), (1, 2)):
      x = rng.uniform(-1, 1, (h, w, 2)).astype(np.float32)
      got = export.pad_to_stride(x[None], 4)[0]
      self.assertAllEqual(got, volumes.pad_to_stride(x, 4))

  def test_cli_and_errors(self):
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "model")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pipeline.export", *args], env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=300)
    done = run(f"--model_dir={self.cdcgan_dir}", f"--output={out}")
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn("serving_default(z [None, 8] float32", done.stdout)
    with open(os.path.join(out, export.INFO_NAME), encoding="utf-8") as f:
      self.assertEqual(json.load(f)["output_shape"], [None, 16, 16, 3])
    again = run(f"--model_dir={self.cdcgan_dir}", f"--output={out}")
    self.assertEqual(again.returncode, 2)
    self.assertIn("already holds a SavedModel; pass --overwrite", again.stderr)
    with self.assertRaisesRegex(ValueError, "--direction applies to translation models"):
      export.run(export.ExportConfig(self.cdcgan_dir, os.path.join(tmp, "x"),
                                     direction="AtoB"))


if __name__ == "__main__":
  tf.test.main()
