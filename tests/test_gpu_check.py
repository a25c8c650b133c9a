"""bench/gpu_check.py: the --cpu_smoke run end to end (slow stage), and the
parent's table, file and exit status with its children stubbed."""

import glob
import os
import re
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests import helpers

sys.path.insert(0, os.path.join(helpers.REPO_ROOT, "bench"))  # As `python bench/...` has it.
import gpu_check  # pylint: disable=wrong-import-position,wrong-import-order
import gpu_check_rows  # pylint: disable=wrong-import-position,wrong-import-order

SCRIPT = os.path.join(helpers.REPO_ROOT, "bench", "gpu_check.py")


def _table_rows(text):
  """{row id: [cells]} of the markdown table (cells unescaped)."""
  out = {}
  for line in text.splitlines():
    if line.startswith("| ") and not line.startswith("| # "):
      cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
      out[cells[0]] = cells
  return out


def _read_results(directory):
  """The text of the one results file in `directory`."""
  paths = glob.glob(os.path.join(directory, "*"))
  assert len(paths) == 1 and re.fullmatch(r"gpu-\d{4}-\d\d-\d\d-cpu-smoke\.md",
                                          os.path.basename(paths[0])), paths
  with open(paths[0], encoding="utf-8") as f:
    return f.read()


def _stub_child(results):
  """A `_run_child` that reports `results[row id]` (a status) for every
  correctness row it is asked for, and an ok speed row."""

  def run_child(flags, budget, on_row, log_path):
    del budget, log_path
    kind = next(f.split("=", 1)[1] for f in flags if f.startswith("--child="))
    if kind == "correctness":
      ids = next(f.split("=", 1)[1] for f in flags if f.startswith("--rows=")).split(",")
      for row_id in ids:
        on_row({"id": row_id, "status": results.get(row_id, "PASS"), "measured": "max 1e-07",
                "limit": "< 1e-05"})
    elif kind == "speed":
      on_row({"id": "", "status": "ok", "images_per_sec": 100.0, "measured": "1 G steps/s",
              "xla": False, "precision": "float32"})
    return 0, False, ""

  return run_child


class ParentTest(tf.test.TestCase):

  def _run(self, results):
    """Runs the parent with stubbed children; returns (exit status, file text)."""
    tmp = self.create_tempdir().full_path
    original = gpu_check._run_child  # pylint: disable=protected-access
    gpu_check._run_child = _stub_child(results)  # pylint: disable=protected-access
    try:
      args = gpu_check._parse_args(["--cpu_smoke", f"--results_dir={tmp}"])  # pylint: disable=protected-access
      status = gpu_check._parent(args)  # pylint: disable=protected-access
    finally:
      gpu_check._run_child = original  # pylint: disable=protected-access
    return status, _read_results(tmp)

  def test_all_pass_exits_0(self):
    status, text = self._run({})
    self.assertEqual(status, 0)
    rows = _table_rows(text)
    for row_id in gpu_check_rows.CORRECTNESS:
      self.assertEqual(rows[row_id][2], "PASS", row_id)
    self.assertEqual(rows["S1"][2], "ok")
    self.assertIn("Exit status 0", text)

  def test_a_failing_correctness_row_exits_1(self):
    status, text = self._run({"2a": "FAIL"})
    self.assertEqual(status, 1)
    self.assertEqual(_table_rows(text)["2a"][2], "FAIL")
    self.assertIn("Exit status 1: a correctness row failed", text)
    self.assertEqual(self._run({"3b": "ERROR"})[0], 1)

  def test_skipped_rows_exit_3(self):
    self.assertEqual(self._run({"4": "SKIPPED"})[0], 3)

  def test_exit_status(self):
    passed = [{"kind": "correctness", "status": "PASS"}] * len(gpu_check_rows.CORRECTNESS)
    speed_error = {"kind": "speed", "status": "ERROR"}
    self.assertEqual(gpu_check.exit_status(passed + [speed_error]), 0)  # Speed never fails it.
    self.assertEqual(gpu_check.exit_status(passed[1:]), 3)  # A row missing.
    self.assertEqual(gpu_check.exit_status(passed[1:] + [{"kind": "correctness",
                                                          "status": "FAIL"}]), 1)

  def test_rows_are_written_as_they_come(self):
    path = os.path.join(self.create_tempdir().full_path, "r", "gpu-x.md")
    out = gpu_check.ResultsFile(path, ["# title"])
    out.add({"id": "1a", "status": "PASS", "measured": "max |dw| 6e-08", "limit": "< 1e-05"})
    with open(path, encoding="utf-8") as f:  # Before close: already on disk.
      rows = _table_rows(f.read())
    self.assertEqual(rows["1a"][:5], ["1a", "", "PASS", "max |dw| 6e-08", "< 1e-05"])
    out.close(["done"])

  def test_speed_plan_order(self):
    plan = gpu_check.speed_plan(cpu_smoke=False)
    labels = [spec.label() for _, spec in plan]
    # The default config first: each loop, then steps_per_loop 1, then precisions.
    self.assertEqual(labels[:4], ["eager sngan 32px batch 32", "tf_function sngan 32px batch 32",
                                  "trainer sngan 32px batch 32, defaults",
                                  "trainer sngan 32px batch 32, steps_per_loop=1"])
    self.assertEqual(plan[3][1].versus, "S3")
    # The default rows at the trainer's width; the grid at the papers' 64.
    self.assertIsNone(plan[0][1].width)
    self.assertIn("eager dcgan 64px batch 256 width 64", labels)
    self.assertTrue(all(spec.width == 64 for _, spec in plan if spec.batch != 32 and not spec.stall))
    self.assertTrue(any(spec.stall and spec.batch == 256 for _, spec in plan))
    self.assertEqual(len(labels), len(set(labels)))
    self.assertLen(gpu_check.speed_plan(cpu_smoke=True), 1)


@pytest.mark.slow
class CpuSmokeTest(tf.test.TestCase):

  def test_cpu_smoke(self):
    tmp = self.create_tempdir().full_path
    start = time.time()
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--cpu_smoke", f"--results_dir={tmp}/results",
         f"--data_cache={tmp}/cache"], env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
        capture_output=True, text=True, timeout=900, check=False)
    seconds = time.time() - start
    self.assertEqual(proc.returncode, 0, proc.stdout[-3000:] + proc.stderr[-3000:])
    rows = _table_rows(_read_results(os.path.join(tmp, "results")))
    for row_id in gpu_check_rows.CORRECTNESS:
      self.assertEqual(rows[row_id][2], "PASS", rows[row_id])
      self.assertRegex(rows[row_id][3], r"\d", row_id)  # The measured number.
    self.assertEqual(rows["S1"][2], "ok", rows["S1"])
    self.assertGreater(float(rows["S1"][5].replace(",", "")), 0.0)
    print(f"gpu_check --cpu_smoke: {seconds:.0f} s")


if __name__ == "__main__":
  tf.test.main()
