"""bench/gpu_check.py: the --cpu_smoke run end to end (slow stage), and the
parent's table, file and exit status with its children stubbed."""

import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from bench import gpu_check
from bench import gpu_check_rows
from tests import helpers

COMMAND = [sys.executable, "-m", "bench.gpu_check"]


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


def _stub_child(results, images=None):
  """A `_run_child` that reports `results[row id]` (a status) for every
  correctness row it is asked for, and an ok speed row (at `images[loop]`
  images/s, default 100)."""

  def run_child(flags, budget, on_row, log_path, limit_s=None):
    del budget, log_path, limit_s
    kind = next(f.split("=", 1)[1] for f in flags if f.startswith("--child="))
    if kind in ("correctness", "whole"):
      ids = next(f.split("=", 1)[1] for f in flags if f.startswith("--rows=")).split(",")
      for row_id in ids:
        on_row({"id": row_id, "status": results.get(row_id, "PASS"), "measured": "max 1e-07",
                "limit": "< 1e-05"})
    elif kind == "speed":
      loop = json.loads(next(f.split("=", 1)[1] for f in flags if f.startswith("--spec=")))["loop"]
      on_row({"id": "", "status": "ok", "images_per_sec": (images or {}).get(loop, 100.0),
              "measured": "1 G steps/s", "xla": False, "precision": "float32"})
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
    for row_id in list(gpu_check_rows.CORRECTNESS) + list(gpu_check_rows.WHOLE_GPUS):
      self.assertEqual(rows[row_id][2], "PASS", row_id)
    self.assertEqual(rows["S1"][2], "ok")
    self.assertIn("Exit status 0", text)
    self.assertIn("The plan, in order:", text)
    self.assertIn("- 5a: every whole GPU == 1 GPU", text)

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
    # The rows that set defaults first: the default trainer, each precision
    # with XLA on and off, steps_per_loop 1; then the loops it is measured against.
    self.assertEqual(labels[0], "trainer sngan 32px batch 32, defaults")
    self.assertEqual(labels[1:7], [f"trainer sngan 32px batch 32, precision={p} xla={x}"
                                   for p in gpu_check.SPEED_PRECISIONS for x in ("on", "off")])
    self.assertEqual(labels[7:10], ["trainer sngan 32px batch 32, steps_per_loop=1",
                                    "eager sngan 32px batch 32", "tf_function sngan 32px batch 32"])
    self.assertEqual(plan[7][1].versus, "S1")
    # The default rows at the trainer's width; the grid at the papers' 64.
    self.assertIsNone(plan[0][1].width)
    self.assertIn("eager dcgan 64px batch 256 width 64", labels)
    self.assertTrue(all(spec.width == 64 for _, spec in plan if spec.batch != 32 and not spec.stall))
    self.assertTrue(any(spec.stall and spec.batch == 256 for _, spec in plan))
    self.assertEqual(len(labels), len(set(labels)))
    self.assertLen(gpu_check.speed_plan(cpu_smoke=True), 1)


