"""Builders of small input folders with known pixel content."""

import os

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save(path, array, **kwargs):
  """Saves a uint8/uint16 array with Pillow; makes parent folders."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)
  return path


def solid(h, w, value, channels=3, dtype=np.uint8):
  shape = (h, w) if channels == 1 else (h, w, channels)
  return np.full(shape, value, dtype)


def write_truncated_jpeg(path, h=64, w=64):
  """A real JPEG cut in half: the header reads, the pixels do not."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(0)
  tmp = path + ".full.jpg"
  Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp, quality=95)
  data = open(tmp, "rb").read()
  os.remove(tmp)
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return path


def make_class_folder(root, per_class=6, size=8):
  """root/{cat,dog}/i.png with a constant value per class: cat=40, dog=200."""
  for name, value in (("cat", 40), ("dog", 200)):
    for i in range(per_class):
      save(os.path.join(root, name, f"{i}.png"), solid(size, size, value))
  return root


def subprocess_env():
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return env
