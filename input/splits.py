"""`--holdout=FRACTION --split_by=patient|series|file`: a held-out `test`
split that shares no patient (or series, or file) with `train`.

Groups are ordered by a seeded hash of their name, and the first
round(FRACTION x groups) of them (at least one, never all) go to `test`.
The same group goes to `test` in every domain of an unpaired source, so the
T1 and T2 scans of one patient are held out together. Nothing here is
written out but the group counts.
"""

import hashlib

SPLIT_BY = ("patient", "series", "file")


class SplitError(ValueError):
  """A holdout that cannot be made (no groups, a single group, ...)."""


def _group(item, split_by):
  if split_by == "file":
    return item.key
  return item.patient if split_by == "patient" else (item.series or item.patient)


def holdout(items, fraction, split_by, seed):
  """Moves whole groups from each `train*` split into `test*`.

  Args:
    items: {split: [Item, ...]} as a source lists them.
    fraction: the fraction of groups to hold out, in (0, 1).
    split_by: "patient", "series" or "file".
    seed: orders the groups.

  Returns:
    ({split: [Item, ...]} with `test*` splits added, a summary dict for the
    manifest).

  Raises:
    SplitError: a source that already has test splits, items without
      patient or series ids, or fewer than two groups.
  """
  if split_by not in SPLIT_BY:
    raise SplitError(f"--split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
  train = [s for s in items if s.startswith("train")]
  for s in train:
    if "test" + s[len("train"):] in items:
      raise SplitError(f"the source already has a {'test' + s[len('train'):]!r} split; "
                       "--holdout makes one from train only")
  groups = set()
  for s in train:
    for it in items[s]:
      g = _group(it, split_by)
      if not g:
        raise SplitError(
            f"--split_by={split_by} needs a {split_by} for every example, and {it.key!r} has "
            "none; put each patient's images in a folder of its own (or use a BIDS sub-* "
            "name), or use --split_by=file")
      groups.add(g)
  if len(groups) < 2:
    raise SplitError(f"--holdout needs at least two {split_by} groups, found {len(groups)}")
  order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest())
  n_test = min(len(groups) - 1, max(1, round(fraction * len(groups))))
  test = set(order[:n_test])
  out = {s: v for s, v in items.items() if s not in train}
  counts = {}
  for s in train:
    suffix = s[len("train"):]
    out[s] = [it for it in items[s] if _group(it, split_by) not in test]
    out["test" + suffix] = [it for it in items[s] if _group(it, split_by) in test]
    counts[s] = len({_group(it, split_by) for it in out[s]})
    counts["test" + suffix] = len({_group(it, split_by) for it in out["test" + suffix]})
  summary = {"fraction": fraction, "split_by": split_by, "seed": seed, "groups": counts,
             "test_groups": sorted(test) if split_by != "file" else len(test)}
  return out, summary
