"""The errors training stops with (the binary maps them to exit codes)."""


class TrainingError(RuntimeError):
  """Training stopped: non-finite losses, a run that cannot be resumed, a
  cluster that did not form, or a lost peer worker."""


class Preempted(TrainingError):
  """SIGTERM: a checkpoint was saved at a step boundary; re-running resumes.

  Attributes:
    step: the step of that checkpoint.
    checkpoint: its path (the chief's checkpoint, also on other workers).
  """

  def __init__(self, step, checkpoint):
    super().__init__(f"preempted (SIGTERM): saved checkpoint {checkpoint} at step {step}; "
                     "re-run the same command to resume")
    self.step = step
    self.checkpoint = checkpoint
