"""Per-model recipes: the training defaults a net learns with, applied only where the user
set nothing, and the batch-norm decay derived from the run length.

Plain data and arithmetic (no TensorFlow), so the doit task creators can resolve the
parameters, and therefore the key, of a run before anything is imported.

    resolve({"model": "mobilenet_v1_025"})            # the recipe + slim's option defaults
    resolve({"model": "mobilenet_v1_025", "steps": 50})  # an explicit value always wins

Order of precedence, first wins: what the caller gave, the model's recipe, the option
table's defaults (slim/options.py).  Then, when ``batch_norm_decay`` is 0 (unset) and the
net has a settable batch-norm decay, it is derived from ``steps`` (`derived_bn_decay`).
"""
from __future__ import annotations

from slim.nets import spec
from slim.options import TRAIN_OPTIONS, defaults

# The main job's model (`doit` / `./zoo run`): small enough to train to >= 0.9 top-1 on the
# embedded synthetic set in well under a minute of this CPU, and it has batch norm, so the
# derived decay is exercised on every main-job run.
DEFAULT_MODEL = "mobilenet_v1_025"

# model -> option defaults that differ from the option table's; vgg and the other nets keep
# the table's short smoke-test defaults.  mobilenet_v1_025, measured on the embedded set (10
# classes, 400 train / 500 validation images) at 64x64, 1000 steps of 16, momentum 0.9 at
# lr 0.03, derived batch-norm decay 0.99: the last weights evaluated at top-1 0.89-0.986
# over five data orders; evaluating slim's moving average of the weights (decay 0.99)
# instead gave 0.928-0.996 over eight (serial and parallel augmentation); with the averages
# ordered after the step (slim/train.py), 0.938-0.994 over four (0.928 with AVX-512 kernels,
# auto shards, where AVX2 gave 0.990).  600 steps reached only
# 0.64-0.81.
RECIPES: dict[str, dict] = {
    "mobilenet_v1_025": {"train_image_size": 64, "steps": 1000, "batch_size": 16,
                         "optimizer": "momentum", "learning_rate": 0.03,
                         "moving_average_decay": 0.99},
}

# Derived decay: the moving averages' time constant 1/(1-decay) is at most this fraction of
# the run, so the statistics of the last ~third of the steps dominate what eval uses
# (weight of older batches after 3 time constants: e^-3, about 5%).
BN_SETTLE_FRACTION = 0.1
BN_MIN_DECAY = 0.9

def recipe(model: str) -> dict:
    """The recipe's option defaults for ``model`` (empty for a net without one)."""
    spec(model)  # an unknown name is one clear line
    return dict(RECIPES.get(model, {}))


def derived_bn_decay(model: str, steps: int) -> float:
    """Batch-norm decay for a run of ``steps``: the net's own (slim's 0.9997, resnet's 0.997)
    for long runs, faster for short ones; 0.0 for a net without a settable decay."""
    ceiling = spec(model).batch_norm_decay
    if not ceiling:
        return 0.0
    fast = 1.0 - 1.0 / (BN_SETTLE_FRACTION * max(int(steps), 1))
    return round(min(ceiling, max(BN_MIN_DECAY, fast)), 6)


def resolve(given: dict, table=TRAIN_OPTIONS) -> dict:
    """Every train option for ``given`` (which must name ``model``): given > recipe > table.

    ``batch_norm_decay`` 0 means "derive it"; the derived value is written into the result
    so that it is what a key records and what training uses.
    """
    if "model" not in given:
        from zoobuild.errors import UserError
        raise UserError("model: missing")
    model = given["model"]
    full = defaults(table)
    full.update({k: v for k, v in recipe(model).items() if k in full})
    full.update(given)
    if "batch_norm_decay" in full and not full["batch_norm_decay"]:
        full["batch_norm_decay"] = derived_bn_decay(model, full["steps"])
    return full
