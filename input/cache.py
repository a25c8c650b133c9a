"""The converted-data cache, and the one resolver from a data spec to a
converted directory (`--data` of pipeline.train, `--real` of
pipeline.evaluate).

A source is converted once into `<cache>/<kind>/<name>-<key>`, where the key
covers the source's paths, its content fingerprint (every file's relative
name, size and modification time) and the conversion settings. A folder
whose files changed since it was converted gets a new key, and so is
converted again; the log says so, and the stale entry is removed.

DICOM and NIfTI sources are refused here (`refuse_medical`): their window
and held-out patients are settings of `pipeline.convert`, which converts
them once into a directory that --data and --real then name.
"""

import hashlib
import os
import re
import shlex
import shutil

from absl import logging

from input import builtin
from input import convert
from input import manifest as manifest_lib
from input import sources


def default_cache_dir():
  """$GAN_PIPELINE_DATA, or ~/.cache/gan_pipeline."""
  return os.environ.get("GAN_PIPELINE_DATA") or os.path.join(
      os.path.expanduser("~"), ".cache", "gan_pipeline")


def content_fingerprint(paths):
  """A digest of every file under `paths` (files or folders): relative name,
  size and modification time, in a fixed order. Hidden files count too: a
  fingerprint must change whenever the conversion's input could."""
  h = hashlib.sha256()
  for root in paths:
    h.update(os.path.abspath(root).encode() + b"\0")
    if os.path.isfile(root):
      st = os.stat(root)
      h.update(f"{st.st_size}:{st.st_mtime_ns}\0".encode())
      continue
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
      dirnames.sort()
      for name in sorted(filenames):
        path = os.path.join(dirpath, name)
        try:
          st = os.stat(path)
        except OSError:  # A dangling link: the conversion reports it.
          continue
        h.update(f"{os.path.relpath(path, root)}:{st.st_size}:{st.st_mtime_ns}\0".encode())
  return h.hexdigest()


def _local_paths(source):
  """The local paths a `folder:`/`paired:`/`unpaired:`/`npz:` source reads.

  Raises:
    ValueError: a path that does not exist (one line, naming it).
  """
  kind = source.partition(":")[0]
  paths = sources.local_paths(source)
  if not paths:
    raise sources.SourceError(f"source {source!r} names no path")
  for p in paths:
    if not os.path.exists(p):
      raise sources.SourceError(f"{kind} source {p!r} does not exist (from {source!r})")
  return paths


def ensure_converted(source, cache_dir=None, image_size=None, seed=0, max_examples=None,
                     num_workers=None):
  """Returns a converted copy of `source` in the cache, converting it once.

  The conversion goes into a temporary sibling directory that is renamed into
  place, so concurrent callers (several workers of one job) never see a
  partial dataset.

  Args:
    source: a `KIND:ARG` source spec (see `input.sources`).
    cache_dir: defaults to `default_cache_dir()`.
    image_size, seed, max_examples: as for the conversion; part of the cache key.

  Raises:
    ValueError: a source that does not exist or cannot be converted (one
      line, naming it).
  """
  cache_dir = cache_dir or default_cache_dir()
  kind, _, arg = source.partition(":")
  settings = ""
  if kind == "builtin":
    info = builtin.info(arg)
    prefix = f"builtin/{arg}-seed{seed}"
    if info.kind != "vector":
      settings += f"-{image_size or info.default_image_size}px"
    content = ""
  else:
    scheme = sources.find(source)
    if scheme is not None and scheme.local:
      paths = _local_paths(source)
      key_paths = ",".join(os.path.abspath(p) for p in paths)
      content = "-" + content_fingerprint(paths)[:12]
    else:
      key_paths, content = arg, ""
    digest = hashlib.sha256(f"{kind}\0{key_paths}\0".encode()).hexdigest()[:12]
    prefix = f"{kind}/{os.path.basename(arg.split(',')[0].rstrip('/')) or kind}-{digest}"
    if image_size:
      settings += f"-{image_size}px"
  if max_examples:
    settings += f"-n{max_examples}"
  final = os.path.join(cache_dir, prefix + content + settings)
  if os.path.isfile(os.path.join(final, manifest_lib.MANIFEST_NAME)):
    return final
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  base = os.path.basename(prefix)
  # The same source and settings converted from other contents.
  same_source = re.compile(re.escape(base) + r"-[0-9a-f]{12}" + re.escape(settings))
  stale = [os.path.join(parent, name) for name in sorted(os.listdir(parent))
           if content and same_source.fullmatch(name)
           and os.path.isfile(os.path.join(parent, name, manifest_lib.MANIFEST_NAME))]
  if stale:
    logging.info("%s changed since it was converted into %s; converting it again", source,
                 stale[0])
  tmp = f"{final}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  logging.info("Converting %s into %s (once; cached afterwards)", source, final)
  try:
    convert.run(convert.ConvertConfig(
        source=source, output=tmp, image_size=image_size, seed=seed, max_examples=max_examples,
        num_workers=num_workers, command_line=f"ensure_converted({source!r})"))
  except convert.ConvertError as e:  # Bad data, as bad flags are: a ValueError.
    shutil.rmtree(tmp, ignore_errors=True)
    raise ValueError(str(e)) from None
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  try:
    os.rename(tmp, final)
  except OSError:  # Another process got there first.
    shutil.rmtree(tmp, ignore_errors=True)
    if not os.path.isfile(os.path.join(final, manifest_lib.MANIFEST_NAME)):
      raise
  for path in stale:
    shutil.rmtree(path, ignore_errors=True)
  return final


