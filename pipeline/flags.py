"""Every flag of every binary, defined in one place.

Each binary calls the `define_*` function it needs at import time and reads
FLAGS only in its `main`, where it builds one frozen config. Library code never
reads FLAGS, so tests build configs directly. Every flag has a default.
"""

from absl import flags

from training import config as config_lib


def define_convert_flags():
  """Flags of `pipeline.convert` (fields of `input.convert.ConvertConfig`)."""
  flags.DEFINE_string(
      "source", None,
      "What to convert: folder:DIR | tfds:NAME[:SPLIT] | npz:FILE | paired:DIR_A,DIR_B | "
      "paired:DIR (A|B side by side) | unpaired:DIR_A,DIR_B | builtin:NAME "
      "(shapes, ring2d, grid2d, shapes_paired, shapes_unpaired).")
  flags.DEFINE_string("output", None, "Output directory for shards and manifest.json.")
  flags.DEFINE_integer(
      "num_shards", None,
      "Shards per split. Default: about --target_shard_mb per shard, never fewer than "
      "--min_shards (nor more than there are examples).")
  flags.DEFINE_integer("min_shards", 16,
                       "Least number of shards per split, so that many workers can shard "
                       "by file.")
  flags.DEFINE_float("target_shard_mb", 150.0, "Target shard size in MB for --num_shards.")
  flags.DEFINE_integer("image_size", None,
                       "Output size NxN. Default: keep the source's size (all images must "
                       "then share one size). For builtin: the size to draw at (32).")
  flags.DEFINE_enum("channels", None, ["1", "3"],
                    "Output channels. Default: the source's (1 if every image is gray).")
  flags.DEFINE_enum("resize", "crop", ["crop", "pad", "stretch"],
                    "Fitting images of another aspect ratio: center-crop, pad with black "
                    "to the target aspect, or stretch.")
  flags.DEFINE_enum("bit_depth", "8", ["8", "16"],
                    "Stored bit depth; 16 keeps 16-bit PNGs (medical images) exact.")
  flags.DEFINE_enum("encoding", "raw", ["raw", "png"],
                    "raw: fastest to read; png: lossless and smaller on disk.")
  flags.DEFINE_enum("labels", "auto", ["auto", "subfolder", "none"],
                    "folder: labels from first-level subfolder names (auto: when every "
                    "image is in one).")
  flags.DEFINE_integer("num_workers", None,
                       "Parallel writer processes. Default: the CPUs available.")
  flags.DEFINE_bool("overwrite", False,
                    "Start over: rewrite every shard even if complete ones exist.")
  flags.DEFINE_integer("num_tasks", 1,
                       "Split the conversion over this many tasks (Slurm array, Kubernetes "
                       "Indexed Job); each writes a disjoint range of shards.")
  flags.DEFINE_integer("task_index", 0, "This task's index in [0, --num_tasks).")
  flags.DEFINE_bool("finalize", False,
                    "After all tasks: check every shard and write manifest.json.")
  flags.DEFINE_float("max_skip_fraction", 0.01,
                     "Fail (exit 1) when more than this fraction of inputs was skipped.")
  flags.DEFINE_integer("max_examples", None, "Convert at most this many examples per split.")
  flags.DEFINE_integer("seed", 0,
                       "Seed of the shard order shuffle and of builtin data generation.")
  flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data_dir.")


