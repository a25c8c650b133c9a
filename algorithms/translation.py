"""Image-to-image translation on the one trainer: pix2pix, CycleGAN and UNIT.

| name       | data     | networks                                   | losses (paper weights)          |
|------------|----------|--------------------------------------------|---------------------------------|
| `pix2pix`  | paired   | U-Net G (dropout), 70x70 PatchGAN on (x, y) | BCE + 100 L1; D objective / 2   |
| `cyclegan` | unpaired | 2 ResNet G, 2 PatchGAN D                   | LSGAN + 10 cycle + 5 identity   |
| `unit`     | unpaired | 2 VAE encoders/decoders, shared layers; 2 D | LSGAN 1, recon 10, KL 0.01, cycle 10, cycle KL 0.01 |

Each step has two phases: the generators' update reads a batch, the
discriminators' update reuses it (`Phase.reuse_batch`) and regenerates the
fakes with the just-updated generators. Losses are per-example, like every
other algorithm's, and the trainer reduces them against the global batch.

Everything random comes from the step's `StepRandomness` (pix2pix's jitter and
dropout masks, UNIT's latent noise, the pools' coins), so N replicas compute
what one replica computes on the same global batch.

The networks take the source domain's channels and make the target's
(`DataInfo.domain_shape`): paired volumes converted with --context_slices=K
give pix2pix 2K + 1 slices of A (the centre one and its neighbours) to make
B's centre slice, and the sample grids show the centre slice of the input.

CycleGAN's image history (Shrivastava et al. 2017; a pool of 50): each
position of the global batch has its own pool of ceil(50 / global batch)
images, and a replica reads and updates the pools of its own examples only.
With the paper's batch of 1 this is exactly one pool of 50; with a larger batch
the history still holds 50 images in all. Pools per batch position (rather
than per replica) keep the result independent of the replica count; the trainer
gathers every replica's rows after the update so that checkpoints hold every
pool and resume exactly.
"""

import dataclasses
import math

import keras
import tensorflow as tf

from models import augment as augment_lib
from models import cyclegan as cyclegan_models
from models import losses
from models import pix2pix as pix2pix_models
from models import unit as unit_models
from algorithms import base
from algorithms import translation_ops
from algorithms.base import Phase

BASE_CHANNELS = 64  # --base_channels's default: the papers' width.
PATCH_LAYERS = 3  # The 70x70 PatchGAN's stride-2 convolutions (Isola et al. 2017).


def patch_layers(spatial):
  """The PatchGAN's stride-2 convolutions for inputs of these sides.

  Images keep the paper's 3 (70x70 patches; sides of at least 24). Volumes
  are trained on small patches (16^3 or 32^3 on a CPU), where 3 would leave
  no output: they get the most, up to 3, that leave at least one logit per
  axis (`pix2pix.min_patch_input`: side >= 3 * 2^n), e.g. 2 at 16^3
  (34-voxel receptive field, partly outside the patch) and 3 at 32^3.
  """
  if len(spatial) == 2:
    return PATCH_LAYERS
  n = PATCH_LAYERS
  while n > 1 and min(spatial) < pix2pix_models.min_patch_input(n):
    n -= 1
  return n


@dataclasses.dataclass(frozen=True)
class TranslationSpec:
  """The paper defaults of a translation algorithm."""
  kind: str  # paired | unpaired
  lr: float
  beta1: float
  beta2: float
  global_batch_size: int
  l1_weight: float = 0.0
  cycle_weight: float = 0.0
  identity_weight: float = 0.0
  kl_weight: float = 0.0
  pool_size: int = 0
  lr_decay_start: float = 1.0
  weight_decay: float = 0.0
  reference: str = ""


