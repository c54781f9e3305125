"""Variables more than one stage reads, declared once so that a name means one thing."""
from slim.nets import MODEL_NAMES
from slim.recipes import DEFAULT_MODEL
from tasks.params import Var

# the main job's model (slim/recipes.py holds its recipe and says why it is the default)
MODEL = Var("model", str, DEFAULT_MODEL,
            "net to train, evaluate, export, convert, benchmark, publish and fetch",
            choices=MODEL_NAMES)
