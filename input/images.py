"""Reading image files and bringing them to one fixed spec for conversion.

Everything here works on numpy arrays of shape [H, W, C] with C in {1, 3} and
dtype uint8 or uint16. Pillow decodes every format except 16-bit PNG, which
Pillow reads as 8-bit when it has colour; those go through `tf.io.decode_png`,
which keeps all 16 bits.
"""

import dataclasses
import io
import os

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")
RESIZE_MODES = ("crop", "pad", "stretch")
ENCODINGS = ("raw", "png")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# ITU-R 601-2 luma, the weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def list_image_files(root):
  """Every image file under `root` (by extension), recursively.

  Hidden files and folders (a leading ".") are skipped and symbolic links
  followed. The one listing behind folder sources, `pipeline.evaluate
  --samples=DIR` and `pipeline.translate --input=DIR`.

  Returns:
    (paths relative to `root`, sorted; the number of other files ignored).
  """
  found, ignored = [], 0
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for name in filenames:
      if name.startswith("."):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
      else:
        ignored += 1
  return sorted(found), ignored


class BadImageError(Exception):
  """An input image that cannot be used; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class ImageSpec:
  """The shape and depth that every converted image is brought to.

  Attributes:
    height: output height in pixels.
    width: output width in pixels.
    channels: 1 (grayscale) or 3 (RGB).
    bit_depth: 8 (uint8) or 16 (uint16).
    resize: how a source of another aspect ratio or size is fitted: `crop`
      (center crop to the output aspect ratio, then resize), `pad` (pad with
      black to the output aspect ratio, then resize) or `stretch` (resize
      directly).
  """
  height: int
  width: int
  channels: int
  bit_depth: int = 8
  resize: str = "crop"

  def __post_init__(self):
    if self.height < 1 or self.width < 1:
      raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
    if self.channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {self.channels}")
    if self.bit_depth not in (8, 16):
      raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
    if self.resize not in RESIZE_MODES:
      raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")

  @property
  def dtype(self):
    return np.uint8 if self.bit_depth == 8 else np.uint16

  @property
  def shape(self):
    return (self.height, self.width, self.channels)

  def feature_shape(self, channels=None):
    """A feature's per-example shape: [H, W, C], or `channels` for a stack."""
    return [self.height, self.width, channels or self.channels]

  def fit(self, arr, stack=False):
    """`to_spec(arr, self, stack)`: what the shard writer stores."""
    return to_spec(arr, self, stack)

  def describe(self):
    """`HxWxC B-bit`, for the log."""
    return f"{self.height}x{self.width}x{self.channels} {self.bit_depth}-bit"


@dataclasses.dataclass(frozen=True)
class ImageInfo:
  """What the header of an image file says, without decoding the pixels."""
  height: int
  width: int
  channels: int
  bit_depth: int


def _png_bit_depth(data):
  """Bit depth from a PNG's IHDR chunk, or None if `data` is not a PNG."""
  if len(data) < 25 or not data.startswith(_PNG_SIGNATURE):
    return None
  return data[24]


def _mode_channels(mode):
  return 1 if mode in ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F") else 3


def probe_file(path):
  """Reads only the header of an image file.

  Returns:
    An `ImageInfo`, or None when the header cannot be read (the file will then
    be skipped, with its reason, when it is decoded).
  """
  try:
    with open(path, "rb") as f:
      head = f.read(32)
      f.seek(0)
      im = Image.open(f)
      width, height = im.size
      mode = im.mode
      if im.format == "JPEG":
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (5, 6, 7, 8):  # EXIF rotation by 90 degrees.
          width, height = height, width
  except Exception:  # pylint: disable=broad-except
    return None
  png_depth = _png_bit_depth(head)
  if png_depth == 16:
    color_type = head[25]
    channels = 1 if color_type in (0, 4) else 3
    return ImageInfo(height, width, channels, 16)
  depth = 16 if mode.startswith("I") else 8
  return ImageInfo(height, width, _mode_channels(mode), depth)


def _composite_on_black(rgb, alpha, max_value):
  """Premultiplies by alpha: transparent pixels become black."""
  out = rgb.astype(np.float32) * (alpha.astype(np.float32) / max_value)
  return np.round(out).astype(rgb.dtype)


