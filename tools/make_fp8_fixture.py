#!/usr/bin/env python3
"""Make the FP8 checkpoint fixtures (tests/fixtures/fp8/) from a float32 Llama
checkpoint, and dequantize an FP8 checkpoint back to float32 (what the tests
compare cllm's FP8 loading against). numpy only; with torch and/or ml_dtypes
installed, the e4m3fn/e5m2 decoding and the e4m3fn rounding are asserted equal
to theirs (torch.float8_e4m3fn, ml_dtypes.float8_e4m3fn) and their code table
is written (fp8_codes.json, read by tests/model/test_fp8.py).

    python3 tools/make_fp8_fixture.py make --src ../shared/models/stories260K --out tests/fixtures/fp8
    python3 tools/make_fp8_fixture.py dequantize FP8_DIR OUT_DIR

Variants (each a Hugging Face directory: config.json with quantization_config,
model.safetensors, the tokenizer files of the source):
  stories260K-tensor   compressed-tensors float-quantized, strategy tensor:
                       `*.weight` F8_E4M3, `*.weight_scale` F32 [1] (layer 0's
                       k/v: shape [], as older checkpoints), static input
                       activations: `*.input_scale` F32 [1] (a fixed 0.05, unused)
  stories260K-channel  compressed-tensors, strategy channel, dynamic activations:
                       `*.weight_scale` BF16 [N, 1]
  stories260K-block    quant_method fp8 (transformers FineGrainedFP8) with
                       weight_block_size [16, 16]: `*.weight_scale_inv` F32
                       [ceil(N/16), ceil(K/16)] (stories260K's 172-wide MLP
                       ends in partial tiles; tp 2 slices it mid-tile)
The embedding and the norms are stored in bfloat16, as published FP8
checkpoints store what they do not quantize; lm_head is in `ignore`
(stories260K ties it to the embedding).

Quantization (symmetric, as compressed-tensors / transformers do it):
scale = max|w| / 448 over the tensor, row or tile (in the scale's dtype), q =
e4m3(clamp(w / scale, -448, 448)) rounded to nearest even. Dequantization:
w = f32(q) * f32(scale), in float32.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

FP8_MAX = 448.0
NP_OF = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
         "F8_E4M3": np.uint8, "F8_E5M2": np.uint8, "BF16": np.uint16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


# ---------------------------------------------------------------- formats

def e4m3_decode_table():
    """The 256 float8_e4m3fn values by formula: bias 7, no infinities, S.1111.111 NaN, subnormals m/8 * 2^-6."""
    out = np.zeros(256, np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            v = np.nan
        elif e == 0:
            v = m / 8.0 * 2.0 ** -6
        else:
            v = (1 + m / 8.0) * 2.0 ** (e - 7)
        out[c] = -v if s else v
    return out


def e5m2_decode_table():
    """The 256 float8_e5m2 values by formula: bias 15, exponent 31 is inf (m = 0) or NaN, subnormals m/4 * 2^-14."""
    out = np.zeros(256, np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 2) & 31, c & 3
        if e == 31:
            v = np.inf if m == 0 else np.nan
        elif e == 0:
            v = m / 4.0 * 2.0 ** -14
        else:
            v = (1 + m / 4.0) * 2.0 ** (e - 15)
        out[c] = -v if s else v
    return out


E4M3 = e4m3_decode_table()


def e4m3_encode(x):
    """float32 array -> e4m3fn codes (uint8): round to nearest, ties to even, saturating at +-448."""
    x = np.asarray(x, np.float32)
    a = np.minimum(np.abs(x).astype(np.float64), FP8_MAX)
    pos = E4M3[:127]                      # codes 0x00..0x7e: 0 .. 448, increasing
    hi = np.clip(np.searchsorted(pos, a, side="left"), 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    dlo, dhi = a - pos[lo], pos[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    return code | np.where(np.signbit(x) & (code != 0), 0x80, 0).astype(np.uint8)


def bf16_round(x):
    """float32 -> bfloat16 bits, round to nearest even (no NaNs here)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------- safetensors (numpy, any dtype string)