class PlanTest(tf.test.TestCase):
  """The plan for 1, 2 and 8 GPUs: what runs where, and in which order."""

  def _where(self, num_gpus):
    return {row_id: where for row_id, _, where in gpu_check.plan(num_gpus, cpu_smoke=False)}

  def test_order_defaults_first(self):
    ids = [row_id for row_id, _, _ in gpu_check.plan(2, cpu_smoke=False)]
    self.assertEqual(ids[:12], ["1a", "1b", "1c", "2a", "2b", "2c", "4", "3a", "3b", "3n", "5a",
                                "5b"])
    self.assertEqual(ids[12], "S1")
    self.assertLen(ids, len(set(ids)))

  def test_one_gpu_skips_nccl_and_the_whole_gpu_rows(self):
    where = self._where(1)
    for row_id in ("3n", "5a", "5b"):
      self.assertStartsWith(where[row_id], "not run: 1 GPU", row_id)
    self.assertEqual(where["3a"], "the first GPU split in two (TF32 off)")

  def test_two_and_eight_gpus_run_them_over_every_gpu(self):
    for num_gpus in (2, 8):
      where = self._where(num_gpus)
      self.assertStartsWith(where["3n"], f"{num_gpus} whole GPUs")
      for row_id in ("5a", "5b"):
        self.assertStartsWith(where[row_id], f"{num_gpus} whole GPUs, NcclAllReduce, "
                                             "global batch 8 ", row_id)
    self.assertIn("global batch 24", self._where(3)["5a"])  # 8 does not divide by 3.

  def test_cpu_smoke_runs_the_whole_gpu_rows_on_two_cpus(self):
    where = {i: w for i, _, w in gpu_check.plan(0, cpu_smoke=True)}
    self.assertStartsWith(where["5a"], "2 logical CPUs standing in")
    self.assertStartsWith(where["3n"], "not run")
    self.assertEqual([i for i in where if i.startswith("S")], ["S1"])

  def test_plan_for_prints_it(self):
    for num_gpus in (1, 2, 8):
      proc = subprocess.run([*COMMAND, f"--plan_for={num_gpus}"],
                            env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
      self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
      lines = proc.stdout.splitlines()
      self.assertEqual(lines, gpu_check.format_plan(gpu_check.plan(num_gpus, False)))
      print(f"--plan_for={num_gpus}:", *lines[:13], sep="\n")


class XlaVerdictTest(tf.test.TestCase):
  """Row 1: XLA on vs off against the noise floor of XLA off run twice."""

  def test_verdicts(self):
    judge = gpu_check_rows.judge_xla
    self.assertEqual(judge(5e-6, 0.0)["status"], "PASS")  # Under 1e-5 with no noise.
    self.assertEqual(judge(2e-5, 0.0)["status"], "FAIL")
    self.assertEqual(judge(2e-5, 3e-6)["status"], "PASS")  # Within 10x the floor.
    self.assertEqual(judge(1e-3, 3e-6)["status"], "FAIL")  # An update's size: a fault.
    row = judge(2e-6, 1e-6)
    self.assertEqual(row["limit"], "<= max(1e-05, 10 x floor) = 1e-05")
    self.assertIn("5x under the limit", row["measured"])
    self.assertIn("2x over the limit", judge(2e-5, 0.0)["measured"])


class WholeGpuRowsTest(tf.test.TestCase):

  def _rows(self, num_gpus, nccl_works):
    out = gpu_check.ResultsFile(os.path.join(self.create_tempdir().full_path, "r.md"), ["#"])
    args = gpu_check._parse_args(["--budget_s=60"])  # pylint: disable=protected-access
    gpu_check._run_whole_gpus(args, None, out, None, num_gpus, nccl_works)  # pylint: disable=protected-access
    out.close([])
    return out.rows

  def test_one_gpu_does_not_change_the_exit_status(self):
    rows = self._rows(1, False)
    self.assertEqual([r["status"] for r in rows], ["info", "info"])
    passed = [{"kind": "correctness", "status": "PASS"}] * len(gpu_check_rows.CORRECTNESS)
    self.assertEqual(gpu_check.exit_status(passed + rows), 0)

  def test_nccl_failing_on_two_gpus_fails_the_check(self):
    rows = self._rows(2, False)
    self.assertEqual([r["status"] for r in rows], ["ERROR", "ERROR"])
    passed = [{"kind": "correctness", "status": "PASS"}] * len(gpu_check_rows.CORRECTNESS)
    self.assertEqual(gpu_check.exit_status(passed + rows), 1)


class LateRatiosTest(tf.test.TestCase):

  def test_rows_before_their_loops_get_ratios_under_the_table(self):
    original = gpu_check._run_child  # pylint: disable=protected-access
    gpu_check._run_child = _stub_child({}, images={"eager": 50.0, "tf_function": 80.0,  # pylint: disable=protected-access
                                                   "trainer": 200.0})
    try:
      out = gpu_check.ResultsFile(os.path.join(self.create_tempdir().full_path, "r.md"), ["#"])
      args = gpu_check._parse_args(["--budget_s=600"])  # pylint: disable=protected-access
      budget = gpu_check._Budget(600, time.time())  # pylint: disable=protected-access
      _, late = gpu_check._run_speed(args, budget, out, self.create_tempdir().full_path)  # pylint: disable=protected-access
      out.close([])
    finally:
      gpu_check._run_child = original  # pylint: disable=protected-access
    self.assertEqual(late[0], "- S1: 4.00x eager, 2.50x tf.function (measured after it)")
    grid_trainer = next(r for r in out.rows if r["check"].startswith("speed: trainer wgan_gp"))
    self.assertAlmostEqual(grid_trainer["vs_eager"], 4.0)  # Its loops ran before it.


@pytest.mark.slow
class CpuSmokeTest(tf.test.TestCase):

  def test_cpu_smoke(self):
    tmp = self.create_tempdir().full_path
    start = time.time()
    proc = subprocess.run(
        [*COMMAND, "--cpu_smoke", f"--results_dir={tmp}/results",
         f"--data_cache={tmp}/cache"], env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
        capture_output=True, text=True, timeout=900, check=False)
    seconds = time.time() - start
    self.assertEqual(proc.returncode, 0, proc.stdout[-3000:] + proc.stderr[-3000:])
    rows = _table_rows(_read_results(os.path.join(tmp, "results")))
    for row_id in list(gpu_check_rows.CORRECTNESS) + list(gpu_check_rows.WHOLE_GPUS):
      self.assertEqual(rows[row_id][2], "PASS", rows[row_id])
      self.assertRegex(rows[row_id][3], r"\d", row_id)  # The measured number.
    for row_id in ("1a", "1b", "1c"):
      # The same batches in every run: on CPU the ops add no noise, so the
      # limit stays 1e-5 (another data order would put the floor near 1e-3).
      self.assertIn("noise floor 0 (off vs off)", rows[row_id][3])
      self.assertEqual(rows[row_id][4], "<= max(1e-05, 10 x floor) = 1e-05")
    self.assertEqual(rows["S1"][2], "ok", rows["S1"])
    self.assertGreater(float(rows["S1"][5].replace(",", "")), 0.0)
    print(f"gpu_check --cpu_smoke: {seconds:.0f} s")


if __name__ == "__main__":
  tf.test.main()
