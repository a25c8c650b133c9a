"""Evaluation during training (--eval_every) and the best checkpoint (--keep_best).

The in-training figures must be exactly what `pipeline.evaluate` reports for
the saved checkpoint of the same step with the same settings; the best
checkpoint must be the one of the step with the best recorded figure,
survive the rotation of the latest ones, and carry over a resume.
"""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation import during_training
from evaluation import evaluate
from inference import sampling
from tests import test_evaluate
from tests import test_train
from tests import test_translation
from training import config as config_lib
from training import run_dir as run_dir_lib
from training import trainer


def _train(config):
  """What pipeline.train runs: the trainer with the evaluation during training."""
  return trainer.run(config, during_training.DuringTraining)


def eval_log(model_dir):
  with open(os.path.join(model_dir, run_dir_lib.EVAL_LOG_NAME), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def tensorboard_scalars(model_dir, prefix="eval/"):
  """{tag: {step: value}} from the run's TensorBoard events."""
  return {tag: {step: float(v) for step, v in points}
          for tag, points in run_dir_lib.read_summaries(model_dir).items()
          if tag.startswith(prefix)}


def vector_config(model_dir, **kwargs):
  settings = dict(eval_every=2, eval_num_samples=200, train_steps=6, keep_best="fid",
                  keep_checkpoints=1, cpu_replicas=1,
                  data_cache=os.path.join(model_dir, "cache"))
  settings.update(kwargs)
  return test_train.tiny_config("gan", model_dir, **settings)


def evaluate_checkpoint(config, checkpoint, **kwargs):
  """pipeline.evaluate of a saved checkpoint with the run's evaluation settings."""
  settings = dict(real=config.data, model_dir=config.model_dir, checkpoint=checkpoint,
                  num_samples=config.eval_num_samples, num_real=config.eval_num_samples,
                  seed=config.seed, kid_subset_size=min(1000, config.eval_num_samples),
                  cache_stats=False, real_split="test")  # Evaluation during training uses test.
  settings.update(kwargs)
  return evaluate.run(evaluate.EvaluateConfig(**settings))["metrics"]


class EvalDuringTrainingTest(tf.test.TestCase):

  def test_vector_figures_equal_pipeline_evaluate_and_best_is_the_minimum(self):
    run_dir = self.create_tempdir().full_path
    config = vector_config(run_dir)
    result = _train(config)
    log = eval_log(run_dir)
    self.assertEqual([line["step"] for line in log], [2, 4, 6])
    self.assertEqual(result.evaluation, log[-1]["metrics"])
    for name in ("fid", "kid", "kid_stderr", "precision", "recall", "modes", "high_quality"):
      self.assertIn(name, log[0]["metrics"])
    # TensorBoard holds the same figures.
    board = tensorboard_scalars(run_dir)
    for line in log:
      for name in ("fid", "kid", "modes", "high_quality"):
        self.assertAllClose(board[f"eval/{name}"][line["step"]], line["metrics"][name],
                            rtol=1e-6, msg=name)
    # The best checkpoint is the step of the lowest FID, kept although only
    # the latest regular checkpoint (ckpt-6) survives the rotation.
    fids = {line["step"]: line["metrics"]["fid"] for line in log}
    self.assertGreater(len(set(fids.values())), 1)
    best_step = min(fids, key=fids.get)
    record = run_dir_lib.load_best_record(os.path.join(run_dir, run_dir_lib.CHECKPOINT_SUBDIR))
    self.assertEqual((record["metric"], record["mode"], record["step"]),
                     ("fid", "min", best_step))
    self.assertEqual(record["value"], fids[best_step])
    best_dir = run_dir_lib.best_dir(os.path.join(run_dir, run_dir_lib.CHECKPOINT_SUBDIR))
    self.assertEqual(tf.train.latest_checkpoint(best_dir),
                     os.path.join(best_dir, f"ckpt-{best_step}"))
    self.assertEqual(sorted(os.path.basename(p).split(".")[0]
                            for p in glob.glob(os.path.join(best_dir, "ckpt-*"))),
                     [f"ckpt-{best_step}"] * 2)  # .index and one .data file.
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(
        os.path.join(run_dir, run_dir_lib.CHECKPOINT_SUBDIR))), "ckpt-6")
    # pipeline.evaluate of the saved checkpoints reports the in-training figures.
    for checkpoint, step in (("best", best_step), ("6", 6)):
      offline = evaluate_checkpoint(config, checkpoint)
      logged = next(line["metrics"] for line in log if line["step"] == step)
      for name in ("fid", "kid", "precision", "recall", "modes", "high_quality"):
        self.assertAllClose(offline[name], logged[name], rtol=1e-5, atol=1e-7,
                            msg=f"{checkpoint} {name}")

  def test_resume_gives_the_uninterrupted_log_and_best(self):
    whole_dir, split_dir = self.create_tempdir().full_path, self.create_tempdir().full_path
    _train(vector_config(whole_dir, keep_best="high_quality"))
    _train(vector_config(split_dir, keep_best="high_quality", train_steps=4))
    # A crash after the evaluation of step 6 but before its checkpoint: the
    # line is dropped on resume and step 6 evaluated again.
    with open(os.path.join(split_dir, run_dir_lib.EVAL_LOG_NAME), "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": 6, "metrics": {"fid": -1.0}}) + "\n")
    _train(vector_config(split_dir, keep_best="high_quality"))
    whole, split = eval_log(whole_dir), eval_log(split_dir)
    self.assertEqual([line["step"] for line in split], [2, 4, 6])
    for a, b in zip(whole, split):
      for name in ("fid", "kid", "high_quality", "modes"):
        self.assertAllClose(a["metrics"][name], b["metrics"][name], rtol=1e-5, atol=1e-7,
                            msg=f"step {a['step']} {name}")
    records = [run_dir_lib.load_best_record(os.path.join(d, run_dir_lib.CHECKPOINT_SUBDIR))
               for d in (whole_dir, split_dir)]
    self.assertEqual(records[0]["step"], records[1]["step"])
    self.assertEqual(records[0]["mode"], "max")
    shares = {line["step"]: line["metrics"]["high_quality"] for line in whole}
    first_best = max(sorted(shares), key=lambda s: (shares[s], -s))  # Ties keep the earlier.
    self.assertEqual(records[0]["step"], first_best)

  @pytest.mark.slow
  def test_another_protocol_replaces_the_record(self):
    run_dir = self.create_tempdir().full_path
    _train(vector_config(run_dir, train_steps=2))
    ckpt_dir = os.path.join(run_dir, run_dir_lib.CHECKPOINT_SUBDIR)
    self.assertEqual(run_dir_lib.load_best_record(ckpt_dir)["key"]["num"], 200)
    # Fewer samples per evaluation: figures not comparable with the record.
    record = run_dir_lib.load_best_record(ckpt_dir)
    with open(os.path.join(run_dir_lib.best_dir(ckpt_dir), run_dir_lib.BEST_RECORD_NAME), "w",
              encoding="utf-8") as f:
      json.dump(dict(record, value=-1.0), f)  # Unbeatable if it were compared.
    _train(vector_config(run_dir, train_steps=4, eval_num_samples=100))
    record = run_dir_lib.load_best_record(ckpt_dir)
    self.assertEqual((record["step"], record["key"]["num"]), (4, 100))

  @pytest.mark.slow
  def test_images_with_a_feature_network(self):
    tmp = self.create_tempdir().full_path
    data = test_train.small_data("shapes")
    classifier = os.path.join(tmp, "classifier.keras")
    test_evaluate.train_feature_classifier(data, classifier, epochs=1)
    config = test_train.tiny_config(
        "sngan", os.path.join(tmp, "run"), train_steps=2, eval_every=1, eval_num_samples=48,
        eval_features=classifier, keep_best="kid", cpu_replicas=2, global_batch_size=8,
        data_cache=os.path.join(tmp, "cache"))
    _train(config)
    log = eval_log(config.model_dir)
    self.assertEqual([line["step"] for line in log], [1, 2])
    self.assertIn("inception_score", log[0]["metrics"])  # The classifier has a head.
    with open(os.path.join(config.model_dir, run_dir_lib.EVAL_PROTOCOL_NAME),
              encoding="utf-8") as f:
      protocol = json.load(f)
    self.assertEqual((protocol["num_fake"], protocol["num_real"]), (48, 48))
    self.assertEqual(protocol["feature_network"]["layer"], "embedding")
    self.assertEqual(protocol["fake"]["training_step"], 2)
    offline = evaluate_checkpoint(config, "2", features=classifier)
    for name in ("fid", "kid", "inception_score", "precision", "recall"):
      self.assertAllClose(offline[name], log[1]["metrics"][name], rtol=1e-4, atol=1e-6,
                          msg=name)

  @pytest.mark.slow
  def test_translation_compares_translated_test_images(self):
    tmp = self.create_tempdir().full_path
    data = test_translation.small_data("shapes_paired")  # 32 test pairs, 32 px.
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.layers.Input((32, 32, 3)), keras.layers.Conv2D(8, 3),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    net_path = os.path.join(tmp, "features.keras")
    net.save(net_path)
    config = test_translation.tiny_config(
        "pix2pix", os.path.join(tmp, "run"), train_steps=1, eval_every=1,
        eval_num_samples=20, eval_features=net_path, cpu_replicas=1,
        data_cache=os.path.join(tmp, "cache"))
    _train(config)
    logged = eval_log(config.model_dir)[0]["metrics"]
    # By hand: the first 20 test outlines (image_a) translated by the saved
    # model, against the first 20 filled test shapes (image_b).
    algorithm, _ = sampling.load_algorithm(config.model_dir, "1")
    sources, _ = test_evaluate.real_arrays(data, "test", key="image_a")
    npz = os.path.join(tmp, "translated.npz")
    np.savez(npz, x=algorithm.translate(sources[:20]).numpy())
    offline = evaluate.run(evaluate.EvaluateConfig(
        real=data, samples=npz, real_split="test", features=net_path, num_samples=20,
        num_real=20, kid_subset_size=20, cache_stats=False))
    self.assertEqual(offline["protocol"]["real"]["feature"], "image_b")
    for name in ("fid", "kid", "precision", "recall", "inception_score"):
      self.assertAllClose(offline["metrics"][name], logged[name], rtol=1e-4, atol=1e-6,
                          msg=name)

  def test_translation_targets_of_unpaired_data(self):
    manifest = {"kind": "unpaired", "splits": {name: {"num_examples": n} for name, n in (
        ("trainA", 100), ("trainB", 90), ("testA", 10), ("testB", 12))}}
    real, source_split, feature = during_training.translation_real("/data", manifest, "AtoB", 50)
    self.assertEqual((real.split, real.feature, real.count, source_split, feature),
                     ("testB", "image", 12, "testA", "image"))
    real, source_split, _ = during_training.translation_real("/data", manifest, "BtoA", 5)
    self.assertEqual((real.split, real.count, source_split), ("testA", 5, "testB"))
    del manifest["splits"]["testB"]  # No held-out pair: the training domains.
    real, source_split, _ = during_training.translation_real("/data", manifest, "AtoB", 500)
    self.assertEqual((real.split, real.count, source_split), ("trainB", 90, "trainA"))

  def test_errors(self):
    tmp = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, "--keep_best=fid needs --eval_every=N"):
      config_lib.TrainConfig(keep_best="fid").validate()
    with self.assertRaisesRegex(ValueError, "--keep_best must be one of fid, kid"):
      config_lib.TrainConfig(keep_best="loss", eval_every=1).validate()
    with self.assertRaisesRegex(ValueError, "--eval_every must be >= 0"):
      config_lib.TrainConfig(eval_every=-1).validate()
    # A metric this data does not have fails at start, before any training.
    with self.assertRaisesRegex(ValueError, "--keep_best=inception_score is not computed "
                                            "here: the metrics of this data and feature "
                                            "network are fid, kid, precision, recall, modes, "
                                            "high_quality"):
      _train(vector_config(tmp, keep_best="inception_score"))
    self.assertEqual(glob.glob(os.path.join(tmp, run_dir_lib.CHECKPOINT_SUBDIR, "ckpt-*")), [])
    with self.assertRaisesRegex(ValueError, "curl -L -o"):
      _train(test_train.tiny_config("dcgan", os.path.join(tmp, "img"), eval_every=1,
                                         inception_weights="/nonexistent/w.h5",
                                         cpu_replicas=1))
    with self.assertRaisesRegex(ValueError, "no best checkpoint in .*--keep_best=METRIC"):
      plain = vector_config(os.path.join(tmp, "plain"), eval_every=0, keep_best=None,
                            train_steps=1)
      _train(plain)
      evaluate_checkpoint(plain, "best")


if __name__ == "__main__":
  np.set_printoptions(precision=4)
  tf.test.main()
