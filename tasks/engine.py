"""Tasks that make the real components available: the Docker Engine, the registry, the base image."""
from tasks.errors import guarded
from zoobuild.keys import make_key
from tasks.params import Var
from tasks.uptodate import stale_on_error

__all__ = ["task_engine", "task_registry", "task_base_image"]

BASE_REF = Var("base_image", str, "python:3.11-slim-bookworm",
               "the Python base image every image starts FROM")


def _engine():
    from images import engine

    cli = engine.client()
    print(f"Docker Engine {cli.version()['Version']} at {engine.docker_host()}")


def _registry():
    from images import engine

    print(f"registry at {engine.ensure_registry()}")


def task_engine():
    """Connect to a Docker Engine, starting a private dockerd (root on Debian) when none answers."""
    return {"actions": [guarded(_engine)], "verbosity": 2}


def task_registry():
    """Serve a local OCI registry on 127.0.0.1 (Debian's docker-registry) for pushes."""
    return {"actions": [guarded(_registry)], "task_dep": ["engine"], "verbosity": 2}


def base_image_key():
    from images.base import DEFAULT_PACKAGES, DEFAULT_SUITE

    return make_key("base_image", entries=["images.base"],
                    params={"ref": BASE_REF.get(), "suite": DEFAULT_SUITE,
                            "packages": sorted(DEFAULT_PACKAGES)})


def _base_image(ref):
    from images import base, engine

    from tasks.cache import image_registry

    how = base.ensure_base_image(engine.client(), ref, registry_cache=image_registry())
    print(f"{ref}: {how}")


def _base_image_uptodate(ref):
    def check():
        from images import base, engine

        img = engine.client(start=False).images.get(ref)   # no engine, no image: stale
        label = (img.labels or {}).get(base.KEY_LABEL)
        return label is None or label == base.base_key(base.DEFAULT_SUITE, base.DEFAULT_PACKAGES)

    return stale_on_error(check, f"{ref} present")


def task_base_image():
    """Make the Python base image available: present, pulled, or built offline with debootstrap."""
    ref = BASE_REF.get()
    return {
        "actions": [(guarded(_base_image), [ref])],
        "uptodate": [_base_image_uptodate(ref)],
        "task_dep": ["engine"],
        "meta": {"key": base_image_key()},
        "verbosity": 2,
    }
