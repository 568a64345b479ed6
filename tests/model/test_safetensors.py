"""safetensors reading vs the `safetensors` package, sharded checkpoints, and
one test per kind of corrupt file (right status, message names the file)."""
import json
import os
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from conftest import FORMAT, NOT_FOUND, OK, SHARED, UNSUPPORTED, run

STORIES = os.path.join(SHARED, "models", "stories260K")
NP_DTYPE = {"float32": np.float32, "float16": np.float16}


def check_against(js, ref, files=None):
    by_name = {t["name"]: t for t in js["tensors"]}
    assert set(by_name) == set(ref)
    for name, arr in ref.items():
        t = by_name[name]
        assert t["shape"] == list(arr.shape), name
        assert t["nbytes"] == arr.nbytes, name
        flat = arr.reshape(-1).astype(np.float64)
        np.testing.assert_array_equal(np.array(t["first"]), flat[:8])
        assert t["sum"] == pytest.approx(float(flat.sum()), rel=1e-9, abs=1e-9), name
        if files:
            assert os.path.basename(t["file"]) == files[name]


def test_stories260k_matches_safetensors_package():
    ref = load_file(os.path.join(STORIES, "model.safetensors"))
    rc, js = run("tensors", STORIES, *sorted(ref))
    assert rc == OK, js
    assert js["count"] == len(ref) and js["total_bytes"] == sum(a.nbytes for a in ref.values())
    assert all(t["dtype"] == "float32" for t in js["tensors"])
    check_against(js, ref)


def test_get_shape_check_and_messages():
    path = os.path.join(STORIES, "model.safetensors")
    with safe_open(path, "np") as f:
        shape = f.get_slice("model.embed_tokens.weight").get_shape()
    rc, js = run("get", STORIES, "model.embed_tokens.weight", *shape)
    assert rc == OK and js["shape"] == shape
    rc, js = run("get", STORIES, "model.embed_tokens.weight", shape[1], shape[0])
    assert rc == FORMAT
    assert js["error"].startswith(f"tensor model.embed_tokens.weight in {path} has shape [{shape[0]}, {shape[1]}], "
                                  f"expected [{shape[1]}, {shape[0]}]")
    rc, js = run("get", STORIES, "model.embed_tokens.weight", shape[0])
    assert rc == FORMAT and "expected [" in js["error"]
    rc, js = run("get", STORIES, "lm_head.weight", 512, 64)
    assert rc == NOT_FOUND and js["error"].startswith(f"tensor lm_head.weight not found in {STORIES} (")