class Translation(base.Algorithm):
  """What the three translation algorithms share."""
  inference = base.TRANSLATION
  reversible = True
  spec = None
  preview_split = "test"
  preview_examples = 8

  # Read by every translation algorithm; each adds its loss weights.
  COMMON_SETTINGS = frozenset({"direction", "lr_g", "lr_d", "beta1", "beta2",
                               "lr_decay_start", "base_channels"})

  @classmethod
  def resolve(cls, config, data):
    spec = cls.spec
    if len(data.shape) == 4 and spec.kind != "paired":
      raise ValueError(f"{config.algo} trains on 2-D images; of the translation algorithms "
                       "only pix2pix takes volumes (pipeline.convert --volumes)")
    if data.kind != spec.kind:
      raise ValueError(f"{config.algo} needs {spec.kind} data (pipeline.convert "
                       f"--source={spec.kind}:...), got {data.kind} data")
    if config.direction not in base.DIRECTIONS:
      raise ValueError(f"--direction must be {' or '.join(base.DIRECTIONS)}, got "
                       f"{config.direction!r}")
    if data.context_slices and config.direction != "AtoB":
      raise ValueError(f"--direction={config.direction}, but the data holds A's slices with "
                       f"their context (--context_slices={data.context_slices}) to translate "
                       "to B's: train AtoB, or convert with A and B swapped")
    pick = lambda value, default: default if value is None else value  # noqa: E731
    return dataclasses.replace(
        config, n_critic=1,
        lr_g=pick(config.lr_g, spec.lr), lr_d=pick(config.lr_d, spec.lr),
        beta1=pick(config.beta1, spec.beta1), beta2=pick(config.beta2, spec.beta2),
        l1_weight=pick(config.l1_weight, spec.l1_weight),
        cycle_weight=pick(config.cycle_weight, spec.cycle_weight),
        identity_weight=pick(config.identity_weight, spec.identity_weight),
        kl_weight=pick(config.kl_weight, spec.kl_weight),
        pool_size=pick(config.pool_size, spec.pool_size),
        lr_decay_start=pick(config.lr_decay_start, spec.lr_decay_start),
        res_blocks=config.res_blocks or cls.default_res_blocks(data),
        base_channels=config.base_channels or BASE_CHANNELS,
        augment=(",".join(augment_lib.parse_policy(config.augment)) or "none"
                 if "augment" in cls.hyperparameters() else config.augment),
        global_batch_size=config.global_batch_size or spec.global_batch_size)

  @classmethod
  def default_res_blocks(cls, data):
    """The paper's number of residual blocks for this data (None: no blocks)."""
    del data
    return None

  def data_requirements(self):
    return dict(kinds=(self.spec.kind,), labels=False)

  @property
  def image_shape(self):
    return tuple(self.data.shape)

  @property
  def rank(self):
    """2 for images, 3 for volumes (`pipeline.convert --volumes`)."""
    return len(self.data.shape) - 1

  @property
  def source_shape(self):
    """The shape of what the configured direction translates: [H, W, C_in]."""
    return self.data.domain_shape(self.config.direction[0])

  @property
  def target_shape(self):
    """The shape of what it translates into: [H, W, C_out]."""
    return self.data.domain_shape(self.config.direction[-1])

  def _optimizers(self, g_vars, d_vars):
    c, spec = self.config, self.spec
    make = lambda lr, name: keras.optimizers.Adam(  # noqa: E731
        learning_rate=lr, beta_1=c.beta1, beta_2=c.beta2, name=name,
        weight_decay=spec.weight_decay or None)
    self.optimizers = {"g": make(c.lr_g, "g_optimizer"), "d": make(c.lr_d, "d_optimizer")}
    # Slots are built in the strategy scope, not lazily inside the tf.function.
    self.optimizers["g"].build(g_vars)
    self.optimizers["d"].build(d_vars)

  def _domains(self, batch):
    """(source, target) images of the configured direction."""
    a, b = batch["image_a"], batch["image_b"]
    return (a, b) if self.config.direction == "AtoB" else (b, a)

  def preview_inputs(self, n, seed, examples=None):
    del n, seed
    k = self.preview_examples
    return {key: tf.constant(examples[key][:k]) for key in ("image_a", "image_b")}

  @property
  def stride(self):
    """Image sides must be multiples of this (fully convolutional networks)."""
    return self.generator.stride


