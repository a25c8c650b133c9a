"""The sampling GANs, one `GANSpec` each, all served by `ImageGAN`.

| name         | networks        | loss                     | extras                          |
|--------------|-----------------|--------------------------|---------------------------------|
| `gan`        | MLP             | BCE, non-saturating G    | `--g_loss=minimax`              |
| `cgan`       | MLP, one-hot y  | BCE                      |                                 |
| `dcgan`      | DCGAN, BN       | BCE                      |                                 |
| `cdcgan`     | DCGAN, one-hot y| BCE                      |                                 |
| `wgan`       | DCGAN, BN       | Wasserstein              | weight clip 0.01, RMSprop, n=5  |
| `wgan_gp`    | DCGAN, no BN in D | Wasserstein            | GP lambda=10, n=5               |
| `sngan`      | DCGAN, SN in D  | hinge (`--loss=wasserstein`) |                             |
| `sn_wgan_gp` | DCGAN, SN in D  | Wasserstein              | GP lambda=10, n=5               |
| `lsgan`      | DCGAN, BN       | least squares (a=0,b=1,c=1) |                              |

On 2-D vector data (`builtin:ring2d`, `builtin:grid2d`) every algorithm uses
MLPs (with spectral norm in D where the algorithm has it).

Every image algorithm also takes, beyond its paper:
- `--arch=resnet`: SNGAN-style residual networks (`models/resnet.py`), spectral
  norm in D where the algorithm has it, and with `--conditional` conditional
  batch norm in G and a projection discriminator. The generator EMA is on by
  default there (0.999).
- `--arch=cnn`: the SNGAN paper's "standard CNN" (the DCGAN nets with 3x3
  stride-1 convolutions added, `models/dcgan.py`).
- The first run's sizes: `--base_channels` 32 (half the papers' 64; resnet
  keeps 64) and `--global_batch_size` 32 on images, chosen by measurement
  (bench/results/quality-2026-12-05.md).
- `--conditional` on labeled data (cgan and cdcgan are conditional by default
  and keep the papers' concatenation with dcgan and mlp networks).
- `--augment=POLICY` (DiffAugment, `models/augment.py`) on every image D sees,
  real and fake, in both phases, with ADA's adaptive probability under
  `--ada_target` (p in the checkpoint, p and r_t in TensorBoard).
- `--penalty=r1|wgan_gp|none`, R1 optionally lazy (`--r1_every`).
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from algorithms import base
from algorithms.base import Phase
from models import augment as augment_lib
from models import blocks
from models import dcgan
from models import losses
from models import mlp
from models import penalties
from models import resnet
from models import spectral_norm

ARCHS = ("mlp", "dcgan", "cnn", "resnet")
RESNET_EMA_DECAY = 0.999  # --ema_decay's default with --arch=resnet.
# --base_channels's default: mimicry's 64 for resnet; half the papers' 64 for
# the dcgan and cnn nets, which on a 2-core CPU draws better shapes per minute
# (README, "The first run"; python -m bench.quality --only=first_run).
BASE_CHANNELS = {"resnet": 64}
SMALL_BASE_CHANNELS = 32
# --global_batch_size's default on images (the papers' 64 by flag) and 2-D data.
IMAGE_BATCH, VECTOR_BATCH = 32, 256
R1_GAMMA = 10.0  # Mescheder et al. 2018.
# ADA (Karras et al. 2020): p moves every ADA_INTERVAL steps by
# sign(r_t - target) * (images in the interval) / (--ada_kimg * 1000).
ADA_INTERVAL = 4


@dataclasses.dataclass(frozen=True)
class GANSpec:
  """The paper defaults of an image/vector GAN algorithm."""
  arch: str  # mlp | dcgan
  loss: str
  conditional: bool = False
  spectral_norm: bool = False
  d_norm: str = "batch"
  gp_weight: float = 0.0  # Applies `penalty` with this weight (--gp_weight) when > 0.
  penalty: str = "wgan_gp"  # A name in models.penalties.PENALTIES.
  weight_clip: float = 0.0
  n_critic: int = 1
  optimizer: str = "adam"
  lr: float = 2e-4
  beta1: float = 0.5
  beta2: float = 0.999
  negative_slope: float = 0.2
  default_data: str = "builtin:shapes"
  reference: str = ""


SPECS = {
    "gan": GANSpec("mlp", "bce", default_data="builtin:ring2d",
                   reference="Goodfellow et al. 2014 (Adam 2e-4/0.5 as in DCGAN, not SGD)"),
    "cgan": GANSpec("mlp", "bce", conditional=True, default_data="builtin:ring2d",
                    reference="Mirza & Osindero 2014"),
    "dcgan": GANSpec("dcgan", "bce", reference="Radford et al. 2016: Adam 2e-4, beta1 0.5"),
    "cdcgan": GANSpec("dcgan", "bce", conditional=True, reference="conditional DCGAN"),
    "wgan": GANSpec("dcgan", "wasserstein", weight_clip=0.01, n_critic=5, optimizer="rmsprop",
                    lr=5e-5, reference="Arjovsky et al. 2017: RMSprop 5e-5, clip 0.01, n_critic 5"),
    "wgan_gp": GANSpec("dcgan", "wasserstein", d_norm="none", gp_weight=10.0, n_critic=5,
                       lr=1e-4, beta1=0.5, beta2=0.9,
                       reference="Gulrajani et al. 2017: Adam 1e-4 (0.5, 0.9), lambda 10, "
                                 "n_critic 5"),
    "sngan": GANSpec("dcgan", "hinge", spectral_norm=True, d_norm="none", lr=2e-4, beta1=0.5,
                     beta2=0.999, negative_slope=0.1,
                     reference="Miyato et al. 2018, setting C: Adam 2e-4 (0.5, 0.999), "
                               "n_dis 1, hinge loss"),
    "sn_wgan_gp": GANSpec("dcgan", "wasserstein", spectral_norm=True, d_norm="none",
                          gp_weight=10.0, n_critic=5, lr=1e-4, beta1=0.5, beta2=0.9,
                          negative_slope=0.1,
                          reference="spectral norm (Miyato et al.) + WGAN-GP (Gulrajani et al.)"),
    "lsgan": GANSpec("dcgan", "least_squares", reference="Mao et al. 2017: Adam 2e-4, beta1 0.5, "
                                                         "a=0 b=1 c=1"),
}


def _optimizer(kind, lr, beta1, beta2, name):
  if kind == "adam":
    return keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2, name=name)
  if kind == "rmsprop":
    return keras.optimizers.RMSprop(learning_rate=lr, name=name)
  raise ValueError(f"unknown optimizer {kind!r}")


class ImageGAN(base.Algorithm):
  """Every sampling GAN of the table above, configured by its `GANSpec`."""
  spec = None  # set per registered subclass

  @classmethod
  def hyperparameters(cls):
    return frozenset({
        "loss", "g_loss", "n_critic", "lr_g", "lr_d", "beta1", "beta2", "gp_weight",
        "weight_clip", "lr_decay_start", "arch", "z_dim", "base_channels", "mlp_hidden",
        "ema_decay", "ema_start", "conditional", "label_embedding", "augment", "ada_target",
        "ada_kimg", "penalty", "r1_gamma", "r1_every"})

  @classmethod
  def resolve(cls, config, data):
    spec = cls.spec
    vector = data.kind == "vector"
    loss = config.loss or spec.loss
    if loss not in losses.LOSSES:
      raise ValueError(f"unknown --loss {loss!r}; valid: {', '.join(sorted(losses.LOSSES))}")
    losses.get(loss, config.g_loss)  # Refuses a --g_loss that does not apply.
    g_loss = config.g_loss or ("ns" if loss == "bce" else None)
    arch = config.arch or ("mlp" if vector else spec.arch)
    if arch not in ARCHS:
      raise ValueError(f"unknown --arch {arch!r}; valid: {', '.join(ARCHS)}")
    if vector and arch != "mlp":
      raise ValueError(f"--arch={arch} cannot model {data.shape}-vector data; use --arch=mlp")
    if len(data.shape) == 4 and arch == "mlp":
      raise ValueError(f"--arch=mlp models 2-D vectors; volumes ({data.name}, "
                       f"{'x'.join(map(str, data.shape))}) take --arch=dcgan, cnn or resnet")
    conditional = spec.conditional if config.conditional is None else config.conditional
    if config.label_embedding and (not conditional or arch == "resnet"):
      raise ValueError("--label_embedding sets the size of the labels concatenated to the inputs "
                       "of conditional dcgan and mlp networks; "
                       + ("--arch=resnet conditions by projection" if conditional
                          else "this run is not --conditional"))
    policy = augment_lib.parse_policy(config.augment)
    if config.ada_target and not policy:
      policy = augment_lib.POLICY_OPS  # ADA adapts the probability of every op.
    if policy and vector:
      raise ValueError(f"--augment={config.augment or 'diffaugment'} augments images; "
                       f"{data.name} is {data.shape}-vector data")
    gp_weight, r1_gamma = config.gp_weight, config.r1_gamma
    penalty = config.penalty or ("wgan_gp" if (spec.gp_weight if gp_weight is None
                                              else gp_weight) else "none")
    if penalty == "r1":
      if gp_weight:
        raise ValueError("--gp_weight weights the wgan_gp penalty; --penalty=r1 takes --r1_gamma")
      gp_weight, r1_gamma = 0.0, R1_GAMMA if r1_gamma is None else r1_gamma
    else:
      if r1_gamma is not None or config.r1_every != 1:
        raise ValueError(f"--r1_gamma and --r1_every need --penalty=r1 (this run: {penalty})")
      gp_weight = ((spec.gp_weight or 10.0) if gp_weight is None else gp_weight
                   ) if penalty == "wgan_gp" else (gp_weight or 0.0)
      if penalty == "none" and gp_weight:
        raise ValueError(f"--gp_weight={gp_weight} with --penalty=none")
    ema_decay = config.ema_decay
    if ema_decay is None:
      ema_decay = RESNET_EMA_DECAY if arch == "resnet" else 0.0
    return dataclasses.replace(
        config,
        loss=loss, g_loss=g_loss, arch=arch, conditional=conditional,
        augment=",".join(policy) or "none", penalty=penalty, r1_gamma=r1_gamma,
        ema_decay=ema_decay,
        n_critic=config.n_critic or spec.n_critic,
        lr_g=spec.lr if config.lr_g is None else config.lr_g,
        lr_d=spec.lr if config.lr_d is None else config.lr_d,
        beta1=spec.beta1 if config.beta1 is None else config.beta1,
        beta2=spec.beta2 if config.beta2 is None else config.beta2,
        gp_weight=gp_weight,
        weight_clip=spec.weight_clip if config.weight_clip is None else config.weight_clip,
        lr_decay_start=1.0 if config.lr_decay_start is None else config.lr_decay_start,
        z_dim=config.z_dim or (2 if vector else 128),
        global_batch_size=config.global_batch_size or (VECTOR_BATCH if vector else IMAGE_BATCH),
        base_channels=config.base_channels or BASE_CHANNELS.get(arch, SMALL_BASE_CHANNELS),
    )

  def data_requirements(self):
    return dict(kinds=("image", "vector"), labels=bool(self.config.conditional))

  def bfloat16_checked(self):
    # The DCGAN networks (models.dcgan) were; the MLPs of 2-D data were not
    # (bfloat16's 8-bit mantissa is coarser than a grid2d mode), nor yet the
    # ResNets or the standard CNN (--arch=cnn: run in bfloat16 only, never
    # compared with float32).
    # Volumes (3-D networks) were not measured in bfloat16 either.
    return self.config.arch == "dcgan" and len(self.data.shape) == 3

  @property
  def num_classes(self):
    return self.data.num_classes if self.config.conditional else 0

  def build(self):
    c, spec, shape = self.config, self.spec, self.data.shape
    self.generator = self._make_generator("generator")
    if c.arch == "mlp":
      self.discriminator = mlp.MLPDiscriminator(c.mlp_hidden, self.num_classes,
                                                spectral_norm=spec.spectral_norm,
                                                label_embedding=c.label_embedding)
    elif c.arch == "resnet":
      self.discriminator = resnet.ResNetDiscriminator(shape, c.base_channels, self.num_classes,
                                                      spectral_norm=spec.spectral_norm)
    else:
      self.discriminator = dcgan.DCGANDiscriminator(
          shape, c.base_channels, self.num_classes, norm=spec.d_norm,
          spectral_norm=spec.spectral_norm, negative_slope=spec.negative_slope,
          label_embedding=c.label_embedding, standard_cnn=c.arch == "cnn")
    z = tf.zeros([2, c.z_dim])
    labels = tf.zeros([2], tf.int32) if self.num_classes else None
    self.generator(z, labels)
    self.discriminator(tf.zeros((2,) + tuple(shape)), labels)
    if c.ema_decay:
      self.ema_generator = self._make_ema()
    opt = spec.optimizer
    self.optimizers = {
        "d": _optimizer(opt, c.lr_d, c.beta1, c.beta2, "d_optimizer"),
        "g": _optimizer(opt, c.lr_g, c.beta1, c.beta2, "g_optimizer"),
    }
    # Build slots now, in the strategy scope: lazy creation inside a
    # tf.function under a strategy fails (see shared notes).
    self.optimizers["d"].build(self.discriminator.trainable_variables)
    self.optimizers["g"].build(self.generator.trainable_variables)
    self._g_loss, self._d_loss = losses.get(c.loss, c.g_loss)
    self._joint_d = blocks.per_example(self.discriminator)
    self._penalty = None if c.penalty == "none" else penalties.get(c.penalty)
    self._penalty_weight = (c.r1_gamma / 2 * c.r1_every if c.penalty == "r1"
                            else c.gp_weight)
    self.policy = augment_lib.parse_policy(c.augment)
    self.ada = None
    if c.ada_target:
      # ADA's state, in the checkpoint: p, and this interval's sum of
      # E[sign D(real)] over its D updates and their count.
      self.ada = {name: tf.Variable(0.0, trainable=False, name=f"ada_{name}")
                  for name in ("p", "sign_sum", "updates")}

  def _make_generator(self, name):
    c, shape = self.config, self.data.shape
    if c.arch == "mlp":
      return mlp.MLPGenerator(shape, c.mlp_hidden, self.num_classes,
                              tanh_output=self.data.kind != "vector",
                              label_embedding=c.label_embedding, name=name)
    if c.arch == "resnet":
      return resnet.ResNetGenerator(shape, c.base_channels, self.num_classes, name=name)
    return dcgan.DCGANGenerator(shape, c.base_channels, self.num_classes,
                                label_embedding=c.label_embedding,
                                standard_cnn=c.arch == "cnn", name=name)

  def _make_ema(self):
    c = self.config
    ema = self._make_generator("ema_generator")
    ema(tf.zeros([2, c.z_dim]), tf.zeros([2], tf.int32) if self.num_classes else None)
    for e, v in zip(ema.weights, self.generator.weights):
      e.assign(v)
    return ema

  def phases(self):
    d_metrics = ("d_loss", "d_real", "d_fake", "r_t")
    if self._penalty is not None:
      d_metrics += ("gradient_penalty", "gradient_norm")
    if self.ada is not None:
      d_metrics += ("augment_p",)
    return [Phase("d", self.config.n_critic, True, d_metrics),
            Phase("g", 1, False, ("g_loss",))]

  def variables(self, phase):
    model = self.discriminator if phase.name == "d" else self.generator
    return model.trainable_variables

  def sample(self, z, labels=None):
    """Generated samples, from the EMA generator when there is one."""
    g = self.ema_generator or self.generator
    return g(z, labels, training=False)

  def preview_inputs(self, n, seed, examples=None):
    """A fixed latent batch and, for conditional algorithms, the classes in turn."""
    z = tf.random.stateless_normal([n, self.config.z_dim], seed=[seed, 12345], alg="philox")
    labels = None
    if self.num_classes:
      labels = tf.constant(np.arange(n) % self.num_classes, tf.int32)
    return z, labels

  def preview(self, inputs):
    return self.sample(*inputs)

  def preview_columns(self, n):
    """One class per column, repeated to keep the grid about square."""
    k = self.num_classes
    if not k:
      return None
    return k * max(1, int(math.sqrt(n / k))) if k < 4 else k

  def _real(self, batch):
    return batch["vector"] if self.data.kind == "vector" else batch["image"]

  def _augment(self, x, rand, stream):
    """`--augment` of images D is about to see; per-example draws of `stream`."""
    if not self.policy:
      return x
    params = augment_lib.draw_params(rand.uniform, self.policy, f"augment/{stream}",
                                     rank=len(self.data.shape) - 1)
    p = None if self.ada is None else self.ada["p"]
    return augment_lib.augment(x, self.policy, params, p)

  def loss(self, phase, batch, rand):
    z = rand.normal("z", [self.config.z_dim])
    if phase.name == "d":
      labels = batch["label"] if self.num_classes else None
      # Fakes share the real labels, so the gradient penalty's interpolates
      # have one label per example.
      fake = self.generator(z, labels, training=True)
      # D sees augmented images only (DiffAugment): D o T is the critic, so
      # the penalties are taken at augmented images too.
      real = self._augment(self._real(batch), rand, "real")
      fake = self._augment(fake, rand, "fake")
      if self._joint_d:
        # One call on [real; fake]: the logits of two calls, with half the
        # calls (each re-normalizes and casts every kernel), as BigGAN's G_D
        # wrapper does. A D with batch norm keeps two calls: its statistics
        # are per call (DCGAN's separate real and fake batches).
        both = self.discriminator(tf.concat([real, tf.cast(fake, real.dtype)], 0),
                                  None if labels is None else tf.concat([labels, labels], 0),
                                  training=True)
        real_logits, fake_logits = tf.split(both, 2)
      else:
        real_logits = self.discriminator(real, labels, training=True)
        fake_logits = self.discriminator(fake, labels, training=True)
      per_example = self._d_loss(real_logits, fake_logits)
      metrics = {"d_loss": per_example, "d_real": losses.per_example(real_logits),
                 "d_fake": losses.per_example(fake_logits),
                 # ADA's overfitting heuristic: its mean is E[sign D(real)].
                 "r_t": tf.sign(losses.per_example(real_logits))}
      if self._penalty is not None:
        gp, norm = self._gradient_penalty(real, fake, labels, rand)
        per_example = per_example + self._penalty_weight * gp
        metrics.update(gradient_penalty=gp, gradient_norm=norm)
      if self.ada is not None:
        metrics["augment_p"] = tf.fill(tf.shape(per_example), self.ada["p"].read_value())
      return per_example, metrics
    labels = rand.labels("labels", self.num_classes) if self.num_classes else None
    fake = self._augment(self.generator(z, labels, training=True), rand, "g_fake")
    per_example = self._g_loss(self.discriminator(fake, labels, training=True))
    return per_example, {"g_loss": per_example}

  def _gradient_penalty(self, real, fake, labels, rand):
    """(penalty [B], gradient norm [B]) of --penalty; lazy R1 (StyleGAN2)
    computes it on every r1_every-th step only (and 0 on the others), the
    weight being r1_every times larger."""
    def penalty():
      return self._penalty(lambda x: self.discriminator(x, labels, training=True), real, fake,
                           rand.uniform("gp_alpha"), loss_scale=rand.loss_scale)

    every = self.config.r1_every
    if every == 1:
      return penalty()
    zeros = tf.zeros(tf.shape(real)[:1], tf.float32)
    return tf.cond(rand.step % every == 0, penalty, lambda: (zeros, zeros))

  def before_update(self, phase):
    if phase.name == "d" and self.spec.spectral_norm:
      spectral_norm.power_iteration(self.discriminator)

  def after_update(self, phase, step, metrics):
    if phase.name == "d":
      if self.config.weight_clip:
        c = self.config.weight_clip
        for v in self.discriminator.trainable_variables:
          v.assign(tf.clip_by_value(v, -c, c))
      if self.ada is not None:
        self._adapt(metrics["r_t"])
    if phase.name == "g" and self.ema_generator is not None:
      # Before --ema_start the EMA is a copy of the generator (a warm-up:
      # early weights are not averaged in).
      started = tf.cast(step >= self.config.ema_start, tf.float32)
      d = self.config.ema_decay * started
      for e, v in zip(self.ema_generator.trainable_variables,
                      self.generator.trainable_variables):
        e.assign(d * e + (1.0 - d) * v)
      for e, v in zip(self.ema_generator.non_trainable_variables,
                      self.generator.non_trainable_variables):
        e.assign(v)  # Batch-norm statistics are copied, not averaged.

  def _adapt(self, r_t):
    """ADA: accumulates E[sign D(real)] of each D update; after every
    ADA_INTERVAL steps' updates, moves p by sign(mean - target) * the
    interval's real images / (ada_kimg * 1000), clipped to [0, 1]."""
    c, ada = self.config, self.ada
    ada["sign_sum"].assign_add(r_t)
    ada["updates"].assign_add(1.0)
    updates = ADA_INTERVAL * c.n_critic

    def move():
      mean = ada["sign_sum"] / updates
      adjust = tf.sign(mean - c.ada_target) * (updates * c.global_batch_size
                                               / (c.ada_kimg * 1000.0))
      ada["p"].assign(tf.clip_by_value(ada["p"] + adjust, 0.0, 1.0))
      ada["sign_sum"].assign(0.0)
      ada["updates"].assign(0.0)
      return tf.constant(True)

    tf.cond(ada["updates"] >= updates, move, lambda: tf.constant(False))

  def checkpoint_items(self):
    items = dict(generator=self.generator, discriminator=self.discriminator,
                 g_optimizer=self.optimizers["g"], d_optimizer=self.optimizers["d"])
    if self.ema_generator is not None:
      items["ema_generator"] = self.ema_generator
    if self.ada is not None:
      items.update({f"ada_{k}": v for k, v in self.ada.items()})
    return items


for _name, _spec in SPECS.items():
  base.register(_name)(type(f"{_name.upper()}Algorithm", (ImageGAN,),
                       {"spec": _spec, "default_data": _spec.default_data}))
