"""Preprocessing factory: name -> ``preprocess_image(image, h, w, is_training)``.

Each net names its style in ``slim.nets.NETWORKS``; the ``preprocessing``
option overrides it. The table is plain data; modules import on first use.
"""
import importlib

from zoobuild.errors import UserError

PREPROCESSING = {
    "vgg": "slim.preprocessing.vgg",
    "inception": "slim.preprocessing.inception",
}
NAMES = tuple(sorted(PREPROCESSING))


def get_preprocessing(name, is_training=False):
    """Return ``fn(image_uint8 [H,W,3], height, width) -> float32 [h,w,3]``."""
    if name not in PREPROCESSING:
        raise UserError(f"preprocessing: unknown name {name!r}; expected one of: "
                        + ", ".join(NAMES))
    module = importlib.import_module(PREPROCESSING[name])

    def preprocessing_fn(image, output_height, output_width, **kwargs):
        return module.preprocess_image(image, output_height, output_width,
                                       is_training=is_training, **kwargs)

    return preprocessing_fn


def for_model(model_name, override=""):
    """The preprocessing name for a model: the override if given, else its own."""
    if override:
        return override
    from slim.nets import spec
    return spec(model_name).preprocessing
