"""zoobuild's doit graph.  The task creators live in tasks/; this file only gathers them.

Loading stays light: no tensorflow, docker or PIL import happens here.
"""
import sys

from tasks import cache, errors, lock
from zoobuild import paths
from tasks.engine import *  # noqa: F401,F403
from tasks.wheel import *  # noqa: F401,F403
from tasks.images import *  # noqa: F401,F403
from tasks.data import *  # noqa: F401,F403
from tasks.train import *  # noqa: F401,F403
from tasks.convert import *  # noqa: F401,F403
from tasks.benchmark import *  # noqa: F401,F403
from tasks.publish import *  # noqa: F401,F403
from tasks.pipeline import *  # noqa: F401,F403

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": str(paths.BUILD / "doit.sqlite3"),
    # the main job: every stage end to end on the embedded synthetic mini-ILSVRC, for the
    # default model (slim.recipes.DEFAULT_MODEL); its image work is that model's chain only
    # (tf-compiled-base -> category -> its images), `doit images` builds them all
    "default_tasks": ["engine", "base_image", "model_images", "imagenet_tfrecords",
                      "train", "eval", "export", "convert", "benchmark", "publish"],
    "verbosity": 2,
}

errors.wrap_task_creators(globals())
lock.prepare(sys.argv, DOIT_CONFIG["default_tasks"])
cache.arm_summary()