def decode_bytes(data):
  """Decodes an encoded image to its native channels and depth.

  Args:
    data: the bytes of a JPEG, PNG, BMP or GIF file.

  Returns:
    An array [H, W, C], C in {1, 3}, dtype uint8 or uint16 (16-bit PNG only).
    Alpha is composited on black; palettes become RGB; JPEG EXIF orientation is
    applied; a multi-frame GIF gives its first frame.

  Raises:
    BadImageError: the data is not a readable image or is truncated.
  """
  if _png_bit_depth(data) == 16:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
      arr = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except Exception as e:  # pylint: disable=broad-except
      raise BadImageError(f"unreadable 16-bit PNG: {first_line(e)}") from None
    if arr.shape[-1] in (2, 4):
      arr = _composite_on_black(arr[..., :-1], arr[..., -1:], 65535.0)
    return arr
  try:
    im = Image.open(io.BytesIO(data))
    im.load()
  except Exception as e:  # pylint: disable=broad-except
    raise BadImageError(_pil_reason(e)) from None
  if im.format == "JPEG":
    im = ImageOps.exif_transpose(im)
  mode = im.mode
  if mode in ("P", "PA"):
    im = im.convert("RGBA")
    mode = "RGBA"
  if mode == "1":
    im = im.convert("L")
    mode = "L"
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    arr = np.asarray(im)
    if arr.dtype != np.uint16:
      if arr.min() < 0 or arr.max() > 65535:
        raise BadImageError(f"integer image with values outside 0..65535 (mode {mode})")
      arr = arr.astype(np.uint16)
    return arr[..., None]
  if mode == "L":
    return np.asarray(im)[..., None]
  if mode == "LA":
    arr = np.asarray(im)
    return _composite_on_black(arr[..., :1], arr[..., 1:], 255.0)
  if mode == "RGBA":
    arr = np.asarray(im)
    return _composite_on_black(arr[..., :3], arr[..., 3:], 255.0)
  if mode != "RGB":
    im = im.convert("RGB")
  return np.asarray(im)


def read_file(path):
  """Reads and decodes one image file; see `decode_bytes`."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise BadImageError(f"cannot read file: {e.strerror or e}") from None
  if not data:
    raise BadImageError("empty file")
  return decode_bytes(data)


def first_line(e):
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__


def set_max_image_pixels(pixels):
  """Raises (or with None, restores) Pillow's decompression-bomb limit."""
  Image.MAX_IMAGE_PIXELS = pixels or _DEFAULT_MAX_PIXELS


def foreground_fraction(arr):
  """The fraction of pixels above the minimum code (0): for windowed slices,
  the pixels above the window's low end."""
  arr = np.asarray(arr)
  if arr.ndim == 3 and arr.shape[-1] > 1:
    arr = arr.max(axis=-1)
  return float(np.count_nonzero(arr)) / max(1, arr.size)


def _pil_reason(e):
  text = first_line(e)
  if type(e).__name__ == "DecompressionBombError":
    return (f"larger than Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} "
            f"pixels; pass --max_image_pixels=N to convert it ({text})")
  if "truncated" in text.lower():
    return f"truncated image: {text}"
  if type(e).__name__ == "UnidentifiedImageError":
    return "not a readable image (format not recognized)"
  return f"cannot decode: {text}"


def fitted_shape(height, width, out_height, out_width, mode):
  """The size of what `to_spec` resizes onto out_height x out_width.

  Args:
    height, width: the source image's size.
    out_height, out_width: the output size.
    mode: a `RESIZE_MODES` entry. `crop` keeps the centered part of the
      output's aspect ratio (the short side whole), `pad` pads the image to
      that aspect ratio (the long side whole), `stretch` takes the image as is.

  Returns:
    (rows, columns) of the cropped or padded source, so that one output pixel
    spans rows / out_height source rows and columns / out_width source columns.
  """
  if mode == "stretch" or height * out_width == width * out_height:
    return height, width
  too_tall = height * out_width > width * out_height
  if mode == "crop":
    if too_tall:
      return max(1, round(width * out_height / out_width)), width
    return height, max(1, round(height * out_width / out_height))
  if too_tall:  # pad
    return height, round(height * out_width / out_height)
  return round(width * out_height / out_width), width


def _fit_geometry(x, height, width, mode):
  """Crops or pads float array x [h, w, c] to the target aspect ratio."""
  h, w = x.shape[:2]
  new_h, new_w = fitted_shape(h, w, height, width, mode)
  if (new_h, new_w) == (h, w):
    return x
  if new_h < h:
    top = (h - new_h) // 2
    return x[top:top + new_h]
  if new_w < w:
    left = (w - new_w) // 2
    return x[:, left:left + new_w]
  top, left = (new_h - h) // 2, (new_w - w) // 2
  return np.pad(x, ((top, new_h - h - top), (left, new_w - w - left), (0, 0)))


