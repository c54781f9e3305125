"""train_image_classifier's options: one table of (name, type, default, help).

Plain data (no TensorFlow) so the doit task creators can declare typed
variables from it. Defaults are research/slim's, except where noted:
  * model_name -> ``model`` (default slim.recipes.DEFAULT_MODEL)
  * max_number_of_steps -> ``steps``; slim runs forever by default, we stop at
    10 with batch_size 4 (slim: 32) so any net's smoke run finishes in minutes
    on a CPU. A model's recipe (slim/recipes.py) overrides these table
    defaults, never a value the user gave.
  * batch_norm_decay 0 = derived from the run length (slim.recipes).
  * deterministic (ours): op determinism and fixed seeds.
  * optional values slim leaves at None are "" / 0 / [] here (0 = off).
"""

TRAIN_OPTIONS = [
    # name, type, default, help, choices
    ("batch_size", int, 4, "images per training step (slim: 32); a recipe may differ", None),
    ("steps", int, 10, "max_number_of_steps: stop at this global step; a recipe may differ", None),
    ("train_image_size", int, 0, "input size; 0 = the recipe's, else the net's default", None),
    ("compute", str, "fp32", "compute precision: bf16 = oneDNN auto-mixed-precision rewrite "
     "(variables stay fp32; needs avx512_bf16 or amx_bf16)", ("fp32", "bf16")),
    ("intra_op_threads", int, 0, "threads inside one op (0 = TensorFlow's choice; "
     "specs/tuned/<model>.yml when not given)", None),
    ("inter_op_threads", int, 0, "ops run at once (0 = TensorFlow's choice; tuned when not given)", None),
    ("preprocessing", str, "", "preprocessing_name; '' = the net's own (vgg|inception)",
     ("", "vgg", "inception")),
    ("use_grayscale", bool, False, "convert images to grayscale (3 channels kept)", None),
    ("labels_offset", int, 0, "subtract from labels (1 drops the background class)", None),
    ("dataset_split_name", str, "train", "split to train on", ("train", "validation")),
    ("weight_decay", float, 0.00004, "L2 weight decay", None),
    ("batch_norm_decay", float, 0.0, "batch-norm moving-average decay (0 = derived from "
     "steps: the net's own for long runs, faster for short ones)", None),
    ("optimizer", str, "rmsprop", "optimizer; a recipe may differ",
     ("adadelta", "adagrad", "adam", "ftrl", "momentum", "rmsprop", "sgd")),
    ("adadelta_rho", float, 0.95, "adadelta decay", None),
    ("adagrad_initial_accumulator_value", float, 0.1, "adagrad start accumulator", None),
    ("adam_beta1", float, 0.9, "adam 1st-moment decay", None),
    ("adam_beta2", float, 0.999, "adam 2nd-moment decay", None),
    ("opt_epsilon", float, 1.0, "epsilon of adadelta/adam/rmsprop", None),
    ("ftrl_learning_rate_power", float, -0.5, "ftrl learning-rate power", None),
    ("ftrl_initial_accumulator_value", float, 0.1, "ftrl start accumulator", None),
    ("ftrl_l1", float, 0.0, "ftrl L1 strength", None),
    ("ftrl_l2", float, 0.0, "ftrl L2 strength", None),
    ("momentum", float, 0.9, "momentum of the momentum optimizer", None),
    ("rmsprop_momentum", float, 0.9, "rmsprop momentum", None),
    ("rmsprop_decay", float, 0.9, "rmsprop decay", None),
    ("learning_rate_decay_type", str, "exponential", "learning-rate schedule",
     ("fixed", "exponential", "polynomial")),
    ("learning_rate", float, 0.01, "initial learning rate; a recipe may differ", None),
    ("end_learning_rate", float, 0.0001, "polynomial decay's final rate", None),
    ("learning_rate_decay_factor", float, 0.94, "exponential decay factor", None),
    ("num_epochs_per_decay", float, 2.0, "epochs between decays", None),
    ("warmup_epochs", float, 0.0, "linear learning-rate warm-up (0 = none)", None),
    ("label_smoothing", float, 0.0, "label smoothing", None),
    ("moving_average_decay", float, 0.0, "variable moving-average decay (0 = off)", None),
    ("sync_replicas", bool, False, "synchronous replicas (distributed)", None),
    ("replicas_to_aggregate", int, 1, "gradients to aggregate per step (sync)", None),
    ("checkpoint_path", str, "", "fine-tune from this checkpoint (file or dir)", None),
    ("checkpoint_exclude_scopes", list, [], "scopes not restored from checkpoint_path", None),
    ("trainable_scopes", list, [], "train only these scopes (empty = all)", None),
    ("ignore_missing_vars", bool, False, "skip variables missing from checkpoint_path", None),
    ("log_every_n_steps", int, 10, "progress/history interval in steps", None),
    ("save_summaries_secs", int, 600, "TensorBoard summary interval (s)", None),
    ("save_interval_secs", int, 600, "checkpoint interval (s)", None),
    ("save_interval_steps", int, 0, "checkpoint every N steps (0 = use secs)", None),
    ("shuffle_seed", int, 0, "input shuffle seed (0 = random, or fixed when deterministic)",
     None),
    ("deterministic", bool, True, "TensorFlow op determinism and fixed seeds: the same key "
     "gives byte-identical checkpoints (may cost a few % of steps/s)", None),
]

EVAL_OPTIONS = [
    ("eval_batch_size", int, 50, "images per eval batch (slim: 100)", None),
    ("max_num_batches", int, 0, "stop after N batches (0 = whole split)", None),
    ("eval_split_name", str, "validation", "split to evaluate", ("train", "validation")),
    ("eval_image_size", int, 0, "eval input size; 0 = train_image_size or the net's", None),
]

# What each number takes where its type allows more: (minimum, maximum), inclusive, None =
# open.  Counts are at least 1; 0 only where the help says what 0 means (off, the net's own).
RANGES = {
    "batch_size": (1, None), "steps": (1, None), "train_image_size": (0, None),
    "intra_op_threads": (0, None), "inter_op_threads": (0, None),
    "labels_offset": (0, None), "weight_decay": (0.0, None), "batch_norm_decay": (0.0, 1.0),
    "adadelta_rho": (0.0, 1.0), "adagrad_initial_accumulator_value": (0.0, None),
    "adam_beta1": (0.0, 1.0), "adam_beta2": (0.0, 1.0), "opt_epsilon": (0.0, None),
    "ftrl_learning_rate_power": (None, 0.0), "ftrl_initial_accumulator_value": (0.0, None),
    "ftrl_l1": (0.0, None), "ftrl_l2": (0.0, None), "momentum": (0.0, 1.0),
    "rmsprop_momentum": (0.0, 1.0), "rmsprop_decay": (0.0, 1.0),
    "learning_rate": (0.0, None), "end_learning_rate": (0.0, None),
    "learning_rate_decay_factor": (0.0, 1.0), "num_epochs_per_decay": (0.0, None),
    "warmup_epochs": (0.0, None), "label_smoothing": (0.0, 1.0),
    "moving_average_decay": (0.0, 1.0), "replicas_to_aggregate": (0, None),
    "log_every_n_steps": (1, None), "save_summaries_secs": (0, None),
    "save_interval_secs": (0, None), "save_interval_steps": (0, None), "shuffle_seed": (0, None),
    "eval_batch_size": (1, None), "max_num_batches": (0, None), "eval_image_size": (0, None),
}


def defaults(table=TRAIN_OPTIONS):
    return {name: (list(d) if isinstance(d, list) else d) for name, _, d, _, _ in table}
