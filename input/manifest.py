"""The dataset manifest (`manifest.json`) and the TFRecord shard naming.

A converted dataset directory holds `<split>-NNNNN-of-MMMMM.tfrecord` shards
and one `manifest.json`, which the reader trusts:

    {
      "format_version": 1,
      "kind": "image" | "vector" | "paired" | "unpaired",
      "features": {"image": {"shape": [H, W, C], "dtype": "uint8",
                             "encoding": "raw"}},       # or "vector": {"shape": [D]}
      "label_names": ["circle", ...] | null,
      "splits": {"train": {"num_examples": N, "label_counts": {...},
                           "shards": [{"file", "num_records", "sha256", "bytes"}]}},
      "skipped": [{"key", "reason"}], "num_inputs": N,
      "source": "...", "command_line": "...", "config": {...}
    }

Image features are [H, W, C], or [D, H, W, 1] for whole volumes
(`pipeline.convert --volumes`, `medical.volumes` true).
Features per kind: image and unpaired -> `image`; paired -> `image_a`,
`image_b`; vector -> `vector`. Unpaired data has one split per domain
(`trainA`, `trainB`, ...).
"""

import json
import os
import re

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
KINDS = ("image", "vector", "paired", "unpaired")
FEATURES_BY_KIND = {
    "image": ("image",),
    "unpaired": ("image",),
    "paired": ("image_a", "image_b"),
    "vector": ("vector",),
}
_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")


class ManifestError(ValueError):
  """A dataset directory that is missing, incomplete, or unfit for the model."""


def shard_name(split, index, count):
  """`train-00003-of-00016.tfrecord`, the Model Garden / TFDS convention."""
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def is_shard_name(name):
  return _SHARD_RE.match(name) is not None


def write_text_atomic(path, text):
  """Writes `text` to a temporary name, fsyncs, then renames over `path`."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json_atomic(path, obj):
  """Writes JSON to a temporary name, fsyncs, then renames over `path`."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load(data_dir):
  """Reads and sanity-checks `DATA_DIR/manifest.json`.

  Raises:
    ManifestError: no manifest (the directory was never converted, or its
      conversion did not finish), or a manifest of an unknown format.
  """
  path = os.path.join(data_dir, MANIFEST_NAME)
  if not os.path.isfile(path):
    if os.path.isdir(os.path.join(data_dir, ".convert")):
      raise ManifestError(f"{data_dir!r} holds an unfinished conversion (no {MANIFEST_NAME}); "
                          "re-run the conversion, or run it with --finalize")
    raise ManifestError(f"no {MANIFEST_NAME} in {data_dir!r}; convert the data first with "
                        "`python -m pipeline.convert --source=... --output=DIR`")
  with open(path, encoding="utf-8") as f:
    m = json.load(f)
  if m.get("format_version") != FORMAT_VERSION:
    raise ManifestError(f"{path}: format_version {m.get('format_version')!r}, this code reads "
                        f"{FORMAT_VERSION}")
  if m.get("kind") not in KINDS:
    raise ManifestError(f"{path}: unknown kind {m.get('kind')!r}")
  return m


def shard_paths(data_dir, manifest, split):
  """Absolute shard paths of `split`, checking that each file exists.

  Raises:
    ManifestError: unknown split (listing the valid ones) or a missing shard.
  """
  splits = manifest["splits"]
  if split not in splits:
    raise ManifestError(f"dataset {data_dir!r} has no split {split!r}; it has "
                        f"{', '.join(sorted(splits))}")
  paths = []
  for shard in splits[split]["shards"]:
    p = os.path.join(data_dir, shard["file"])
    if not os.path.isfile(p):
      raise ManifestError(f"shard {p!r} listed in the manifest is missing")
    paths.append(p)
  return paths
