"""bench/quality_images.py: the first-run check runs the README's main command
as printed, and its ShapeJudge (bench/judges.py) judges real images as real
and noise as noise."""

import os
import re

import numpy as np

from bench import judges
from bench import quality_images
from input import cache
from tests import helpers


def test_first_run_check_runs_the_readme_main_command():
  with open(os.path.join(helpers.REPO_ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  install = re.search(r"pip install -q -e \. && python (-m pipeline\.train[^\n]*)\n", readme)
  assert install, "README: no install-and-run command"
  assert tuple(install.group(1).split()) == quality_images.FIRST_RUN_ARGS


def test_shape_judge_separates_real_shapes_from_noise(tmp_path):
  data = cache.ensure_builtin("shapes", cache_dir=str(tmp_path), max_examples=2000)
  judge = judges.ShapeJudge(data, epochs=6)
  real = judges.split_arrays(data, "test")
  noise = np.random.default_rng(0).uniform(-1, 1, real["image"].shape).astype(np.float32)
  assert judge.accuracy >= 0.9
  wrong = (real["label"] + 1) % 3  # Every label replaced by another class.
  assert judge.agreement(real["image"], wrong) <= 1 - judge.accuracy
  # Real test images are their own reference: FID ~0 (float round-off);
  # uniform noise is far from them.
  assert judge.fid(real["image"]) < 1e-3
  assert judge.fid(noise) > 100 * max(judge.fid(real["image"]), 1e-2)
  np.testing.assert_allclose(judge.shares(real["image"]).sum(), 1.0)