def bf16_bits(x):
    """float32 -> bfloat16 bits by truncation (exact for values with 8-bit mantissas)."""
    return (np.asarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def write_st(path, header, data=b"", raw_header=None, n_override=None):
    """Write a safetensors file by hand (spec: u64 LE length, JSON, data)."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if n_override is None else n_override
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + h + data)
    return path


def test_bf16_f16_and_metadata(tmp_path):
    vals = np.array([1.0, -2.0, 0.5, 3.140625], dtype=np.float32)  # exact in bf16
    half = np.array([[1.5, -0.25], [65504.0, 2.0 ** -24]], dtype=np.float16)
    bdata, hdata = bf16_bits(vals).tobytes(), half.tobytes()
    hdr = {"__metadata__": {"format": "pt"},
           "a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
           "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]},
           "idx": {"dtype": "I32", "shape": [], "data_offsets": [16, 20]}}
    os.makedirs(tmp_path / "m")
    write_st(tmp_path / "m" / "model.safetensors", hdr, bdata + hdata + struct.pack("<i", 7))
    # the safetensors package agrees the file is valid
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "np") as f:
        assert sorted(f.keys()) == ["a", "b", "idx"]
    rc, js = run("tensors", tmp_path / "m", "a", "b")
    assert rc == OK, js
    assert js["count"] == 3
    a, b = js["tensors"]
    assert a["dtype"] == "bfloat16" and a["first"] == vals.tolist()
    assert b["dtype"] == "float16" and b["first"] == half.astype(np.float64).reshape(-1).tolist()
    rc, js = run("get", tmp_path / "m", "idx")
    assert rc == UNSUPPORTED and "int32" in js["error"]


def make_sharded(d):
    rng = np.random.default_rng(0)
    ref = {f"model.layers.{i}.w": rng.standard_normal((3, 5)).astype(np.float32) for i in range(4)}
    ref["model.norm.weight"] = rng.standard_normal(7).astype(np.float16)
    names = sorted(ref)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    os.makedirs(d, exist_ok=True)
    wm = {}
    for fn, ns in shards.items():
        save_file({n: ref[n] for n in ns}, os.path.join(d, fn), metadata={"format": "pt"})
        wm.update({n: fn for n in ns})
    index = {"metadata": {"total_size": sum(a.nbytes for a in ref.values())}, "weight_map": wm}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    return ref, wm, index


def test_sharded(tmp_path):
    ref, wm, _ = make_sharded(tmp_path / "m")
    rc, js = run("tensors", tmp_path / "m", *sorted(ref))
    assert rc == OK, js
    assert js["count"] == len(ref)
    check_against(js, ref, files=wm)


def test_sharded_tensor_missing_from_its_shard(tmp_path):
    ref, wm, index = make_sharded(tmp_path / "m")
    index["weight_map"]["model.extra"] = "model-00001-of-00002.safetensors"
    json.dump(index, open(tmp_path / "m" / "model.safetensors.index.json", "w"))
    rc, js = run("tensors", tmp_path / "m")
    assert rc == FORMAT
    assert "model.extra" in js["error"] and "model.safetensors.index.json" in js["error"]
    assert "model-00001-of-00002.safetensors" in js["error"]


def test_sharded_index_points_to_wrong_shard(tmp_path):
    ref, wm, index = make_sharded(tmp_path / "m")
    n = "model.layers.0.w"
    index["weight_map"][n] = "model-00002-of-00002.safetensors"
    json.dump(index, open(tmp_path / "m" / "model.safetensors.index.json", "w"))
    rc, js = run("tensors", tmp_path / "m")
    assert rc == FORMAT and n in js["error"] and "model-00002-of-00002" in js["error"]


def test_sharded_missing_shard_file(tmp_path):
    make_sharded(tmp_path / "m")
    os.remove(tmp_path / "m" / "model-00002-of-00002.safetensors")
    rc, js = run("tensors", tmp_path / "m")
    assert rc == NOT_FOUND and "model-00002-of-00002.safetensors" in js["error"]


@pytest.mark.parametrize("text", ["{not json", '{"metadata": {}}', '{"weight_map": {"a": 3}}',
                                  '{"weight_map": {"a": "../../etc/passwd"}}'])
def test_bad_index(tmp_path, text):
    make_sharded(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors.index.json").write_text(text)
    rc, js = run("tensors", tmp_path / "m")
    assert rc == FORMAT and "model.safetensors.index.json" in js["error"]


def test_duplicate_tensor_across_shards(tmp_path):
    d = tmp_path / "m"
    os.makedirs(d)
    a = np.ones(3, dtype=np.float32)
    save_file({"x": a, "y": a}, str(d / "s1.safetensors"))
    save_file({"x": a}, str(d / "s2.safetensors"))
    json.dump({"weight_map": {"x": "s2.safetensors", "y": "s1.safetensors"}}, open(d / "model.safetensors.index.json", "w"))
    rc, js = run("tensors", d)
    assert rc == FORMAT and "'x'" in js["error"] and "s1.safetensors" in js["error"] and "s2.safetensors" in js["error"]


def test_no_weights(tmp_path):
    rc, js = run("tensors", tmp_path)
    assert rc == NOT_FOUND and str(tmp_path) in js["error"] and "model.safetensors" in js["error"]


GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
DATA16 = bytes(16)
CORRUPT = {
    "too_short": dict(raw=b"\x01\x02\x03", expect=(FORMAT, "shorter than the 8-byte")),
    "n_beyond_file": dict(header=GOOD, data=DATA16, n=10_000, expect=(FORMAT, "larger than the file")),
    "n_absurd": dict(header=GOOD, data=DATA16, n=150_000_000, sparse=200_000_000, expect=(FORMAT, "over 100 MB")),
    "not_json": dict(raw_header=b"{this is not json}", expect=(FORMAT, "not valid JSON")),
    "not_object": dict(raw_header=b"[1, 2, 3]", expect=(FORMAT, "not a JSON object")),
    "duplicate_key": dict(raw_header=b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                     b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}',
                          data=bytes(8), expect=(FORMAT, "not valid JSON")),
    "entry_not_object": dict(header={"w": [1, 2]}, expect=(FORMAT, "'w' is not an object")),
    "missing_dtype": dict(header={"w": {"shape": [2, 2], "data_offsets": [0, 16]}}, data=DATA16, expect=(FORMAT, "lacks 'dtype'")),
    "missing_shape": dict(header={"w": {"dtype": "F32", "data_offsets": [0, 16]}}, data=DATA16, expect=(FORMAT, "lacks 'shape'")),
    "missing_offsets": dict(header={"w": {"dtype": "F32", "shape": [2, 2]}}, data=DATA16, expect=(FORMAT, "lacks 'data_offsets'")),
    "unknown_dtype": dict(header={"w": {"dtype": "F8_E9", "shape": [2, 2], "data_offsets": [0, 16]}}, data=DATA16,
                          expect=(FORMAT, "unknown dtype 'F8_E9'")),
    "end_before_begin": dict(header={"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, data=DATA16,
                             expect=(FORMAT, "ends before it begins")),
    "beyond_file": dict(header={"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, data=bytes(12),
                        expect=(FORMAT, "past the end")),
    "size_mismatch": dict(header={"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}, data=DATA16,
                          expect=(FORMAT, "need 24")),
    "overlap": dict(header={"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, data=DATA16,
                    expect=(FORMAT, "overlap")),
    "negative_shape": dict(header={"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, data=DATA16,
                           expect=(FORMAT, "shape entry")),
    "offsets_not_pair": dict(header={"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}, data=DATA16,
                             expect=(FORMAT, "data_offsets")),
    "overflow_shape": dict(header={"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, data=DATA16,
                           expect=(FORMAT, "overflow")),
    "five_dims": dict(header={"w": {"dtype": "F32", "shape": [1, 1, 1, 2, 2], "data_offsets": [0, 16]}}, data=DATA16,
                      expect=(UNSUPPORTED, "5 dimensions")),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt(tmp_path, case):
    c = CORRUPT[case]
    d = tmp_path / "m"
    os.makedirs(d)
    path = d / "model.safetensors"
    if "raw" in c:
        path.write_bytes(c["raw"])
    else:
        write_st(path, c.get("header"), c.get("data", b""), raw_header=c.get("raw_header"), n_override=c.get("n"))
    if "sparse" in c:
        os.truncate(path, c["sparse"])
    # outside truth: the reference reader rejects the file too
    if case != "five_dims":
        with pytest.raises(Exception):
            with safe_open(str(path), "np") as f:
                for k in f.keys():
                    f.get_tensor(k)
    status, text = c["expect"]
    rc, js = run("tensors", d)
    assert rc == status, js
    assert str(path) in js["error"] and text in js["error"], js["error"]
