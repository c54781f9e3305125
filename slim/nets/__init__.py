"""Nets factory: model name -> network function, found through one table.

The table is plain data so that task creators can list model names without
importing TensorFlow; ``get_network_fn`` imports the net on first use.
Every network function returned takes ``images [N,H,W,3]`` and returns
``(logits [N, num_classes], end_points)``.
"""
import functools
import importlib
from dataclasses import dataclass

from zoobuild.errors import UserError


@dataclass(frozen=True)
class NetSpec:
    module: str          # where the net function lives
    fn: str              # its name
    arg_scope: str       # arg-scope function in the same module
    image_size: int      # default input size (resnet/overfeat carry none in tf_slim)
    preprocessing: str   # name in slim.preprocessing's registry
    squeeze: bool = False  # logits come back [N,1,1,C] and must be squeezed
    # the arg_scope's own batch-norm decay when it takes `batch_norm_decay`; 0.0 for nets
    # without batch norm and for inception_v1/v2, whose tf_slim arg_scope fixes it
    batch_norm_decay: float = 0.0


SLIM_BN_DECAY = 0.9997  # research/slim's batch-norm decay (inception, mobilenet)


def _tf(module, fn, scope, size, pre, squeeze=False, bn=0.0):
    return NetSpec("tf_slim.nets." + module, fn, scope, size, pre, squeeze, bn)


def _own(module, fn, scope, size, pre, bn=SLIM_BN_DECAY):
    return NetSpec("slim.nets." + module, fn, scope, size, pre, False, bn)


NETWORKS = {
    "alexnet_v2": _tf("alexnet", "alexnet_v2", "alexnet_v2_arg_scope", 224, "vgg"),
    "inception_v1": _tf("inception", "inception_v1", "inception_v1_arg_scope", 224, "inception"),
    "inception_v2": _tf("inception", "inception_v2", "inception_v2_arg_scope", 224, "inception"),
    "inception_v3": _tf("inception", "inception_v3", "inception_v3_arg_scope", 299, "inception",
                        bn=SLIM_BN_DECAY),
    "inception_v4": _own("inception_v4", "inception_v4", "inception_v4_arg_scope", 299, "inception"),
    "inception_resnet_v2": _own("inception_resnet_v2", "inception_resnet_v2",
                                "inception_resnet_v2_arg_scope", 299, "inception"),
    "mobilenet_v1": _own("mobilenet_v1", "mobilenet_v1", "mobilenet_v1_arg_scope", 224, "inception"),
    "mobilenet_v1_075": _own("mobilenet_v1", "mobilenet_v1_075", "mobilenet_v1_arg_scope", 224, "inception"),
    "mobilenet_v1_050": _own("mobilenet_v1", "mobilenet_v1_050", "mobilenet_v1_arg_scope", 224, "inception"),
    "mobilenet_v1_025": _own("mobilenet_v1", "mobilenet_v1_025", "mobilenet_v1_arg_scope", 224, "inception"),
    "overfeat": _tf("overfeat", "overfeat", "overfeat_arg_scope", 231, "vgg"),
    "vgg_a": _own("vgg", "vgg_a", "vgg_arg_scope", 224, "vgg", bn=0.0),
    "vgg_16": _own("vgg", "vgg_16", "vgg_arg_scope", 224, "vgg", bn=0.0),
    "vgg_19": _own("vgg", "vgg_19", "vgg_arg_scope", 224, "vgg", bn=0.0),
}
for _version in ("v1", "v2"):
    for _depth in (50, 101, 152, 200):
        NETWORKS[f"resnet_{_version}_{_depth}"] = _tf(
            f"resnet_{_version}", f"resnet_{_version}_{_depth}", "resnet_arg_scope",
            224, "vgg", squeeze=True, bn=0.997)

MODEL_NAMES = tuple(sorted(NETWORKS))


def spec(name):
    try:
        return NETWORKS[name]
    except KeyError:
        raise UserError(f"model: unknown name {name!r}; expected one of: "
                        + ", ".join(MODEL_NAMES)) from None


def default_image_size(name):
    return spec(name).image_size


def get_network_fn(name, num_classes, weight_decay=0.0, is_training=False,
                   batch_norm_decay=None):
    """Return ``fn(images, **kw) -> (logits [N,C], end_points)`` under its arg_scope.

    ``batch_norm_decay`` overrides the moving-average decay of batch norm for
    nets whose arg_scope takes it (short runs need ~0.9 to evaluate sensibly).
    """
    s = spec(name)
    import slim.compat  # noqa: F401  (patches before tf_slim builds layers)
    import tf_slim

    module = importlib.import_module(s.module)
    net_fn = getattr(module, s.fn)
    arg_scope_fn = getattr(module, s.arg_scope)
    scope_kwargs = {"weight_decay": weight_decay}
    if batch_norm_decay:
        import inspect
        if "batch_norm_decay" not in inspect.signature(arg_scope_fn).parameters:
            raise UserError(f"batch_norm_decay: {name} has no batch-norm decay to set")
        scope_kwargs["batch_norm_decay"] = batch_norm_decay

    @functools.wraps(net_fn)
    def network_fn(images, **kwargs):
        import tensorflow as tf
        with tf_slim.arg_scope(arg_scope_fn(**scope_kwargs)):
            logits, end_points = net_fn(images, num_classes=num_classes,
                                        is_training=is_training, **kwargs)
        if s.squeeze and len(logits.shape) == 4:
            logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
            end_points["Logits"] = logits
        return logits, end_points

    network_fn.default_image_size = s.image_size
    return network_fn
