"""cllm_hub_resolve against a local Hub stand-in (tests/model/hub_server.py):
cache lookup, download layout, resume, redirects, tokens, errors."""
import os

import pytest

from conftest import INVALID_ARG, NETWORK, NOT_FOUND, OK, SHARED, run
from hub_server import SHA, Hub

STORIES = os.path.join(SHARED, "models", "stories260K")
NEEDED = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
          "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture
def hub():
    h = Hub(STORIES)
    yield h
    h.close()


def env_for(hub, cache, **kw):
    e = {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}
    e.update(kw)
    return e


def check_snapshot(cache, repo_folder="models--org--tiny"):
    snap = cache / repo_folder / "snapshots" / SHA
    assert (cache / repo_folder / "refs" / "main").read_text().strip() == SHA
    for f in NEEDED:
        assert (snap / f).read_bytes() == open(os.path.join(STORIES, f), "rb").read(), f
    assert not (snap / "README.md").exists() and not (snap / "LICENSE").exists()  # only what cllm needs
    assert not [f for f in os.listdir(snap) if f.endswith(".incomplete")]
    return snap


def test_local_directory_as_is():
    rc, js = run("hub", STORIES)
    assert rc == OK and js["dir"] == STORIES


def test_download_then_offline_cache_hit(hub, tmp_path):
    cache = tmp_path / "hub"
    rc, js = run("hub", "org/tiny", env=env_for(hub, cache))
    assert rc == OK, js
    snap = check_snapshot(cache)
    assert js["dir"] == str(snap)
    assert any(p.startswith("/cdn/") for p, _, _ in hub.log)  # followed the redirect
    # the downloaded snapshot loads
    rc, cfg = run("config", js["dir"])
    assert rc == OK and cfg["hidden_size"] == 64
    # cached: no request at all, also offline, also by commit sha
    n = len(hub.log)
    for rev, extra in [("main", {}), ("main", {"HF_HUB_OFFLINE": "1"}), (SHA, {"HF_HUB_OFFLINE": "1"})]:
        rc, js = run("hub", "org/tiny", rev, env=env_for(hub, cache, **extra))
        assert rc == OK and js["dir"] == str(snap)
    assert len(hub.log) == n


def test_resume_from_incomplete_file(hub, tmp_path):
    cache = tmp_path / "hub"
    snap = cache / "models--org--tiny" / "snapshots" / SHA
    os.makedirs(snap)
    data = open(os.path.join(STORIES, "model.safetensors"), "rb").read()
    half = len(data) // 3
    (snap / "model.safetensors.incomplete").write_bytes(data[:half])
    rc, js = run("hub", "org/tiny", env=env_for(hub, cache))
    assert rc == OK, js
    check_snapshot(cache)
    ranges = [r for p, r, _ in hub.log if p.endswith("model.safetensors")]
    assert f"bytes={half}-" in ranges


def test_connection_dropped_halfway_is_resumed(hub, tmp_path):
    cache = tmp_path / "hub"
    hub.drop_once = {"model.safetensors", "tokenizer.json"}
    rc, js = run("hub", "org/tiny", env=env_for(hub, cache))
    assert rc == OK, js
    check_snapshot(cache)
    ranges = [r for p, r, _ in hub.log if p.endswith("model.safetensors")]
    assert ranges[0] is None and ranges[-1] and ranges[-1].startswith("bytes=")


def test_gated_needs_token(hub, tmp_path):
    cache = tmp_path / "hub"
    rc, js = run("hub", "org/gated", env=env_for(hub, cache))
    assert rc == NETWORK and "HF_TOKEN" in js["error"] and "401" in js["error"]
    rc, js = run("hub", "org/gated", env=env_for(hub, cache, HF_TOKEN="wrong"))
    assert rc == NETWORK and "HF_TOKEN" in js["error"]
    rc, js = run("hub", "org/gated", env=env_for(hub, cache, HF_TOKEN="hf_secret"))
    assert rc == OK, js
    check_snapshot(cache, "models--org--gated")
    assert ("Bearer hf_secret" in [a for p, _, a in hub.log if "/resolve/" in p])


def test_no_such_model(hub, tmp_path):
    rc, js = run("hub", "org/nothing", env=env_for(hub, tmp_path))
    assert rc == NOT_FOUND and "no such model org/nothing" in js["error"]
    rc, js = run("hub", "org/tiny", "no-such-branch", env=env_for(hub, tmp_path))
    assert rc == NOT_FOUND and "no-such-branch" in js["error"]


def test_network_failure(tmp_path):
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rc, js = run("hub", "org/tiny", env={"HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{port}",
                                         "HF_HUB_OFFLINE": "0"})
    assert rc == NETWORK and "onnect" in js["error"]  # curl: "Couldn't connect to server"


def test_offline_and_absent(tmp_path):
    rc, js = run("hub", "org/tiny", env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert rc == NOT_FOUND
    assert f"{tmp_path}/models--org--tiny" in js["error"] and "HF_HUB_OFFLINE" in js["error"]


def test_cache_locations_and_snapshot_named_by_revision(tmp_path):
    # HF_HOME/hub when HF_HUB_CACHE is unset; a snapshot dir named like the revision
    snap = tmp_path / "home" / "hub" / "models--org--x" / "snapshots" / "v1"
    os.makedirs(snap)
    (snap / "config.json").write_text("{}")
    e = {"HF_HUB_CACHE": "", "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    rc, js = run("hub", "org/x", "v1", env=e)
    assert rc == OK and js["dir"] == str(snap)
    # ~/.cache/huggingface/hub when neither is set
    snap2 = tmp_path / ".cache" / "huggingface" / "hub" / "models--org--y" / "snapshots" / ("ab" * 20)
    os.makedirs(snap2)
    os.makedirs(snap2.parent.parent / "refs")
    (snap2.parent.parent / "refs" / "main").write_text("ab" * 20)
    e = {"HF_HUB_CACHE": "", "HF_HOME": "", "XDG_CACHE_HOME": "", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    rc, js = run("hub", "org/y", env=e)
    assert rc == OK and js["dir"] == str(snap2)


@pytest.mark.parametrize("model", ["/no/such/dir", "../x", "org/../../etc", "a/b/c", ""])
def test_bad_model_names(tmp_path, model):
    rc, js = run("hub", model, env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert rc in (NOT_FOUND, INVALID_ARG) and js["error"]


def test_bad_revision(tmp_path):
    rc, js = run("hub", "org/tiny", "../../x", env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert rc == INVALID_ARG and "revision" in js["error"]