def define_train_flags():
  """Flags of `pipeline.train` (fields of `training.config.TrainConfig`)."""
  flags.DEFINE_string("algo", "sngan", "Algorithm: gan, cgan, dcgan, cdcgan, wgan, wgan_gp, "
                      "sngan, sn_wgan_gp, lsgan; translation: pix2pix, cyclegan, unit.")
  flags.DEFINE_string("data", None,
                      "A directory made by pipeline.convert, or a source converted into the "
                      "cache on first use: builtin:NAME, folder:DIR, tfds:NAME, npz:FILE. "
                      "Default: builtin:shapes (builtin:ring2d for gan and cgan).")
  flags.DEFINE_string("model_dir", None, "Run directory. Default: runs/<algo>-<dataset>.")
  flags.DEFINE_enum("strategy", "mirrored", ["default", "one_device", "mirrored",
                                             "multi_worker"],
                    "tf.distribute strategy. mirrored: every visible GPU, else the CPU.")
  flags.DEFINE_integer("cpu_replicas", None,
                       "Without GPUs: split the CPU into this many logical devices and mirror "
                       "over them (tests, trying a multi-replica config).")
  flags.DEFINE_float("cluster_timeout", None,
                     "multi_worker: seconds every task waits at start-up for the others "
                     "before failing with the names of the missing ones (default 600).")
  flags.DEFINE_list("cluster_workers", [],
                    "multi_worker without TF_CONFIG or Slurm: every worker's host:port, "
                    "the same list on every worker (worker 0 is the chief).")
  flags.DEFINE_integer("task_index", None, "multi_worker with --cluster_workers: this "
                       "worker's index in that list.")
  flags.DEFINE_integer("global_batch_size", None,
                       "Examples per step over all replicas. Default: 64 (256 for 2-D data).")
  flags.DEFINE_integer("train_steps", 2000, "Generator steps to train for.")
  flags.DEFINE_integer("steps_per_loop", 10,
                       "Generator steps per tf.function call (removes Python overhead).")
  flags.DEFINE_enum("xla", "auto", list(config_lib.XLA_SETTINGS),
                    "XLA-compile each replica's forward and backward pass (the all-reduce and "
                    "the update stay outside). auto: what bench/train_step.py measured faster "
                    "on the device type (see training/trainer.py XLA_AUTO).")
  flags.DEFINE_enum("precision", "auto", list(config_lib.PRECISIONS),
                    "Keras dtype policy of the networks. mixed_float16 adds dynamic loss "
                    "scaling, agreed over all replicas; outputs, losses and the gradient "
                    "penalty stay float32. auto: mixed_bfloat16 for the convolutional "
                    "networks on one CPU worker with native bfloat16 (measured faster, samples "
                    "checked), else float32 (see training/trainer.py use_precision).")
  flags.DEFINE_integer("log_every", 100, "Console and TensorBoard scalars every N steps.")
  flags.DEFINE_integer("sample_every", 500, "Sample grid PNG every N steps.")
  flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every N steps (and at the end).")
  flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
  flags.DEFINE_integer(
      "eval_every", 0, "Every N steps (and at the end), the chief computes FID, KID, "
      "precision/recall (IS with a classifier head; modes and high-quality share on 2-D data) "
      "and writes them to TensorBoard (eval/*) and MODEL_DIR/eval.jsonl. 0: off.")
  flags.DEFINE_string("eval_features", "inception",
                      "--eval_every feature network: inception (InceptionV3 pool3, ImageNet "
                      "weights: --inception_weights or Keras's download), or the path of a "
                      "Keras model file or SavedModel (as pipeline.evaluate --features).")
  flags.DEFINE_string("inception_weights", None,
                      "Local InceptionV3 weights file for --eval_features=inception.")
  flags.DEFINE_string("eval_feature_layer", None,
                      "--eval_features=PATH: the layer or output to use (default: the "
                      "penultimate layer, or the only output).")
  flags.DEFINE_integer("eval_num_samples", 5000,
                       "--eval_every: generated samples, and real examples, per evaluation.")
  flags.DEFINE_enum("keep_best", None, list(config_lib.BEST_METRICS),
                    "Keep the best checkpoint by this --eval_every metric in "
                    "MODEL_DIR/checkpoints/best/ (read it with --checkpoint=best).")
  flags.DEFINE_string("loss", None, "Override the algorithm's loss: bce, wasserstein, hinge, "
                      "least_squares.")
  flags.DEFINE_enum("g_loss", None, ["ns", "minimax"],
                    "With the bce loss: non-saturating (default) or the original minimax.")
  flags.DEFINE_integer("n_critic", None, "Discriminator steps per generator step.")
  flags.DEFINE_float("lr_g", None, "Generator learning rate (default: the paper's).")
  flags.DEFINE_float("lr_d", None, "Discriminator learning rate (default: the paper's).")
  flags.DEFINE_float("beta1", None, "Adam beta1 (default: the paper's).")
  flags.DEFINE_float("beta2", None, "Adam beta2 (default: the paper's).")
  flags.DEFINE_float("gp_weight", None, "Gradient-penalty lambda (wgan_gp, sn_wgan_gp: 10).")
  flags.DEFINE_float("weight_clip", None, "Critic weight clipping (wgan: 0.01).")
  flags.DEFINE_float("lr_decay_start", None,
                     "Fraction of --train_steps after which every learning rate decays "
                     "linearly to 0 at --train_steps (default: the algorithm's; 1 = constant).")
  flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"],
                    "Translation algorithms: which domain is the input.")
  flags.DEFINE_float("l1_weight", None, "pix2pix: L1 weight (100); unit: reconstruction "
                     "weight (10).")
  flags.DEFINE_float("cycle_weight", None, "cyclegan, unit: cycle-consistency weight (10).")
  flags.DEFINE_float("identity_weight", None, "cyclegan: identity weight (5, i.e. 0.5 x the "
                     "cycle weight).")
  flags.DEFINE_float("kl_weight", None, "unit: KL weight of the latent codes (0.01).")
  flags.DEFINE_integer("pool_size", None, "cyclegan: images in each discriminator's history "
                       "(50; 0 disables it).")
  flags.DEFINE_integer("res_blocks", None, "cyclegan: residual blocks per generator (6 below "
                       "256 px, 9 from 256 px); unit: private blocks per encoder/decoder (3).")
  flags.DEFINE_bool("jitter", True, "pix2pix: random jitter (1.12x resize, crop, mirror).")
  flags.DEFINE_enum("arch", None, ["mlp", "dcgan"], "Network family (default: the algorithm's; "
                    "mlp for 2-D data).")
  flags.DEFINE_integer("z_dim", None, "Latent size. Default: 128 (2 for 2-D data).")
  flags.DEFINE_integer("base_channels", 64, "Width of the conv nets.")
  flags.DEFINE_list("mlp_hidden", ["512", "512", "512"], "Hidden widths of the MLPs.")
  flags.DEFINE_integer("label_embedding", 0,
                       "Conditional algorithms: 0 for one-hot labels, else the size of a "
                       "learned label embedding.")
  flags.DEFINE_float("ema_decay", 0.0, "Generator EMA decay (0: off); samples use the EMA.")
  flags.DEFINE_integer("image_size", None, "Size to convert builtin:/folder: data to.")
  flags.DEFINE_bool("random_flip", False, "Random left-right flips of real images.")
  flags.DEFINE_integer("shuffle_buffer", None,
                       "Shuffle buffer in examples (default: about 64 MB of records).")
  flags.DEFINE_bool("skip_corrupt", False, "Log and skip corrupt shards instead of failing.")
  flags.DEFINE_string("data_cache", None,
                      "Cache of converted sources (default: $GAN_PIPELINE_DATA or "
                      "~/.cache/gan_pipeline).")
  flags.DEFINE_integer("seed", 0, "Seed of initialization, noise and shuffling.")
  flags.DEFINE_bool("deterministic", False,
                    "Bit-reproducible runs on the same hardware (slower input pipeline).")
  flags.DEFINE_bool("fresh", False, "Start over, deleting the run in --model_dir.")
  flags.DEFINE_integer("num_samples", 64, "Images in each sample grid.")


