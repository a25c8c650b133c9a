"""Every flag of every binary, defined in one place.

Each binary calls the `define_*` function it needs at import time and reads
FLAGS only in its `main`, where it builds one frozen config. Library code never
reads FLAGS, so tests build configs directly. Every flag has a default.
"""

from absl import flags


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
  flags.DEFINE_integer("global_batch_size", None,
                       "Examples per step over all replicas. Default: 64 (256 for 2-D data).")
  flags.DEFINE_integer("train_steps", 2000, "Generator steps to train for.")
  flags.DEFINE_integer("steps_per_loop", 10,
                       "Generator steps per tf.function call (removes Python overhead).")
  flags.DEFINE_integer("log_every", 100, "Console and TensorBoard scalars every N steps.")
  flags.DEFINE_integer("sample_every", 500, "Sample grid PNG every N steps.")
  flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every N steps (and at the end).")
  flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
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
  flags.DEFINE_float("grace_seconds", 10.0,
                     "When stopping: seconds between SIGTERM and SIGKILL.")


def define_translate_flags():
  """Flags of `pipeline.translate` (fields of `training.translate.TranslateConfig`)."""
  flags.DEFINE_string("model_dir", None, "Run directory of a pix2pix, cyclegan or unit run.")
  flags.DEFINE_string("input", None, "Folder of images to translate (searched recursively).")
  flags.DEFINE_string("output", None, "Folder for the translated PNGs (same relative names).")
  flags.DEFINE_enum("direction", None, ["AtoB", "BtoA"],
                    "Default: the direction the model was trained in. cyclegan and unit "
                    "translate both ways; pix2pix only the trained way.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint path or step (default: the latest).")