def ensure_builtin(name, cache_dir=None, image_size=None, seed=0, max_examples=None,
                   num_workers=None):
  """Returns the directory of built-in dataset `name`; see `ensure_converted`."""
  return ensure_converted(f"builtin:{name}", cache_dir, image_size, seed, max_examples,
                          num_workers)


def refuse_medical(spec, flag="--data"):
  """Refuses a DICOM or NIfTI source where converted data is named.

  Their conversion has settings that a data flag cannot carry (--window,
  --holdout and --split_by, --slice_axis, --min_foreground): converted into
  the cache, the scans would get the default window and no held-out
  patients. `resolve` calls this first; pipeline.train also calls it before
  building its strategy, which for multi_worker waits for the cluster.

  Args:
    spec: a data spec, as for `resolve`.
    flag: the flag that gave `spec`, for the message.

  Raises:
    ValueError: `dicom:`/`nifti:` sources, also inside `paired:`/`unpaired:`;
      one line with the conversion command to run instead.
  """
  scheme = sources.find(spec)
  if scheme is None or scheme.cacheable:
    return
  paths = sources.local_paths(spec)
  fmt = scheme.prefix.split(":")[-1]
  names = []
  for p in paths:
    name = os.path.basename(os.path.normpath(p)) or fmt
    names.append(name.split(".", 1)[0] if os.path.isfile(p) else name)  # scan.nii.gz -> scan
  output = os.path.join(os.path.dirname(os.path.normpath(paths[0])) if paths else "",
                        "-".join(names or [fmt]) + "-tfr")
  raise ValueError(
      f"{flag} {spec!r} is a {scheme.label} source, which must be "
      f"converted first (its window and held-out patients are conversion settings): "
      f"python -m pipeline.convert --source={shlex.quote(spec)} --output={shlex.quote(output)} "
      f"--window=auto --holdout=0.1 (choose --window: CENTER,WIDTH, a preset such as ct_brain, "
      f"or percentile:LOW,HIGH), then {flag}={shlex.quote(output)}")


def resolve(spec, cache_dir=None, image_size=None, flag="--data"):
  """The directory of converted data that a data spec names.

  Args:
    spec: a directory made by `pipeline.convert`; a source `KIND:ARG`
      (`builtin:shapes`, `folder:DIR`, `tfds:NAME`, ...; not `dicom:` or
      `nifti:`), converted into the cache on first use; or a plain folder of
      images (as `folder:DIR`).
    cache_dir: where converted sources are cached.
    image_size: size to convert image sources to (None: the source's).
    flag: the flag that gave `spec`, for the error message.

  Raises:
    ValueError: a spec that names nothing usable, or a DICOM or NIfTI source
      (`refuse_medical`); one line, naming it.
  """
  refuse_medical(spec, flag)
  if sources.find(spec) is not None:
    return ensure_converted(spec, cache_dir=cache_dir, image_size=image_size)
  if os.path.isfile(os.path.join(spec, manifest_lib.MANIFEST_NAME)):
    return spec
  if os.path.isdir(spec):  # A plain folder of images.
    return ensure_converted(f"folder:{spec}", cache_dir=cache_dir, image_size=image_size)
  raise ValueError(f"{flag} {spec!r} is neither a directory (made by pipeline.convert, or of "
                   f"images) nor a source KIND:ARG with KIND one of "
                   f"{', '.join(sources.KINDS)}")
