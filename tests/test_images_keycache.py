"""Images shared by key through a real registry (Debian's docker-registry on loopback): a
miss builds and pushes `<registry>/<repo>:<K12>`, a hit pulls, checks the key label and
retags; a mislabelled entry is refused and rebuilt; an unreachable registry never fails."""
import pytest

pytestmark = [pytest.mark.engine]

PREFIX = "zoobuild-kc-test:"


@pytest.fixture(scope="module")
def chain(module_build, tmp_path_factory, docker_client, base_image):
    from images import engine, plan as plan_mod, testing

    root = tmp_path_factory.mktemp("kc-specs")
    specs = testing.write_tiny_specs(root, n_models=2, prefix=PREFIX)
    return plan_mod.load_plan(specs), engine.ensure_registry()


def _drop(client, plan, names):
    for img in reversed(plan.images):
        if img.name in names:
            client.images.remove(img.tag, force=True)


def test_a_miss_pushes_by_key_and_a_second_engine_state_pulls_instead_of_building(chain, docker_client):
    from images import build, imagekey, keycache

    plan, registry = chain
    lines = []
    first = build.build_all(plan, docker_client, log=lines.append, registry_cache=registry)
    assert all(r["built"] or r["tag"] for r in first)
    built = {r["tag"] for r in first if r["built"]}
    for img in plan.images:
        if img.tag in built:
            assert any(f"shared {img.tag} as {registry}/" in l for l in lines), img.tag
    # machine B: the same specs, none of the images (the base stays: it is the shared FROM)
    names = {i.name for i in plan.images if i.parent is not None}
    _drop(docker_client, plan, names)
    plan.memo = {}
    second = build.build_all(plan, docker_client, log=lambda *a: None, registry_cache=registry)
    by_tag = {r["tag"]: r for r in second}
    for img in plan.images:
        if img.name in names:
            r = by_tag[img.tag]
            assert r["fetched"] and not r["built"], img.tag
            labels = docker_client.images.get(img.tag).labels
            assert labels[imagekey.KEY_LABEL] == r["key"]
            repo, ktag = keycache.key_ref(img.tag, registry, r["key"])
            assert ktag == r["key"][:12] and repo == f"{registry}/zoobuild-kc-test"
    # and the fetched chain is up to date: nothing builds or fetches a third time
    third = build.build_all(plan, docker_client, log=lambda *a: None, registry_cache=registry)
    assert not any(r["built"] or r["fetched"] for r in third)


def test_an_entry_whose_label_disagrees_is_refused_and_rebuilt(chain, docker_client, capsys):
    from images import build, imagekey, keycache

    plan, registry = chain
    build.build_all(plan, docker_client, log=lambda *a: None, registry_cache=registry)
    leaf, other = plan.images[-1], plan.images[-2]
    key = imagekey.image_key(plan, leaf).hex
    # poison the registry: another image pushed under the leaf's key
    repo, ktag = keycache.key_ref(leaf.tag, registry, key)
    docker_client.images.get(other.tag).tag(repo, ktag)
    for _ in docker_client.images.push(repo, ktag, stream=True, decode=True):
        pass
    docker_client.images.remove(f"{repo}:{ktag}")
    docker_client.images.remove(leaf.tag, force=True)
    plan.memo = {}
    res = build.build_image(plan, leaf, docker_client, log=lambda *a: None, registry_cache=registry)
    assert res["built"] and not res["fetched"]
    err = capsys.readouterr().err
    assert f"carries key" in err and f"expected {key[:12]}" in err and "building locally" in err
    assert docker_client.images.get(leaf.tag).labels[imagekey.KEY_LABEL] == key


def test_an_unreachable_registry_is_one_warning_and_the_build_goes_on(chain, docker_client, capsys):
    from images import build

    plan, _ = chain
    leaf = plan.images[-1]
    docker_client.images.remove(leaf.tag, force=True)
    plan.memo = {}
    res = build.build_image(plan, leaf, docker_client, log=lambda *a: None, registry_cache="127.0.0.1:9")
    assert res["built"]
    err = [l for l in capsys.readouterr().err.splitlines() if "image cache" in l]
    assert err and all("127.0.0.1:9" in l for l in err)


def test_image_test_results_are_shared_by_image_and_machine(chain, docker_client, tmp_path, monkeypatch):
    """Results of an image's tests are keyed on the image id, the tests and the machine's kind:
    a second build directory with the same image fetches them and runs no container; another
    kind of machine (faked flags) runs them itself."""
    from images import build, imagetest
    from zoobuild import keys, paths
    from zoobuild.cache import Cache

    plan, registry = chain
    build.build_all(plan, docker_client, log=lambda *a: None, registry_cache=registry)
    img = plan.images[-1]
    cache = Cache((tmp_path / "cache").as_uri())
    monkeypatch.setattr(keys, "_CACHE", None)
    monkeypatch.setattr(paths, "BUILD", tmp_path / "A")
    ran = []
    first = imagetest.run_tests(img, docker_client, log=ran.append, cache=cache)
    assert ran and all(t["rc"] == 0 for t in first["tests"])
    monkeypatch.setattr(paths, "BUILD", tmp_path / "B")
    lines = []
    second = imagetest.run_tests(img, docker_client, log=lines.append, cache=cache)
    assert second == first and not any(": test " in l for l in lines), lines
    assert any("results fetched" in l for l in lines)
    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", "fpu sse sse2")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "C")
    other = []
    imagetest.run_tests(img, docker_client, log=other.append, cache=cache)
    assert any(": test " in l for l in other), other
