"""Intensity windows: from modality units (Hounsfield units for CT) to stored
integer codes, and back.

A window [low, high] in modality units maps linearly onto the full code range
of the stored bit depth: `low` -> 0, `high` -> 2**bit_depth - 1, values
outside are clipped. The manifest records the window of every series or
volume, so that a generated or translated image can be mapped back:

    modality = low + code / max_code * (high - low)          # stored codes
    modality = low + (x + 1) / 2 * (high - low)              # model range [-1, 1]

Specs (`--window`):
- `CENTER,WIDTH`: a fixed window in modality units, e.g. `40,80` (CT brain),
  giving [CENTER - WIDTH/2, CENTER + WIDTH/2];
- a named preset (`PRESETS`), e.g. `ct_lung`;
- `percentile:LOW,HIGH`: per series or volume, the LOW-th and HIGH-th
  percentiles of its values, e.g. `percentile:0.5,99.5` (MR, whose units are
  arbitrary and differ between scans);
- `auto` (the default): `ct_full` for CT series (every Hounsfield value a
  12-bit scanner stores, so nothing is clipped and all CT volumes share one
  scale), otherwise `percentile:0.5,99.5`.
"""

import collections
import dataclasses

import numpy as np

# Standard radiology display windows (center, width) in Hounsfield units.
PRESETS = {
    "ct_full": (1023.5, 4095.0),  # [-1024, 3071]: the 12-bit CT range.
    "ct_brain": (40.0, 80.0),
    "ct_subdural": (75.0, 215.0),
    "ct_stroke": (40.0, 40.0),
    "ct_lung": (-600.0, 1500.0),
    "ct_mediastinum": (50.0, 350.0),
    "ct_abdomen": (40.0, 400.0),
    "ct_liver": (60.0, 160.0),
    "ct_bone": (400.0, 1800.0),
}
DEFAULT_PERCENTILES = (0.5, 99.5)


class WindowError(ValueError):
  """A --window spec that cannot be parsed."""


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """What `--window` asks for: a fixed window, per-volume percentiles, or
  auto. Made once by `parse`; `resolve` turns it into each volume's `Window`.

  Attributes:
    kind: fixed | percentile | auto.
    low, high: fixed: modality units; percentile: percent.
    name: the preset name, when one was used.
    text: the `--window` value it was parsed from, as given (the manifest
      records it); not part of the value.
  """
  kind: str
  low: float = 0.0
  high: float = 0.0
  name: str = ""
  text: str = dataclasses.field(default="", compare=False)

  def needs_values(self, modality):
    """Whether a volume's window depends on its values (percentiles, or auto
    for anything but CT), so that `resolve` needs them."""
    return self.kind == "percentile" or (self.kind == "auto" and modality != "CT")

  def describe(self):
    if self.kind == "fixed":
      c, w = (self.low + self.high) / 2, self.high - self.low
      return f"{self.name or 'fixed'} (center {c:g}, width {w:g})"
    if self.kind == "percentile":
      return f"percentile {self.low:g}-{self.high:g} per volume"
    return "auto (ct_full for CT, percentile 0.5-99.5 otherwise)"


def parse(spec):
  """Parses a `--window` value into a `WindowSpec`.

  Raises:
    WindowError: a malformed spec, an unknown preset (listing them), a
      non-positive width or percentiles outside 0 <= LOW < HIGH <= 100.
  """
  return dataclasses.replace(_parse((spec or "auto").strip()),
                             text="auto" if spec is None else spec)


def _parse(spec):
  if spec == "auto":
    return WindowSpec("auto")
  if spec in PRESETS:
    c, w = PRESETS[spec]
    return WindowSpec("fixed", c - w / 2, c + w / 2, spec)
  kind, sep, rest = spec.partition(":")
  if sep and kind == "percentile":
    lo, hi = _two_numbers(rest, spec, "percentile:LOW,HIGH")
    if not 0.0 <= lo < hi <= 100.0:
      raise WindowError(f"--window={spec}: percentiles must satisfy 0 <= LOW < HIGH <= 100")
    return WindowSpec("percentile", lo, hi)
  if sep:
    raise WindowError(f"--window={spec}: unknown kind {kind!r}; use CENTER,WIDTH, "
                      f"percentile:LOW,HIGH, auto or a preset ({', '.join(PRESETS)})")
  try:
    c, w = _two_numbers(spec, spec, "CENTER,WIDTH")
  except WindowError:
    raise WindowError(f"--window={spec}: expected CENTER,WIDTH (e.g. 40,80), "
                      f"percentile:LOW,HIGH, auto or a preset ({', '.join(PRESETS)})") from None
  if w <= 0:
    raise WindowError(f"--window={spec}: WIDTH must be > 0")
  return WindowSpec("fixed", c - w / 2, c + w / 2)