def read_safetensors(path):
    """name -> (dtype string, numpy array of the raw storage type)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = (e["dtype"], np.frombuffer(data[b:end], NP_OF[e["dtype"]]).reshape(e["shape"]).copy())
    return out


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, numpy array whose bytes are the storage)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dt, arr = tensors[name]
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def as_f32(dt, arr):
    if dt == "F32":
        return arr
    if dt == "BF16":
        return bf16_to_f32(arr)
    if dt == "F16":
        return arr.astype(np.float32)
    raise ValueError(dt)


# ---------------------------------------------------------------- quantize / dequantize

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_linear(name):
    return name.endswith(".weight") and name.split(".")[-2] in LINEARS


def quantize(w, variant, block):
    """w (N, K) f32 -> (codes (N, K) uint8, scale tensor (dtype, array))."""
    N, K = w.shape
    if variant == "tensor":
        s = np.array([np.abs(w).max() / FP8_MAX], np.float32)
        return e4m3_encode(w / s[0]), ("F32", s)
    if variant == "channel":
        bits = bf16_round(np.abs(w).max(axis=1, keepdims=True) / FP8_MAX)
        return e4m3_encode(w / bf16_to_f32(bits)), ("BF16", bits)
    bn, bk = block
    sn, sk = -(-N // bn), -(-K // bk)
    s = np.zeros((sn, sk), np.float32)
    q = np.zeros((N, K), np.uint8)
    for i in range(sn):
        for j in range(sk):
            tile = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
            s[i, j] = max(np.abs(tile).max(), 1e-12) / FP8_MAX
            q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = e4m3_encode(tile / s[i, j])
    return q, ("F32", s)


def dequantize_weight(codes, scale, block):
    """f32(e4m3(codes)) * scale, in float32; the scale's layout from its shape (as quant.h describes)."""
    N, K = codes.shape
    v = E4M3[codes].astype(np.float32)
    s = scale.astype(np.float32)
    if s.size == 1:
        return v * s.reshape(())
    if block and s.shape == (-(-N // block[0]), -(-K // block[1])):
        full = np.repeat(np.repeat(s, block[0], axis=0), block[1], axis=1)[:N, :K]
        return v * full
    assert s.shape in ((N, 1), (N,)), s.shape
    return v * s.reshape(N, 1)


def config_for(base, variant, block):
    cfg = dict(base)
    cfg["torch_dtype"] = "bfloat16"
    if variant == "block":
        cfg["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3",
                                      "weight_block_size": list(block), "modules_to_not_convert": ["lm_head"]}
        return cfg
    inputs = ({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}
              if variant == "tensor" else
              {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True})
    cfg["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
        "global_compression_ratio": None, "kv_cache_scheme": None, "sparsity_config": {},
        "ignore": ["lm_head"],
        "config_groups": {"group_0": {
            "targets": ["Linear"], "output_activations": None, "input_activations": inputs,
            "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": variant, "dynamic": False,
                        "group_size": None, "block_structure": None, "observer": "minmax"}}}}
    return cfg


def make(src, out, block=(16, 16)):
    base = json.load(open(os.path.join(src, "config.json")))
    tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    os.makedirs(out, exist_ok=True)
    for variant in ("tensor", "channel", "block"):
        d = os.path.join(out, f"stories260K-{variant}")
        os.makedirs(d, exist_ok=True)
        st = {}
        for name, (dt, arr) in tensors.items():
            w = as_f32(dt, arr)
            if not is_linear(name):
                st[name] = ("BF16", bf16_round(w))
                continue
            q, (sdt, s) = quantize(w, variant, block)
            st[name] = ("F8_E4M3", q)
            base_name = name[: -len(".weight")]
            if variant == "block":
                st[base_name + ".weight_scale_inv"] = (sdt, s)
            else:
                if variant == "tensor" and base_name.startswith("model.layers.0.self_attn.") and \
                        base_name.split(".")[-1] in ("k_proj", "v_proj"):
                    s = s.reshape(())
                st[base_name + ".weight_scale"] = (sdt, s)
                if variant == "tensor":
                    st[base_name + ".input_scale"] = ("F32", np.array([0.05], np.float32))
        write_safetensors(os.path.join(d, "model.safetensors"), st)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config_for(base, variant, block), f, indent=2)
            f.write("\n")
        for t in TOKENIZER_FILES:
            if os.path.exists(os.path.join(src, t)):
                shutil.copy(os.path.join(src, t), os.path.join(d, t))
    rng = np.random.default_rng(9)
    ins = {}
    for n, T in enumerate((1, 7, 37, 100)):
        ids = np.concatenate([[1], rng.integers(3, base["vocab_size"], T - 1)]).astype(np.int32)
        ins[f"input_ids.{n}"] = ("I32", ids)
    write_safetensors(os.path.join(out, "inputs.safetensors"), ins)
    check_references(out)


