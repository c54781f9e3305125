"""Image tasks: specs + partials -> dockerfiles/ -> wheelhouse -> model packages -> images
-> image tests -> push.  Also init_spec, a scaffold for a new model's spec.

    doit dockerfiles                 # regenerate dockerfiles/ (no engine needed)
    doit wheelhouse                  # pip download the pinned wheels (+ gosu .deb) the images use
    doit images                      # build every stale image: images:<name>, one per image
    doit image_tests                 # run each image's spec'd tests with no network
    doit push registry=host:port     # push upload_images images (local registry by default)
    doit init_spec new_model=mobilenet_v1 category=image-recognition modes=training,inference

Variables: specs=DIR (spec directory, default specs), image_args=K=V,K=V (build args that
win over the specs'), base_image=REF (the Python base image, shared with `doit base_image`).
"""
from __future__ import annotations

from zoobuild import paths
from tasks.engine import BASE_REF
from tasks.errors import UserError, guarded
from tasks.params import Var, host_port
from tasks.uptodate import stale_on_error

__all__ = ["task_dockerfiles", "task_wheelhouse", "task_model_packages", "task_images",
           "task_image_tests", "task_push", "task_init_spec"]

SPECS = Var("specs", str, "specs", "directory of the image spec files (*.yml)")


def _build_args(text: str) -> None:
    """NAME=value,NAME=value"""
    from images.assemble import parse_cli_args

    parse_cli_args(text)


IMAGE_ARGS = Var("image_args", str, "", "build args K=V,K=V that win over the specs' args",
                 check=_build_args)
REGISTRY = Var("registry", str, "", "registry host:port for `doit push` (default: the local one)",
               check=host_port)
NEW_MODEL = Var("new_model", str, "", "init_spec: name of the model to scaffold, like mobilenet_v1")
CATEGORY = Var("category", str, "image-recognition", "init_spec: category slice set the model builds on")
PRECISIONS = Var("precisions", list, ["fp32"], "init_spec: precisions to scaffold")
MODES = Var("modes", list, ["training", "inference"], "init_spec: modes to scaffold")

_PLAN = {}


def _plan():
    """The expanded spec set (loaded once per process), or the UserError that loading raised."""
    from images import assemble, plan as plan_mod

    sig = (SPECS.get(), IMAGE_ARGS.get(), BASE_REF.get(), BASE_REF.given(), str(paths.BUILD))
    if sig not in _PLAN:
        try:
            cli = assemble.parse_cli_args(IMAGE_ARGS.get()) if IMAGE_ARGS.get() else {}
            if BASE_REF.given():
                cli["BASE_IMAGE"] = BASE_REF.get()
            _PLAN[sig] = plan_mod.load_plan(SPECS.get(), cli_args=cli)
            _PLAN[sig].memo = {}  # one doit run sees one snapshot of the tree
        except UserError as err:
            _PLAN[sig] = err
    return _PLAN[sig]


def user_plan():
    """The plan of this command line (specs=, image_args=, base_image=); raises its UserError."""
    plan = _plan()
    if isinstance(plan, UserError):
        raise plan
    return plan


def model_image_tag(model: str, precision: str = "fp32", mode="training") -> str:
    """The tag of model's image in the user's plan.  Stages that run in a model image call this
    and pass the tag down (runner=docker: mode "training"; the benchmark: ("inference",
    "training"), the first the specs define)."""
    from images import plan as plan_mod

    return plan_mod.model_image_tag(user_plan(), model, precision, mode)


def model_image_tags(model: str, precision: str = "fp32") -> list[str]:
    """Tags of model's images in the user's plan, inference first ([] when it has none, or when
    the specs do not load: a release records the lineage it can find)."""
    from images import plan as plan_mod

    plan = _plan()
    return [] if isinstance(plan, UserError) else plan_mod.model_image_tags(plan, model, precision)


def _failed(name: str, err: UserError):
    def fail():
        raise err

    task = {"actions": [guarded(fail)], "uptodate": [False]}
    return task if name is None else {"name": name, **task}


# --- dockerfiles ----------------------------------------------------------------------------