@base.register("pix2pix")
class Pix2Pix(Translation):
  """Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
  Networks": U-Net G with dropout as its noise, conditional 70x70 PatchGAN D,
  L = cGAN (non-saturating BCE) + 100 L1, D's objective halved, Adam 2e-4
  (0.5, 0.999), random jitter (1.12x resize, crop, mirror)."""
  spec = TranslationSpec("paired", lr=2e-4, beta1=0.5, beta2=0.999, global_batch_size=4,
                         l1_weight=100.0, reference="Isola et al. 2017: batch 1-10, lambda_L1 100")
  default_data = "builtin:shapes_paired"
  reversible = False  # One generator, trained one way.
  checked_in_bfloat16 = True  # 1.55-1.58x faster at 128 px, translations unharmed (BUILD.md).

  @classmethod
  def hyperparameters(cls):
    return cls.COMMON_SETTINGS | {"l1_weight", "jitter", "augment"}

  def build(self):
    c = self.config
    *spatial, in_channels = self.source_shape
    self.generator = pix2pix_models.UNetGenerator(
        self.target_shape[-1], image_size=tuple(spatial), base_channels=c.base_channels,
        name="generator")
    self.discriminator = pix2pix_models.PatchDiscriminator(
        c.base_channels, num_layers=patch_layers(spatial), conditional=True,
        rank=self.rank, name="discriminator")
    x = tf.zeros((2, *spatial, in_channels))
    self.discriminator(self.generator(x), condition=x)
    self._optimizers(self.generator.trainable_variables,
                     self.discriminator.trainable_variables)

  def bfloat16_checked(self):
    # Measured on images only: 3-D pix2pix (volumes) stays float32 under auto.
    return self.checked_in_bfloat16 and self.rank == 2

  def phases(self):
    return [Phase("d", 1, True, ("d_loss", "d_real", "d_fake")),
            Phase("g", 1, False, ("g_loss", "g_gan", "l1"), reuse_batch=True)]

  def variables(self, phase):
    model = self.discriminator if phase.name == "d" else self.generator
    return model.trainable_variables

  def xla_unsupported(self):
    if self.config.jitter and self.rank == 2:
      return ("pix2pix's random jitter uses CropAndResize, which XLA has no kernel for; "
              "--nojitter makes it compilable")
    return None

  def loss(self, phase, batch, rand):
    x, y = self._domains(batch)
    if self.config.jitter and self.rank == 3:
      x, y = translation_ops.mirror(rand, [x, y])
    elif self.config.jitter:
      boxes = translation_ops.jitter_boxes(rand)  # The same crop and mirror for both.
      x, y = translation_ops.apply_boxes(x, boxes), translation_ops.apply_boxes(y, boxes)
    fake = self.generator(x, training=True, dropout_rng=rand)
    # --augment: D sees pairs transformed alike (one draw for the condition,
    # the target and the output), in both phases; L1 compares unaugmented.
    t = self._pair_augment(rand)
    fake_logits = self.discriminator(t(fake), condition=t(x), training=True)
    if phase.name == "d":
      real_logits = self.discriminator(t(y), condition=t(x), training=True)
      per_example = 0.5 * losses.minimax_discriminator_loss(real_logits, fake_logits)
      return per_example, {"d_loss": per_example, "d_real": losses.per_example(real_logits),
                           "d_fake": losses.per_example(fake_logits)}
    gan = losses.modified_generator_loss(fake_logits)
    l1 = losses.l1(fake, y)
    per_example = gan + self.config.l1_weight * l1
    return per_example, {"g_loss": per_example, "g_gan": gan, "l1": l1}

  def _pair_augment(self, rand):
    """images -> images: --augment with this step's per-example draws,
    the same transform for every image of a pair."""
    policy = augment_lib.parse_policy(self.config.augment)
    if not policy:
      return lambda images: images
    params = augment_lib.draw_params(rand.uniform, policy, "augment/pair", rank=self.rank)
    return lambda images: augment_lib.augment(images, policy, params)

  def translate(self, x, reverse=False):
    if reverse:
      raise ValueError("pix2pix translates one way only: the direction it was trained in")
    return self.generator(x, training=False)

  def translation_networks(self):
    return [self.generator]

  def preview(self, inputs):
    """Rows of input (its centre slice, with context) | output | target."""
    x, y = self._domains(inputs)
    shown = translation_ops.centre_slice(x) if self.data.context_slices else x
    return tf.reshape(tf.stack([shown, self.translate(x), y], axis=1),
                      (-1,) + self.target_shape)

  def preview_columns(self, n):
    return 3

  def checkpoint_items(self):
    return dict(generator=self.generator, discriminator=self.discriminator,
                g_optimizer=self.optimizers["g"], d_optimizer=self.optimizers["d"])