def scaled_shape(height, width, out_height, out_width, mode):
  """The size a whole height x width image takes at the scale `to_spec`
  gives it.

  `to_spec` crops or pads the image to `fitted_shape` and resizes that onto
  out_height x out_width; at the same scale the whole image is
  (height * out_height / fitted rows, width * out_width / fitted columns),
  rounded: out_height x out_width exactly for `stretch` or a matching aspect
  ratio, larger along one side for `crop`, smaller for `pad`. Translating a
  volume resizes each slice to this size and back (`inference.volumes`), so
  that the model sees anatomy at the scale it was trained on.
  """
  rows, cols = fitted_shape(height, width, out_height, out_width, mode)
  return (max(1, round(height * out_height / rows)), max(1, round(width * out_width / cols)))


def resize(x, height, width):
  """Resizes float32 [h, w, c] to height x width with Lanczos (Pillow, in
  float32, antialiased when shrinking; half-pixel centres, so that the
  image's extent maps onto the new one).

  The one resampling path of medical data: the conversion (`to_spec`) and
  the translation of volumes there and back (`inference.volumes`) both
  resize with it.
  """
  if x.shape[:2] == (height, width):
    return x
  planes = [
      np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]), mode="F").resize(
          (width, height), Image.Resampling.LANCZOS))
      for c in range(x.shape[-1])
  ]
  return np.stack(planes, axis=-1)


def to_spec(arr, spec, stack=False):
  """Brings a decoded image to `spec`.

  Args:
    arr: [H, W, C] uint8 or uint16, C in {1, 3}, as from `decode_bytes`; with
      `stack`, any C.
    spec: the target `ImageSpec`.
    stack: `arr` is a stack of C gray slices (the 2.5-D context of a slice),
      not colour: each is brought to the spec's size and depth as a gray
      image is, and the C channels are kept (`spec.channels` must be 1).

  Returns:
    An array of shape `spec.shape` (C channels for a stack) and dtype
    `spec.dtype`. Depth changes map the full range onto the full range
    (x * 257 up, x / 257 down); colour becomes gray with ITU-R 601-2 luma
    weights.
  """
  if arr.ndim == 2:
    arr = arr[..., None]
  if stack and spec.channels != 1:
    raise ValueError(f"a stack of gray slices needs a 1-channel spec, got {spec.channels}")
  if arr.ndim != 3 or (arr.shape[-1] not in (1, 3) and not stack):
    raise BadImageError(f"unsupported array shape {arr.shape}")
  src_max = 255.0 if arr.dtype == np.uint8 else 65535.0
  dst_max = 255.0 if spec.bit_depth == 8 else 65535.0
  x = arr.astype(np.float32)
  if stack:
    pass  # Each channel is a slice: resized alike, never mixed.
  elif x.shape[-1] == 3 and spec.channels == 1:
    x = x @ _LUMA[:, None]
  elif x.shape[-1] == 1 and spec.channels == 3:
    x = np.repeat(x, 3, axis=-1)
  x = _fit_geometry(x, spec.height, spec.width, spec.resize)
  x = resize(x, spec.height, spec.width)
  if src_max != dst_max:
    x = x * (dst_max / src_max)
  return np.clip(np.round(x), 0, dst_max).astype(spec.dtype)


def encode(arr, encoding):
  """Serializes a spec'd image: `raw` little-endian bytes, or `png`."""
  if encoding == "raw":
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
  if encoding == "png":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.encode_png(arr).numpy()
  raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def split_side_by_side(arr):
  """Splits an A|B image (the common Pix2Pix layout) into its two halves."""
  w = arr.shape[1]
  if w % 2:
    raise BadImageError(f"side-by-side image has odd width {w}; cannot split A|B")
  return arr[:, :w // 2], arr[:, w // 2:]


__all__ = [
    "BadImageError", "ENCODINGS", "IMAGE_EXTENSIONS", "ImageInfo", "ImageSpec",
    "RESIZE_MODES", "decode_bytes", "encode", "fitted_shape", "probe_file", "read_file",
    "resize", "scaled_shape", "split_side_by_side", "to_spec",
]
