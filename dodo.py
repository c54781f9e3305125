"""zoobuild's doit graph.  The task creators live in tasks/; this file only gathers them.

Loading stays light: no tensorflow, docker or PIL import happens here.
"""
import sys

from tasks import lock, paths, params
from tasks.engine import *  # noqa: F401,F403

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": str(paths.BUILD / "doit.sqlite3"),
    "default_tasks": ["engine", "base_image"],
    "verbosity": 2,
}

params.check_cmdline()
if lock.wants_lock(sys.argv):
    lock.hold_run_lock()