def define_worker_command_flags():
  """Flags of the launchers that start training processes (`launch.*`).

  Defined once per process: tests import several launchers.
  """
  if "module" in flags.FLAGS:
    return
  flags.DEFINE_string("python", None,
                      "Python interpreter of the training processes. Default: the one "
                      "running this launcher.")
  flags.DEFINE_string("module", "pipeline.train",
                      "Module each training process runs with `python -m` (tests swap in a "
                      "fake worker).")


def define_launch_local_flags():
  """Flags of `launch.local`."""
  define_worker_command_flags()
  flags.DEFINE_integer("workers", 2, "Worker processes to start on this machine.")
  flags.DEFINE_float("grace_seconds", 30.0,
                     "When stopping: seconds between SIGTERM and SIGKILL (the workers save a "
                     "checkpoint on SIGTERM).")


def define_translate_flags():
  """Flags of `pipeline.translate` (fields of `training.translate.TranslateConfig`)."""
  flags.DEFINE_string("model_dir", None, "Run directory of a pix2pix, cyclegan or unit run.")
  flags.DEFINE_string("input", None, "Folder of images to translate (searched recursively).")
  flags.DEFINE_string("output", None, "Folder for the translated PNGs (same relative names).")
  flags.DEFINE_enum("direction", None, ["AtoB", "BtoA"],
                    "Default: the direction the model was trained in. cyclegan and unit "
                    "translate both ways; pix2pix only the trained way.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint path, step, or best "
                      "(--keep_best's; default: the latest).")