class _Unpaired(Translation):
  """CycleGAN and UNIT: two domains, a generator and a discriminator for each."""

  def _build_discriminators(self):
    c = self.config
    self.disc_a = pix2pix_models.PatchDiscriminator(c.base_channels, norm="instance",
                                                    name="discriminator_a")
    self.disc_b = pix2pix_models.PatchDiscriminator(c.base_channels, norm="instance",
                                                    name="discriminator_b")
    x = tf.zeros((2,) + self.image_shape)
    self.disc_a(x)
    self.disc_b(x)
    return self.disc_a.trainable_variables + self.disc_b.trainable_variables

  def phases(self):
    return [Phase("g", 1, True, self.g_metrics),
            Phase("d", 1, False, ("d_loss", "d_real", "d_fake"), reuse_batch=True)]

  def _discriminator_loss(self, real_a, real_b, fake_a, fake_b):
    real_la, real_lb = self.disc_a(real_a, training=True), self.disc_b(real_b, training=True)
    fake_la, fake_lb = self.disc_a(fake_a, training=True), self.disc_b(fake_b, training=True)
    per_example = (losses.least_squares_discriminator_loss(real_la, fake_la)
                   + losses.least_squares_discriminator_loss(real_lb, fake_lb))
    return per_example, {
        "d_loss": per_example,
        "d_real": 0.5 * (losses.per_example(real_la) + losses.per_example(real_lb)),
        "d_fake": 0.5 * (losses.per_example(fake_la) + losses.per_example(fake_lb))}

  @staticmethod
  def _adversarial(logits):
    """The generator's LSGAN term (D(G(x)) - 1)^2 (the reference code's MSE,
    i.e. twice Mao et al.'s 0.5 (D - c)^2)."""
    return 2.0 * losses.least_squares_generator_loss(logits)

  def preview(self, inputs):
    """Rows of a | a->b | a->b->a | b | b->a | b->a->b."""
    a, b = inputs["image_a"], inputs["image_b"]
    ab, ba = self.translate_ab(a), self.translate_ba(b)
    rows = [a, ab, self.translate_ba(ab), b, ba, self.translate_ab(ba)]
    return tf.reshape(tf.stack(rows, axis=1), (-1,) + self.image_shape)

  def preview_columns(self, n):
    return 6

  def translate(self, x, reverse=False):
    forward = self.config.direction == "AtoB"
    return self.translate_ab(x) if forward != reverse else self.translate_ba(x)