def _dockerfiles_dir(plan):
    """<root>/dockerfiles of the spec set: the repository's for specs/, a self-contained spec
    set's own otherwise (so another spec set never touches the committed files)."""
    return plan.spec.root / "dockerfiles"


def _write_dockerfiles(plan):
    from images import assemble

    res = assemble.write_dockerfiles(plan.images, _dockerfiles_dir(plan))
    for what in ("written", "removed"):
        for rel in res[what]:
            print(f"dockerfiles/{rel}: {what}")
    print(f"dockerfiles: {len(res['written'])} written, {len(res['unchanged'])} unchanged, "
          f"{len(res['removed'])} removed")


def task_dockerfiles():
    """Generate dockerfiles/<subdir>/<name>.Dockerfile from specs/ and images/partials/ (no engine)."""
    plan = _plan()
    if isinstance(plan, UserError):
        return _failed(None, plan)
    from images import assemble

    return {
        "actions": [guarded(lambda: _write_dockerfiles(plan))],
        "uptodate": [stale_on_error(lambda: not assemble.out_of_date(plan.images, _dockerfiles_dir(plan)),
                                    "dockerfiles/ match the specs")],
        "verbosity": 2,
    }


# --- wheelhouse -----------------------------------------------------------------------------

def _wheelhouse_key(plan):
    from images import plan as plan_mod, wheelhouse
    from zoobuild.keys import file_digest, make_key

    reqs, debs = plan_mod.wheelhouse_needs(plan)
    sel = wheelhouse.selected_wheel_file()
    return make_key("wheelhouse", entries=["images.wheelhouse"], params={"requirements": reqs, "debs": debs},
                    inputs={"lock": file_digest(wheelhouse.lock_path()),
                            "selected": file_digest(sel) if sel.exists() else "none"})


def _fetch_wheelhouse(plan):
    from images import plan as plan_mod, wheelhouse
    from zoobuild import keys

    reqs, debs = plan_mod.wheelhouse_needs(plan)
    dest = wheelhouse.wheelhouse_dir()
    index = wheelhouse.fetch(reqs, debs, dest)
    keys.mark_complete(dest, _wheelhouse_key(plan), {"wheels": len(index["wheels"]), "debs": len(index["debs"])})
    print(f"wheelhouse: {len(index['wheels'])} wheels, {len(index['debs'])} debs in {dest}")


def _command_tasks(argv=None) -> list[str]:
    """The task names this doit command line names (options and K=V variables left out)."""
    from tasks import cmdline

    return list((cmdline.current() if argv is None else cmdline.parse(argv)).tasks)


def wheel_requested(argv=None) -> bool:
    """Did this command ask for build_wheel's result?  Yes when it sets one of build_wheel's
    variables (wheel=, recipe=, target=) or names a build_wheel task itself."""
    from tasks import wheel

    if any(v.given() for v in (wheel.WHEEL, wheel.RECIPE, wheel.TARGET)):
        return True
    return any(t == "build_wheel" or t.startswith("build_wheel:") for t in _command_tasks(argv))


def task_wheelhouse():
    """pip download every pinned wheel the images install (hashes from requirements.lock), plus gosu.

    The wheelhouse reads build/wheels/selected.json, which `doit build_wheel` writes: when this
    command asks for a wheel (wheel=/recipe=/target= or a build_wheel task on the command line)
    build_wheel runs first (task_dep), so `doit -n 2 build_wheel images` and
    `doit images wheel=stock` see its result.  Otherwise the selection already on disk is used
    and `doit images` never starts a compile of its own."""
    plan = _plan()
    if isinstance(plan, UserError):
        return _failed(None, plan)
    deps = ["build_wheel"] if wheel_requested() else []

    def uptodate():
        from images import wheelhouse
        from zoobuild import keys

        return keys.is_complete(wheelhouse.wheelhouse_dir(), _wheelhouse_key(plan))

    return {"actions": [guarded(lambda: _fetch_wheelhouse(plan))], "task_dep": deps,
            "uptodate": [stale_on_error(uptodate, "wheelhouse key complete")], "verbosity": 2}


