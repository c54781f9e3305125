"""Where things live. BUILD can be moved with ZOOBUILD_BUILD_DIR (tests use a temp dir)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("ZOOBUILD_BUILD_DIR", ROOT / "build")).resolve()