@base.register("cyclegan")
class CycleGAN(_Unpaired):
  """Zhu et al. 2017, "Unpaired Image-to-Image Translation using
  Cycle-Consistent Adversarial Networks": ResNet generators (6 blocks below 256
  px, 9 at 256 and above), PatchGAN discriminators, LSGAN loss, cycle lambda 10,
  identity 0.5 lambda, a history of 50 fakes per discriminator, Adam 2e-4
  (0.5, 0.999), constant lr for the first half, then linear decay to 0."""
  spec = TranslationSpec("unpaired", lr=2e-4, beta1=0.5, beta2=0.999, global_batch_size=1,
                         cycle_weight=10.0, identity_weight=5.0, pool_size=50,
                         lr_decay_start=0.5, reference="Zhu et al. 2017: batch 1")
  default_data = "builtin:shapes_unpaired"
  g_metrics = ("g_loss", "g_gan", "cycle", "identity")

  @classmethod
  def hyperparameters(cls):
    return cls.COMMON_SETTINGS | {"cycle_weight", "identity_weight", "pool_size", "res_blocks"}

  @classmethod
  def default_res_blocks(cls, data):
    return cyclegan_models.default_resnet_blocks(tuple(data.shape[:2]))

  def build(self):
    c = self.config
    h, w, channels = self.image_shape
    blocks = c.res_blocks
    self.gen_ab = cyclegan_models.ResnetGenerator(channels, c.base_channels, blocks,
                                                  name="generator_ab")
    self.gen_ba = cyclegan_models.ResnetGenerator(channels, c.base_channels, blocks,
                                                  name="generator_ba")
    x = tf.zeros((2, h, w, channels))
    self.gen_ab(x)
    self.gen_ba(x)
    self.generator = self.gen_ab  # What `pipeline.sample`-style tools look for.
    d_vars = self._build_discriminators()
    self._optimizers(self.gen_ab.trainable_variables + self.gen_ba.trainable_variables, d_vars)
    if c.pool_size:
      k = math.ceil(c.pool_size / c.global_batch_size)
      zeros = lambda shape, dtype: tf.Variable(  # noqa: E731
          tf.zeros(shape, dtype), trainable=False,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.example_state = {
          f"pool_{d}": zeros((c.global_batch_size, k, h, w, channels), tf.float32)
          for d in "ab"}
      self.example_state.update({f"pool_count_{d}": zeros((c.global_batch_size,), tf.int32)
                                 for d in "ab"})

  def variables(self, phase):
    if phase.name == "g":
      return self.gen_ab.trainable_variables + self.gen_ba.trainable_variables
    return self.disc_a.trainable_variables + self.disc_b.trainable_variables

  def translate_ab(self, x):
    return self.gen_ab(x, training=False)

  def translate_ba(self, x):
    return self.gen_ba(x, training=False)

  def translation_networks(self):
    return [self.gen_ab, self.gen_ba]

  def loss(self, phase, batch, rand):
    c = self.config
    a, b = batch["image_a"], batch["image_b"]
    fake_b, fake_a = self.gen_ab(a, training=True), self.gen_ba(b, training=True)
    if phase.name == "d":
      fake_a, fake_b = tf.stop_gradient(fake_a), tf.stop_gradient(fake_b)
      rows = {}
      if c.pool_size:
        pooled = {}
        for d, fake in (("a", fake_a), ("b", fake_b)):
          pool, count = (rand.rows(self.example_state[f"pool_{d}"]),
                         rand.rows(self.example_state[f"pool_count_{d}"]))
          pooled[d], rows[f"pool_{d}"], rows[f"pool_count_{d}"] = translation_ops.pool_query(
              pool, count, fake, rand.uniform(f"pool_{d}_use"), rand.uniform(f"pool_{d}_pick"))
        fake_a, fake_b = pooled["a"], pooled["b"]
      per_example, metrics = self._discriminator_loss(a, b, fake_a, fake_b)
      return per_example, metrics, rows
    gan = (self._adversarial(self.disc_b(fake_b, training=True))
           + self._adversarial(self.disc_a(fake_a, training=True)))
    cycle = (losses.l1(self.gen_ba(fake_b, training=True), a)
             + losses.l1(self.gen_ab(fake_a, training=True), b))
    per_example = gan + c.cycle_weight * cycle
    metrics = {"g_gan": gan, "cycle": cycle}
    if c.identity_weight:
      identity = (losses.l1(self.gen_ab(b, training=True), b)
                  + losses.l1(self.gen_ba(a, training=True), a))
      per_example = per_example + c.identity_weight * identity
      metrics["identity"] = identity
    else:
      metrics["identity"] = tf.zeros_like(gan)
    metrics["g_loss"] = per_example
    return per_example, metrics

  def checkpoint_items(self):
    items = dict(generator_ab=self.gen_ab, generator_ba=self.gen_ba,
                 discriminator_a=self.disc_a, discriminator_b=self.disc_b,
                 g_optimizer=self.optimizers["g"], d_optimizer=self.optimizers["d"])
    if self.example_state:
      items["pools"] = dict(self.example_state)
    return items


@base.register("unit")
class UNIT(_Unpaired):
  """Liu et al. 2017, "Unsupervised Image-to-Image Translation Networks": two
  VAE-GANs with a shared latent space (shared last encoder and first decoder
  layers), z = mu + N(0, I). Weights of the authors' code (the paper's
  lambda_0..4 = 10, 0.1, 100, 0.1, 100 divided by 10): GAN 1, reconstruction 10,
  KL 0.01, cycle 10, cycle KL 0.01 (`--l1_weight`, `--cycle_weight`,
  `--kl_weight`); LSGAN loss; Adam 1e-4 (0.5, 0.999), weight decay 1e-4."""
  spec = TranslationSpec("unpaired", lr=1e-4, beta1=0.5, beta2=0.999, global_batch_size=1,
                         l1_weight=10.0, cycle_weight=10.0, kl_weight=0.01,
                         weight_decay=1e-4, reference="Liu et al. 2017; authors' code")
  default_data = "builtin:shapes_unpaired"
  g_metrics = ("g_loss", "g_gan", "reconstruction", "kl", "cycle", "cycle_kl")

  @classmethod
  def hyperparameters(cls):
    return cls.COMMON_SETTINGS | {"l1_weight", "cycle_weight", "kl_weight", "res_blocks"}

  @classmethod
  def default_res_blocks(cls, data):
    return 3

  def build(self):
    c = self.config
    h, w, channels = self.image_shape
    self.unit = unit_models.UNIT(channels, channels, c.base_channels,
                                 num_private_blocks=c.res_blocks, name="unit")
    x = tf.zeros((2, h, w, channels))
    for d in "ab":
      self.unit.decode(self.unit.encode(x, d), d)
    self.generator = self.unit
    self.latent_shape = (h // self.unit.stride, w // self.unit.stride,
                         self.unit.latent_channels)
    d_vars = self._build_discriminators()
    self._optimizers(self.unit.trainable_variables, d_vars)

  def variables(self, phase):
    if phase.name == "g":
      return self.unit.trainable_variables
    return self.disc_a.trainable_variables + self.disc_b.trainable_variables

  def translate_ab(self, x):
    return self.unit(x, source="a", target="b", training=False)

  def translate_ba(self, x):
    return self.unit(x, source="b", target="a", training=False)

  def translation_networks(self):
    return [self.unit]

  def _noisy(self, mu, rand, name):
    """z = mu + N(0, I), from the replica-independent stream `name`."""
    return mu + rand.normal(name, self.latent_shape)

  def loss(self, phase, batch, rand):
    c, u = self.config, self.unit
    a, b = batch["image_a"], batch["image_b"]
    mu_a, mu_b = u.encode(a, "a", training=True), u.encode(b, "b", training=True)
    z_a, z_b = self._noisy(mu_a, rand, "z_a"), self._noisy(mu_b, rand, "z_b")
    fake_b, fake_a = u.decode(z_a, "b", training=True), u.decode(z_b, "a", training=True)
    if phase.name == "d":
      return self._discriminator_loss(a, b, tf.stop_gradient(fake_a), tf.stop_gradient(fake_b))
    gan = (self._adversarial(self.disc_a(fake_a, training=True))
           + self._adversarial(self.disc_b(fake_b, training=True)))
    reconstruction = (losses.l1(u.decode(z_a, "a", training=True), a)
                      + losses.l1(u.decode(z_b, "b", training=True), b))
    kl = losses.kl_unit_gaussian(mu_a) + losses.kl_unit_gaussian(mu_b)
    mu_ab, mu_ba = u.encode(fake_b, "b", training=True), u.encode(fake_a, "a", training=True)
    cycle = (losses.l1(u.decode(self._noisy(mu_ab, rand, "z_ab"), "a", training=True), a)
             + losses.l1(u.decode(self._noisy(mu_ba, rand, "z_ba"), "b", training=True), b))
    cycle_kl = losses.kl_unit_gaussian(mu_ab) + losses.kl_unit_gaussian(mu_ba)
    per_example = (gan + c.l1_weight * reconstruction + c.kl_weight * kl
                   + c.cycle_weight * cycle + c.kl_weight * cycle_kl)
    return per_example, {"g_loss": per_example, "g_gan": gan,
                         "reconstruction": reconstruction, "kl": kl, "cycle": cycle,
                         "cycle_kl": cycle_kl}

  def checkpoint_items(self):
    return dict(unit=self.unit, discriminator_a=self.disc_a, discriminator_b=self.disc_b,
                g_optimizer=self.optimizers["g"], d_optimizer=self.optimizers["d"])

