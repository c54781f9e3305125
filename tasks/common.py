"""Variables more than one stage reads, declared once so that a name means one thing."""
from slim.nets import MODEL_NAMES
from tasks.params import Var

MODEL = Var("model", str, "vgg_16",
            "net to train, evaluate, export, convert, benchmark, publish and fetch",
            choices=MODEL_NAMES)