def define_sample_flags():
  """Flags of `pipeline.sample`."""
  flags.DEFINE_string("model_dir", None, "Run directory of pipeline.train.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint path, step, or best "
                      "(--keep_best's; default: the latest).")
  flags.DEFINE_integer("num", 64, "Number of samples (without --interpolate).")
  flags.DEFINE_list("labels", None, "Conditional algorithms: class indices to cycle over "
                    "(default: all classes; with --interpolate, one class per row).")
  flags.DEFINE_string("output", None, "*.npz, *.png (grid) or a directory of PNGs.")
  flags.DEFINE_integer("seed", 0, "Seed of the latent draws: the same seed, checkpoint and "
                       "flags give the same samples.")
  flags.DEFINE_integer("interpolate", 0,
                       "N > 1: latent interpolation grid instead of independent samples: "
                       "--rows rows of N images, each row a spherical interpolation (slerp) "
                       "between two latents drawn from --seed.")
  flags.DEFINE_integer("rows", 8, "Rows of the --interpolate grid.")


def define_evaluate_flags():
  """Flags of `pipeline.evaluate` (fields of `training.evaluate.EvaluateConfig`)."""
  flags.DEFINE_string("model_dir", None,
                      "Generated samples from this run directory of pipeline.train (a "
                      "sampling algorithm). Give --model_dir or --samples.")
  flags.DEFINE_string("checkpoint", None, "With --model_dir: checkpoint path, step, or "
                      "best (--keep_best's; default: the latest).")
  flags.DEFINE_string("samples", None,
                      "Generated samples from a .npz (array x in [-1, 1], as written by "
                      "pipeline.sample) or a folder of images (searched recursively; e.g. the "
                      "output of pipeline.translate).")
  flags.DEFINE_string("real", None,
                      "Real data: a directory made by pipeline.convert, a folder of images, or "
                      "a source KIND:ARG (builtin:NAME, folder:DIR, tfds:NAME, npz:FILE) "
                      "converted into the data cache on first use.")
  flags.DEFINE_string("real_split", "train",
                      "Split of the real data (unpaired data: name a domain, e.g. testB).")
  flags.DEFINE_string("features", "inception",
                      "Feature network: inception (InceptionV3 pool3 at 299x299, ImageNet "
                      "weights), or the path of a Keras model file or SavedModel.")
  flags.DEFINE_string("inception_weights", None,
                      "Local InceptionV3 weights file (inception_v3_weights_tf_dim_ordering_"
                      "tf_kernels.h5). Default: Keras's cached download.")
  flags.DEFINE_string("feature_layer", None,
                      "--features=PATH: the layer (Keras) or output (SavedModel) to use. "
                      "Default: the penultimate layer (Keras), the only output (SavedModel).")
  flags.DEFINE_integer("num_samples", 10_000, "Generated samples to evaluate.")
  flags.DEFINE_integer("num_real", 10_000, "Real examples to compare with (0: the whole split).")
  flags.DEFINE_integer("seed", 0, "Seed of the latent draws and of KID's subsets.")
  flags.DEFINE_integer("batch_size", 100, "Images per feature-network call.")
  flags.DEFINE_integer("kid_subsets", 100, "KID: number of subsets.")
  flags.DEFINE_integer("kid_subset_size", 1000, "KID: samples per subset (capped at the "
                       "number of kept features).")
  flags.DEFINE_integer("max_features", 10_000,
                       "KID and precision/recall use a uniform random subset of at most this "
                       "many feature vectors per side (FID uses every sample).")
  flags.DEFINE_string("stats_cache", None,
                      "Cache of real-data statistics (default: <data cache>/eval_stats); "
                      "'none' disables it.")
  flags.DEFINE_string("data_cache", None,
                      "Cache of converted sources (default: $GAN_PIPELINE_DATA or "
                      "~/.cache/gan_pipeline).")
  flags.DEFINE_integer("image_size", None, "Size to convert folder:/builtin: real data to.")
  flags.DEFINE_string("output", None, "Write the results and the protocol to this JSON file.")


def define_export_flags():
  """Flags of `pipeline.export` (fields of `training.export.ExportConfig`)."""
  flags.DEFINE_string("model_dir", None, "Run directory of pipeline.train.")
  flags.DEFINE_string("output", None, "Directory to write the SavedModel to.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint path, step, or best "
                      "(--keep_best's; default: the latest).")
  flags.DEFINE_enum("direction", None, ["AtoB", "BtoA"],
                    "Translation models: the direction to export (default: the trained one; "
                    "cyclegan and unit can export either).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --output directory.")
