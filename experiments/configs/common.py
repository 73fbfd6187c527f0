"""Fields every experiment config has (the CLI contract of the architecture doc).

`base_config(recipe, ...)` fills the `model`, `method`, `optim` and `sample` sections from the
recipe's `Config` defaults (the one source of truth), so a config file states only what differs
and every field can still be overridden from the command line.
"""

import ml_collections

from jaxgen.methods import get_recipe
from jaxgen.methods.common import config_to_dict

RECIPE_SECTIONS = ("model", "method", "optim", "sample")


def set_field(c: ml_collections.ConfigDict, dotted: str, value) -> None:
    """`c.a.b = value` for `dotted` = "a.b"."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        c = c[name]
    c[leaf] = value


def base_config(
    recipe: str, *, dataset: str, batch_size: int, num_steps: int
) -> ml_collections.ConfigDict:
    """The experiment ConfigDict of `recipe` on `dataset`: the run fields, the `data`, `train`
    and `eval` sections at their defaults, and the recipe's sections from its `Config`."""
    c = ml_collections.ConfigDict()
    c.recipe = recipe  # method name in jaxgen.methods.RECIPES
    c.seed = 0
    c.runlocal = False  # True: tiny smoke variant (a few steps, small batch)
    # the config's own smoke settings on top of `smoke()`'s: ((dotted field, value), ...)
    c.smoke_overrides = ()
    c.data = _data_section(dataset, batch_size)
    c.train = _train_section(num_steps)
    c.eval = _eval_section()
    set_recipe_sections(c, get_recipe(recipe).Config())
    return c


def set_recipe_sections(c: ml_collections.ConfigDict, config) -> None:
    """Set `c`'s `model`, `method`, `optim` and `sample` sections to those of the recipe
    `Config` instance `config` (a recipe's defaults, or a base stage's default base config)."""
    tree = config_to_dict(config)
    for section in RECIPE_SECTIONS:
        c[section] = ml_collections.ConfigDict(tree[section])


def _data_section(dataset: str, batch_size: int) -> ml_collections.ConfigDict:
    """The `data` section: which data set, the global batch size, how examples are read."""
    return ml_collections.ConfigDict(
        dict(
            name=dataset,
            batch_size=batch_size,
            flip=False,
            pad_to_32=False,
            data_dir="",
            classes=(),  # images of these labels only, e.g. (1,) for Fashion-MNIST's trousers
            train_limit=0,  # > 0: the first N training images only (a protocol's subset)
            # a source domain beside each batch, as batch["source"] (unpaired translation; the
            # recipe's prior, e.g. FDRL's method.prior="source"): an image set of the same shape
            source="",
            source_classes=(),
        )
    )


def _train_section(num_steps: int) -> ml_collections.ConfigDict:
    """The `train` section: length, intervals, non-finite policy, devices and processes, model
    selection."""
    return ml_collections.ConfigDict(
        dict(
            num_steps=num_steps,
            log_every=100,
            ckpt_every=1000,
            sample_every=1000,
            sample_grid=64,  # images in each sample grid written in training (2-D: 1000 points)
            keep=3,
            nonfinite="stop",
            steps_per_call=1,
            num_devices=0,
            max_nonfinite=3,  # skip / rollback give up at this many failures in a row
            rollback_reseed=True,  # after a rollback: new batch order and step keys
            progress="auto",  # auto (bar on a terminal, else lines) | bar | lines | off
            allow_changes="",  # run-defining fields a resume may change: "optim.gen.lr,seed"
            multihost=False,
            # multihost without auto-detection (N processes on one machine or a plain cluster):
            coordinator="",  # HOST:PORT of process 0
            num_processes=0,
            process_id=-1,
            join_timeout=300.0,  # s a multi-host process waits for the others to join
            heartbeat_timeout=100,  # s after which the cluster gives up on a silent process
            select_every=0,  # > 0: FD of select_samples EMA samples every N steps; best kept
            select_samples=2500,
        )
    )


def _eval_section() -> ml_collections.ConfigDict:
    """The `eval` section: how many samples, which metrics, and each evaluation's settings."""
    return ml_collections.ConfigDict(
        dict(
            num_samples=2000,
            batch_size=2000,
            metrics=("default",),  # "default" = every metric available for the data and recipe
            ema=True,  # evaluate the EMA parameters (False: the raw ones)
            histogram_max=0,  # energy histogram: images per split (0 = all)
            ood_sets=("interpolated", "uniform_noise"),  # see jaxgen.data.OOD_NAMES
            ood_num=2000,  # test images (and OOD images) scored per set
            nn_queries=10,  # samples shown with their nearest training images
            nn_k=5,
            interp_rows=4,  # slerp strips
            interp_steps=10,
            round_size=1000,  # samples per preemption-safe round (features saved per round)
            reference_split="train",  # statistics the FD / FID compares against
            kid_reference_max=10_000,  # features kept for KID and precision/recall
            kid_subset_size=1000,
            kid_subsets=100,
            inception_weights="",  # FID weights file ("" = $JAXGEN_INCEPTION_WEIGHTS)
            # also FD / KID / precision-recall in the data set's independent check extractor
            # (jaxgen.metrics.CHECK_EXTRACTORS), reported under fd.check
            check_features=False,
            # 2-D log-likelihood: points per axis of the grid normalising an unnormalised density
            grid_points=512,
            # run-defining fields that `sample` / `evaluate` may find changed from the run's
            # checkpoints (as train.allow_changes): "method.diffusion_steps,model.hidden"
            allow_changes="",
        )
    )


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The tiny variant used by smoke tests (`--config.runlocal=True`)."""
    c.train.num_steps = 2
    c.train.log_every = 1
    c.train.ckpt_every = 1
    c.train.sample_every = 2
    c.train.sample_grid = 16
    c.train.steps_per_call = 1
    c.data.batch_size = min(c.data.batch_size, 16)
    c.eval.num_samples = 160  # > 128 + 1, so the 128-d feature covariance has full rank
    c.eval.batch_size = 80
    c.eval.update(dict(histogram_max=64, ood_num=64, nn_queries=2, interp_rows=1, interp_steps=3))
    c.eval.round_size = 80  # two rounds
    c.eval.grid_points = 64  # 2-D log Z: 4096 points, not 262,144 (an IWAE density: 30 s)
    for dotted, value in c.smoke_overrides:  # the config's own tiny variant
        set_field(c, dotted, value)
    return c
