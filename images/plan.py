"""The plan: a spec set resolved to images and their tags (no engine, no wheelhouse needed).

    plan = load_plan("specs", cli_args={"_TAG_PREFIX": "myzoo:"})   # specs=, image_args=
    model_image_tag(plan, "vgg_16", mode="training")       # the one model -> tag lookup
    plan.ancestors(img), image_requirements(plan, img)

Every caller that needs a model's image tag asks this module with the plan it loaded, so
`specs=` and `image_args=` (tag prefix, base image) are honoured everywhere alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from images import assemble, spec as spec_mod
from zoobuild import paths
from zoobuild.errors import UserError

MODES = ("inference", "training")


@dataclass
class Plan:
    spec: spec_mod.Spec
    images: list
    cli_args: dict
    # a dict makes package and image keys computed once per plan: for one doit run (a
    # snapshot of the tree), not for library users who change files between calls
    memo: dict | None = None

    @property
    def by_tag(self) -> dict:
        return {i.tag: i for i in self.images}

    @property
    def by_name(self) -> dict:
        return {i.name: i for i in self.images}

    def parent_of(self, img):
        """The plan's image that img is FROM, or None when img is FROM its BASE_IMAGE."""
        return None if img.parent is None else self.by_tag[img.parent]

    def ancestors(self, img) -> list:
        out, tags = [], self.by_tag
        while img.parent is not None:
            img = tags[img.parent]
            out.append(img)
        return out


def load_plan(spec_dir=None, partials_dir=None, root=None, cli_args=None) -> Plan:
    """Load and expand a spec set.  A spec directory with a sibling `partials/` directory is a
    self-contained set rooted at its parent (tests, benchmarks); otherwise the root is the
    repository and the partials are images/partials.  cli_args: a dict or `image_args=` text."""
    spec_dir = Path(spec_dir) if spec_dir else paths.ROOT / "specs"
    if not spec_dir.is_absolute():
        spec_dir = (Path(root) if root else paths.ROOT) / spec_dir
    if root is None:
        own = (spec_dir.resolve().parent / "partials").is_dir()
        root = spec_dir.resolve().parent if own else paths.ROOT
        if own and partials_dir is None:
            partials_dir = root / "partials"
    root = Path(root)
    spec = spec_mod.load(spec_dir, partials_dir, root=root)
    cli = dict(cli_args) if isinstance(cli_args, dict) else assemble.parse_cli_args(cli_args)
    return Plan(spec, assemble.expand(spec, cli), cli)


# --- model -> image tag -------------------------------------------------------------------

def _model_images(plan: Plan) -> list:
    return [i for i in plan.images if i.slice.package is not None]


def model_image_tags(plan: Plan, model: str, precision: str = "fp32", modes=MODES) -> list[str]:
    """Tags of the model images for (model, precision), one per mode of `modes` the specs
    define, in the order of `modes` ([] when none)."""
    found = {}
    for img in _model_images(plan):
        a = img.args
        if a.get("MODEL_NAME") == model and a.get("PRECISION", "fp32") == precision:
            found.setdefault(a.get("MODE", "training"), img.tag)
    return [found[m] for m in modes if m in found]


def model_image_tag(plan: Plan, model: str, precision: str = "fp32", mode="training") -> str:
    """The tag of the model image for (model, precision, mode).  `mode` may be a sequence:
    the first mode the specs define wins (the benchmark: inference, else training)."""
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    tags = model_image_tags(plan, model, precision, modes)
    if tags:
        return tags[0]
    known = sorted({"/".join(str(i.args.get(k)) for k in ("MODEL_NAME", "PRECISION", "MODE"))
                    for i in _model_images(plan)})
    raise UserError(f"no model image for model={model} precision={precision} mode={'|'.join(modes)} "
                    f"in {plan.spec.root}; the specs define {', '.join(known) or 'no model images'}")


# --- what each image installs -------------------------------------------------------------

def image_requirements(plan: Plan, img) -> list[str]:
    """Normalized names this image installs: its slice's closure minus its ancestors'."""
    if not img.slice.requirements:
        return []
    from images import wheelhouse

    inherited = [r for a in plan.ancestors(img) for r in a.slice.requirements]
    names = wheelhouse.closure(img.slice.requirements, exclude=inherited)
    if wheelhouse.TF_NAME in names:  # the hook of `doit build_wheel`: its extra compiled wheel
        names += [n for n in wheelhouse.compiled_extras() if n not in names]
    return names


def wheelhouse_needs(plan: Plan) -> tuple[list, list]:
    """(requirement names, Debian packages) the plan's images install, for `doit wheelhouse`."""
    reqs = sorted({r for i in plan.images for r in i.slice.requirements})
    debs = sorted({d for i in plan.images for d in i.slice.debs})
    return reqs, debs