# --- model packages -------------------------------------------------------------------------

def task_model_packages():
    """Reproducible model packages (.tar.gz), one per model image, keyed on their content."""
    plan = _plan()
    if isinstance(plan, UserError):
        yield _failed("error", plan)
        return
    for img in plan.images:
        if img.slice.package is None:
            continue

        def uptodate(img=img):
            from images import imagekey
            from zoobuild import keys

            key = imagekey.package_key(plan, img)
            return keys.is_complete(keys.run_dir("packages", img.slice.package.name, key), key)

        def make(img=img):
            from images import build
            from tasks.cache import shared_cache

            print(build.ensure_package(plan, img, cache=shared_cache()))

        yield {"name": img.slice.package.name, "actions": [guarded(make)],
               "uptodate": [stale_on_error(uptodate, "package content key complete")], "verbosity": 2,
               "doc": f"model package {img.slice.package.name}.tar.gz"}


# --- images ---------------------------------------------------------------------------------

def task_images():
    """Build every image whose key changed (parents first); one subtask per image."""
    plan = _plan()
    if isinstance(plan, UserError):
        yield _failed("error", plan)
        return
    by_tag = plan.by_tag
    for img in plan.images:
        deps = ["dockerfiles"]
        if img.slice.requirements or img.slice.debs:
            deps.append("wheelhouse")
        if img.parent is not None:
            deps.append(f"images:{by_tag[img.parent].name}")
        if img.slice.package is not None:
            deps.append(f"model_packages:{img.slice.package.name}")

        def up(img=img):
            from images import inspection

            return inspection.is_uptodate(plan, img, record=True)

        def make(img=img):
            from images import build

            from tasks.cache import image_registry

            build.build_image(plan, img, registry_cache=image_registry())

        yield {"name": img.name, "actions": [guarded(make)], "task_dep": deps,
               "uptodate": [stale_on_error(up, f"{img.tag} carries its key")], "verbosity": 2,
               "doc": f"{img.tag} from dockerfiles/{img.dockerfile_path}"}


def task_image_tests():
    """Run each image's spec'd tests inside it with no network (keyed on the image id)."""
    plan = _plan()
    if isinstance(plan, UserError):
        yield _failed("error", plan)
        return
    from images import imagetest

    for img in plan.images:
        def run(img=img):
            from images import imagetest as it
            from tasks.cache import shared_cache

            it.run_tests(img, cache=shared_cache())

        yield {"name": img.name, "actions": [guarded(run)], "task_dep": [f"images:{img.name}"],
               "uptodate": [stale_on_error(imagetest.tests_uptodate(img))], "verbosity": 2,
               "doc": f"tests of {img.tag}: {', '.join(t.name for t in img.tests) or '(none)'}"}


def task_push():
    """Push the images of upload_images releases to registry=host:port and record digests."""
    plan = _plan()
    if isinstance(plan, UserError):
        yield _failed("error", plan)
        return
    for img in plan.images:
        if not img.upload:
            continue

        def push(img=img):
            from images import engine, push as push_mod

            registry = REGISTRY.get() or engine.ensure_registry()
            push_mod.push_image(engine.client(), img, registry)

        yield {"name": img.name, "actions": [guarded(push)],
               "task_dep": [f"image_tests:{img.name}"], "uptodate": [False], "verbosity": 2,
               "doc": f"push {img.tag}"}


def task_init_spec():
    """Scaffold specs/<new_model>_spec.yml (new_model=, category=, precisions=, modes=)."""
    def init():
        from images import initspec

        if not NEW_MODEL.get():
            raise UserError("init_spec needs new_model=<name>, for example new_model=mobilenet_v1")
        path = initspec.init_spec(NEW_MODEL.get(), CATEGORY.get(), PRECISIONS.get(), MODES.get(),
                                  spec_dir=paths.ROOT / SPECS.get(), root=paths.ROOT)
        print(f"wrote {path}; run `doit dockerfiles images` to build it")

    return {"actions": [guarded(init)], "uptodate": [False], "verbosity": 2}