def _two_numbers(text, spec, form):
  parts = text.split(",")
  try:
    if len(parts) != 2:
      raise ValueError
    return float(parts[0]), float(parts[1])
  except ValueError:
    raise WindowError(f"--window={spec}: expected {form}") from None


@dataclasses.dataclass(frozen=True)
class Window:
  """A resolved window [low, high] in modality units."""
  low: float
  high: float
  units: str = ""  # "HU" for CT; "" when the modality's units are arbitrary.
  source: str = ""  # How it was chosen, e.g. "ct_brain" or "percentile 0.5-99.5".

  def to_codes(self, values, bit_depth=16):
    """Maps modality values onto integer codes [0, 2**bit_depth - 1]."""
    max_code = (1 << bit_depth) - 1
    scale = max_code / max(self.high - self.low, 1e-12)
    x = (np.asarray(values, np.float64) - self.low) * scale
    return np.clip(np.round(x), 0, max_code).astype(np.uint16 if bit_depth == 16 else np.uint8)

  def from_codes(self, codes, bit_depth=16):
    """Stored codes back to modality units (float32)."""
    max_code = (1 << bit_depth) - 1
    return (self.low + np.asarray(codes, np.float64) / max_code
            * (self.high - self.low)).astype(np.float32)

  def from_model(self, x):
    """The model's [-1, 1] range back to modality units (float32)."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    return (self.low + (x + 1.0) / 2.0 * (self.high - self.low)).astype(np.float32)

  def to_json(self):
    return {"low": self.low, "high": self.high, "center": (self.low + self.high) / 2,
            "width": self.high - self.low, "units": self.units, "source": self.source}

  @classmethod
  def from_json(cls, d):
    return cls(float(d["low"]), float(d["high"]), d.get("units", ""), d.get("source", ""))


def resolve(spec, values=None, modality=""):
  """The `Window` for one series or volume.

  Args:
    spec: a `WindowSpec`.
    values: the series' modality values (needed for percentile windows only).
    modality: the DICOM Modality ("CT", "MR", ...), "" when unknown.
  """
  units = "HU" if modality == "CT" else ""
  if spec.kind == "auto":
    if modality == "CT":
      c, w = PRESETS["ct_full"]
      return Window(c - w / 2, c + w / 2, units, "ct_full")
    spec = WindowSpec("percentile", *DEFAULT_PERCENTILES)
  if spec.kind == "fixed":
    return Window(spec.low, spec.high, units, spec.name or "fixed")
  lo, hi = np.percentile(np.asarray(values, np.float64), [spec.low, spec.high])
  if hi <= lo:  # A constant volume: a window of width one unit.
    hi = lo + 1.0
  return Window(float(lo), float(hi), units, f"percentile {spec.low:g}-{spec.high:g}")


def summary(windows):
  """One window standing for a dataset's per-series windows (for mapping
  generated images back): the common window when all agree, otherwise the
  median low and high, marked approximate."""
  windows = list(windows)
  if not windows:
    return None
  first = windows[0]
  if all((w.low, w.high) == (first.low, first.high) for w in windows):
    return {**first.to_json(), "approximate": False}
  lo = float(np.median([w.low for w in windows]))
  hi = float(np.median([w.high for w in windows]))
  return {**Window(lo, hi, first.units, first.source).to_json(), "approximate": True,
          "note": f"median of {len(windows)} per-volume windows"}


def manifest_fields(series, windows):
  """The manifest's `series` table with each volume's window, and its
  `window`: one summary window per side (`image`, or `A` and `B`) for mapping
  generated images back to modality units.

  Args:
    series: {volume id: entry} (an entry's "side" is "A" or "B" for two roots).
    windows: {volume id: `Window.to_json()`} of the volumes whose slices were
      written (none for colour volumes).
  """
  table = {sid: ({**entry, "window": windows[sid]} if sid in windows else dict(entry))
           for sid, entry in series.items()}
  by_side = collections.defaultdict(list)
  for entry in table.values():
    if "window" in entry:
      by_side[entry.get("side", "")].append(Window.from_json(entry["window"]))
  return {"series": table,
          "window": {side or "image": summary(ws) for side, ws in sorted(by_side.items())}}
