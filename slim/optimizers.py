"""Optimizer and learning-rate registries (train_image_classifier's seven
optimizers and three decay schedules, plus linear warm-up)."""
import tensorflow as tf

from zoobuild.errors import UserError

_v1 = tf.compat.v1.train


def _adadelta(lr, c):
    return _v1.AdadeltaOptimizer(lr, rho=c["adadelta_rho"], epsilon=c["opt_epsilon"])


def _adagrad(lr, c):
    return _v1.AdagradOptimizer(
        lr, initial_accumulator_value=c["adagrad_initial_accumulator_value"])


def _adam(lr, c):
    return _v1.AdamOptimizer(lr, beta1=c["adam_beta1"], beta2=c["adam_beta2"],
                             epsilon=c["opt_epsilon"])


def _ftrl(lr, c):
    return _v1.FtrlOptimizer(
        lr, learning_rate_power=c["ftrl_learning_rate_power"],
        initial_accumulator_value=c["ftrl_initial_accumulator_value"],
        l1_regularization_strength=c["ftrl_l1"],
        l2_regularization_strength=c["ftrl_l2"])


def _momentum(lr, c):
    return _v1.MomentumOptimizer(lr, momentum=c["momentum"], name="Momentum")


def _rmsprop(lr, c):
    return _v1.RMSPropOptimizer(lr, decay=c["rmsprop_decay"],
                                momentum=c["rmsprop_momentum"],
                                epsilon=c["opt_epsilon"])


def _sgd(lr, c):
    return _v1.GradientDescentOptimizer(lr)


OPTIMIZERS = {"adadelta": _adadelta, "adagrad": _adagrad, "adam": _adam,
              "ftrl": _ftrl, "momentum": _momentum, "rmsprop": _rmsprop, "sgd": _sgd}


def _fixed(c, global_step, decay_steps):
    return tf.constant(c["learning_rate"], name="fixed_learning_rate")


def _exponential(c, global_step, decay_steps):
    return _v1.exponential_decay(c["learning_rate"], global_step, decay_steps,
                                 c["learning_rate_decay_factor"], staircase=True,
                                 name="exponential_decay_learning_rate")


def _polynomial(c, global_step, decay_steps):
    return _v1.polynomial_decay(c["learning_rate"], global_step, decay_steps,
                                c["end_learning_rate"], power=1.0, cycle=False,
                                name="polynomial_decay_learning_rate")


DECAYS = {"fixed": _fixed, "exponential": _exponential, "polynomial": _polynomial}


def configure_optimizer(cfg, learning_rate):
    try:
        return OPTIMIZERS[cfg["optimizer"]](learning_rate, cfg)
    except KeyError:
        raise UserError(f"optimizer: unknown name {cfg['optimizer']!r}; expected one of: "
                        + ", ".join(sorted(OPTIMIZERS))) from None


def configure_learning_rate(cfg, num_samples_per_epoch, global_step, replicas=1):
    """Learning rate tensor: decay schedule, then linear warm-up over warmup_epochs."""
    steps_per_epoch = num_samples_per_epoch / cfg["batch_size"]
    if cfg.get("sync_replicas"):
        steps_per_epoch /= max(1, cfg.get("replicas_to_aggregate") or replicas)
    decay_steps = max(1, int(steps_per_epoch * cfg["num_epochs_per_decay"]))
    if cfg["learning_rate_decay_type"] not in DECAYS:
        raise UserError(f"learning_rate_decay_type: unknown {cfg['learning_rate_decay_type']!r};"
                        " expected one of: " + ", ".join(sorted(DECAYS)))
    lr = DECAYS[cfg["learning_rate_decay_type"]](cfg, global_step, decay_steps)
    warmup_steps = int(steps_per_epoch * cfg.get("warmup_epochs", 0.0))
    if warmup_steps > 0:
        step = tf.cast(global_step, tf.float32)
        frac = tf.minimum(1.0, (step + 1.0) / float(warmup_steps))
        lr = tf.identity(lr * frac, name="warmup_learning_rate")
    return lr