def dequantize(fp8_dir, out):
    """Write fp8_dir's model with every FP8 weight dequantized to float32 (and the rest as float32) into out."""
    cfg = json.load(open(os.path.join(fp8_dir, "config.json")))
    qc = cfg.pop("quantization_config")
    block = qc.get("weight_block_size")
    for g in (qc.get("config_groups") or {}).values():
        if (g.get("weights") or {}).get("strategy") == "block":
            block = g["weights"]["block_structure"]
    cfg["torch_dtype"] = "float32"
    tensors = read_safetensors(os.path.join(fp8_dir, "model.safetensors"))
    st = {}
    for name, (dt, arr) in tensors.items():
        if name.endswith((".weight_scale", ".weight_scale_inv", ".input_scale")):
            continue
        if dt == "F8_E4M3":
            sname = name + "_scale_inv" if name + "_scale_inv" in tensors else name + "_scale"
            st[name] = ("F32", dequantize_weight(arr, as_f32(*tensors[sname]), block))
        else:
            st[name] = ("F32", as_f32(dt, arr))
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), st)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for t in TOKENIZER_FILES:
        if os.path.exists(os.path.join(fp8_dir, t)):
            shutil.copy(os.path.join(fp8_dir, t), os.path.join(out, t))


# ---------------------------------------------------------------- cross-check (torch, ml_dtypes)

def reference_codecs():
    """(name, decode(codes uint8) -> float64, encode(float32) -> uint8) for e4m3fn and e5m2 from the
    libraries that are installed: torch (float8_e4m3fn / float8_e5m2) and ml_dtypes (the same formats
    for numpy, an independent implementation)."""
    out = []
    try:
        import torch
        out.append((f"torch {torch.__version__}",
                    lambda c, dt: torch.from_numpy(c).view(getattr(torch, dt)).to(torch.float64).numpy(),
                    lambda x: torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()))
    except Exception as e:  # noqa: BLE001 (absent, or a CUDA build without its libraries)
        print(f"torch unusable ({type(e).__name__}: {e}); not cross-checking against it", file=sys.stderr)
    try:
        import ml_dtypes
        out.append((f"ml_dtypes {ml_dtypes.__version__}",
                    lambda c, dt: c.view(getattr(ml_dtypes, dt)).astype(np.float64),
                    lambda x: x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)))
    except ImportError:
        print("ml_dtypes not installed: not cross-checking against it", file=sys.stderr)
    return out


def check_references(out):
    """Our e4m3fn/e5m2 decoding and e4m3fn rounding equal each reference library's; write the code
    tables of the first (torch preferred) to fp8_codes.json for the C test."""
    codes = np.arange(256, dtype=np.uint8)
    rng = np.random.default_rng(0)
    mid = (E4M3[:126] + E4M3[1:127]) / 2  # every tie between neighbouring finite values
    x = np.concatenate([rng.standard_normal(200000) * 100, mid, -mid, mid * (1 + 1e-6), mid * (1 - 1e-6),
                        [0.0, -0.0, 447.9, 1e-9, 2.0 ** -10]]).astype(np.float32)
    xc = np.clip(x, -FP8_MAX, FP8_MAX)
    mine = e4m3_encode(x)
    written = False
    for name, decode, encode in reference_codecs():
        np.testing.assert_array_equal(decode(codes, "float8_e4m3fn"), E4M3, err_msg=name)
        np.testing.assert_array_equal(decode(codes, "float8_e5m2"), e5m2_decode_table(), err_msg=name)
        ref = encode(xc)
        same = (ref == mine) | (((ref & 0x7F) == 0) & ((mine & 0x7F) == 0))  # +0 and -0 alike
        assert same.all(), (name, x[~same][:8], ref[~same][:8], mine[~same][:8])
        print(f"{name}: e4m3fn/e5m2 decoding (256 codes each) and e4m3fn rounding ({x.size} values) agree",
              file=sys.stderr)
        if not written:
            t4, t5 = decode(codes, "float8_e4m3fn"), decode(codes, "float8_e5m2")
            table = {"source": f"{name}: the 256 codes viewed as float8_e4m3fn / float8_e5m2, as float64",
                     "float8_e4m3fn": [None if np.isnan(v) else float(v) for v in t4],
                     "float8_e5m2": [None if np.isnan(v) else ("inf" if v == np.inf else "-inf" if v == -np.inf
                                                               else float(v)) for v in t5]}
            with open(os.path.join(out, "fp8_codes.json"), "w") as f:
                json.dump(table, f, indent=0)
                f.write("\n")
            written = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--src", required=True)
    m.add_argument("--out", required=True)
    d = sub.add_parser("dequantize")
    d.add_argument("fp8_dir")
    d.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.src, a.out)
    else:
        dequantize(a.fp8_dir, a.out)


if __name__ == "__main__":
    main()
