"""Recipe overrides that shrink any CPU recipe to a seconds-long run on the tiny model."""

TINY_RUN_OVERRIDES = [
    "rollout.group_size=4",
    "rollout.max_new_tokens=8",
    "train.prompts_per_step=2",
    "train.steps=2",
    "train.threads=1",
    "logging.plots=false",
    "logging.tensorboard=false",
    "logging.progress=false",
    "checkpoint.save_final=false",
]
