"""config.json / generation_config.json parsing vs the Hugging Face files and
transformers' documented defaults; rope inv_freq vs a numpy re-implementation
of transformers' modeling_rope_utils formulas."""
import json
import math
import os

import numpy as np
import pytest

from conftest import DATA, FORMAT, IO, OK, SHARED, UNSUPPORTED, run


def load(name):
    rc, js = run("config", os.path.join(DATA, name))
    assert rc == OK, js
    return js


def hf_inv_freq(D, theta, rope=None):
    """transformers: _compute_default_rope_parameters / _compute_linear_scaling_rope_parameters /
    _compute_llama3_parameters, in float32 like torch."""
    inv = (1.0 / (np.float32(theta) ** (np.arange(0, D, 2, dtype=np.int64).astype(np.float32) / np.float32(D)))).astype(np.float32)
    if not rope:
        return inv
    t = rope.get("rope_type", rope.get("type"))
    if t == "linear":
        return (inv / np.float32(rope["factor"])).astype(np.float32)
    assert t == "llama3"
    factor, lo, hi = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    wavelen = (2 * math.pi / inv).astype(np.float32)
    inv_l = np.where(wavelen > low_wl, inv / factor, inv).astype(np.float32)
    smooth = ((old / wavelen - lo) / (hi - lo)).astype(np.float32)
    smoothed = ((1 - smooth) * inv_l / factor + smooth * inv_l).astype(np.float32)
    medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
    return np.where(medium, smoothed, inv_l).astype(np.float32)


def test_llama3_8b():
    c = load("llama3")
    assert c["model_type"] == "llama" and c["architecture"] == "LlamaForCausalLM"
    assert (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]) == (4096, 14336, 32)
    assert (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (32, 8, 128)
    assert c["vocab_size"] == 128256 and c["max_position_embeddings"] == 131072
    assert c["rms_norm_eps"] == pytest.approx(1e-5, rel=1e-6) and c["rope_theta"] == 500000.0
    assert c["rope_type"] == "llama3" and c["rope_factor"] == 8.0
    assert (c["rope_low_freq_factor"], c["rope_high_freq_factor"]) == (1.0, 4.0)
    assert c["rope_original_max_position_embeddings"] == 8192
    assert not c["tie_word_embeddings"] and not c["attention_bias"] and not c["qk_norm"]
    assert c["torch_dtype"] == "bfloat16" and c["bos_token_id"] == 128000
    assert c["eos_token_id"] == [128001, 128008, 128009] and c["is_eos_first"] and not c["is_eos_minus1"]
    g = c["gen"]
    assert g["present"] and g["do_sample"] and g["temperature"] == pytest.approx(0.6) and g["top_p"] == pytest.approx(0.9)
    assert g["top_k"] == -1 and g["min_p"] < 0 and g["repetition_penalty"] < 0  # unset
    cfg = json.load(open(os.path.join(DATA, "llama3", "config.json")))
    ref = hf_inv_freq(128, 500000.0, cfg["rope_scaling"])
    np.testing.assert_allclose(np.array(c["inv_freq"], dtype=np.float32), ref, rtol=2e-6, atol=0)
    # the three llama3 regions all occur for D=128: scaled, smoothed, unchanged
    plain = hf_inv_freq(128, 500000.0)
    assert np.any(np.isclose(ref, plain / 8, rtol=1e-6)) and np.any(np.isclose(ref, plain, rtol=1e-6))
    assert np.sum(~np.isclose(ref, plain / 8, rtol=1e-6) & ~np.isclose(ref, plain, rtol=1e-6)) > 0


def test_llama3_transformers5_rope_parameters_and_dtype():
    c = load("llama3_v5")
    assert c["rope_type"] == "llama3" and c["rope_factor"] == 32.0 and c["rope_theta"] == 500000.0
    assert c["torch_dtype"] == "bfloat16" and c["tie_word_embeddings"] and c["head_dim"] == 64
    assert not c["gen"]["present"] and c["eos_token_id"] == [128001, 128008, 128009]
    cfg = json.load(open(os.path.join(DATA, "llama3_v5", "config.json")))
    ref = hf_inv_freq(64, 500000.0, cfg["rope_parameters"])
    np.testing.assert_allclose(np.array(c["inv_freq"], dtype=np.float32), ref, rtol=2e-6, atol=0)


def test_qwen3_0_6b():
    c = load("qwen3")
    assert c["model_type"] == "qwen3" and c["qk_norm"] and not c["attention_bias"]
    assert (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (1024, 16, 8, 128)
    assert c["tie_word_embeddings"] and c["rope_type"] == "default" and c["rope_theta"] == 1e6
    assert c["sliding_window"] == 0 and c["max_position_embeddings"] == 40960
    # generation_config.json's eos list replaces config.json's single id
    assert c["eos_token_id"] == [151645, 151643] and c["gen"]["top_k"] == 20
    assert c["gen"]["top_p"] == pytest.approx(0.95) and c["gen"]["temperature"] == pytest.approx(0.6)
    np.testing.assert_allclose(np.array(c["inv_freq"], dtype=np.float32), hf_inv_freq(128, 1e6), rtol=2e-6)


def test_qwen2_has_qkv_bias_and_no_sliding_window():
    c = load("qwen2")
    assert c["model_type"] == "qwen2" and c["attention_bias"] and not c["qk_norm"]
    assert (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (28, 4, 128)
    assert c["sliding_window"] == 0  # use_sliding_window false
    assert c["gen"]["repetition_penalty"] == pytest.approx(1.05) and c["eos_token_id"] == [151645, 151643]
    assert c["rms_norm_eps"] == pytest.approx(1e-6)


def test_mistral_v03():
    c = load("mistral")
    assert c["model_type"] == "mistral" and c["sliding_window"] == 0 and not c["attention_bias"]
    assert (c["num_key_value_heads"], c["head_dim"], c["vocab_size"]) == (8, 128, 32768)
    assert c["bos_token_id"] == 1 and c["eos_token_id"] == [2] and not c["gen"]["present"]


def test_stories260k():
    c = load(os.path.join(SHARED, "models", "stories260K"))
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]) == (64, 5, 8, 4)
    assert c["head_dim"] == 8 and c["tie_word_embeddings"] and c["torch_dtype"] == "float32"
    assert c["gen"]["present"] and c["eos_token_id"] == [2]


REQUIRED = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=100)


def write(tmp_path, cfg, gen=None):
    (tmp_path / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if gen is not None:
        (tmp_path / "generation_config.json").write_text(gen if isinstance(gen, str) else json.dumps(gen))
    return run("config", tmp_path)


# transformers class defaults for keys absent from config.json
@pytest.mark.parametrize("mt,hkv,hd,maxpos,sw,bos,eos", [
    ("llama", 4, 16, 2048, 0, 1, [2]),
    ("mistral", 8, 16, 131072, 4096, 1, [2]),
    ("qwen2", 32, 16, 32768, 0, -1, []),
    ("qwen3", 32, 128, 32768, 0, -1, []),
])
def test_defaults(tmp_path, mt, hkv, hd, maxpos, sw, bos, eos):
    cfg = dict(REQUIRED, model_type=mt)
    if hkv > 4:  # the class default Hkv must divide H
        cfg.update(num_attention_heads=32, hidden_size=512)
    rc, c = write(tmp_path, cfg)
    assert rc == OK, c
    assert (c["num_key_value_heads"], c["head_dim"], c["max_position_embeddings"]) == (hkv, hd, maxpos)
    assert (c["sliding_window"], c["bos_token_id"], c["eos_token_id"]) == (sw, bos, eos)
    assert c["rms_norm_eps"] == pytest.approx(1e-6) and c["rope_theta"] == 10000.0
    assert not c["tie_word_embeddings"] and c["torch_dtype"] == "auto"
    assert c["attention_bias"] == (mt == "qwen2") and c["qk_norm"] == (mt == "qwen3")


def test_null_kv_heads_and_head_dim_derive(tmp_path):
    rc, c = write(tmp_path, dict(REQUIRED, model_type="qwen3", num_key_value_heads=None, head_dim=None))
    assert rc == OK and (c["num_key_value_heads"], c["head_dim"]) == (4, 16)


def test_qwen3_attention_bias_from_config(tmp_path):
    rc, c = write(tmp_path, dict(REQUIRED, model_type="qwen3", num_key_value_heads=2, attention_bias=True))
    assert rc == OK and c["attention_bias"]


def test_linear_rope(tmp_path):
    rc, c = write(tmp_path, dict(REQUIRED, model_type="llama", rope_scaling={"type": "linear", "factor": 4.0}))
    assert rc == OK and c["rope_type"] == "linear"
    np.testing.assert_allclose(c["inv_freq"], hf_inv_freq(16, 10000.0, {"type": "linear", "factor": 4.0}), rtol=2e-6)


@pytest.mark.parametrize("mt", ["gpt2", "deepseek_v3"])
def test_unsupported_model_type(tmp_path, mt):
    rc, js = write(tmp_path, dict(REQUIRED, model_type=mt))
    assert rc == UNSUPPORTED
    assert js["error"] == (f"model_type '{mt}' in {tmp_path}/config.json is not supported; "
                           "supported: llama, mistral, qwen2, qwen3, qwen3_moe, mixtral")


BAD = [
    ("missing_hidden_size", {k: v for k, v in REQUIRED.items() if k != "hidden_size"}, "hidden_size"),
    ("string_vocab", dict(REQUIRED, vocab_size="100"), "vocab_size"),
    ("zero_layers", dict(REQUIRED, num_hidden_layers=0), "num_hidden_layers"),
    ("heads_not_divisible", dict(REQUIRED, num_key_value_heads=3), "num_key_value_heads"),
    ("eos_string", dict(REQUIRED, eos_token_id="2"), "eos_token_id"),
    ("llama3_missing_low", dict(REQUIRED, rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 8192}), "low_freq_factor"),
    ("rope_scaling_list", dict(REQUIRED, rope_scaling=[1]), "rope_scaling"),
    ("tie_string", dict(REQUIRED, tie_word_embeddings="yes"), "tie_word_embeddings"),
    ("negative_eps", dict(REQUIRED, rms_norm_eps=-1), "rms_norm_eps"),
    ("no_model_type", dict(REQUIRED), "model_type"),
]


@pytest.mark.parametrize("name,cfg,field", BAD, ids=[b[0] for b in BAD])
def test_bad_field(tmp_path, name, cfg, field):
    cfg = dict(cfg)
    if name != "no_model_type":
        cfg.setdefault("model_type", "llama")
    rc, js = write(tmp_path, cfg)
    assert rc == FORMAT, js
    assert f"{tmp_path}/config.json" in js["error"] and field in js["error"]


def test_unsupported_rope_type(tmp_path):
    rc, js = write(tmp_path, dict(REQUIRED, model_type="llama", rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    assert rc == UNSUPPORTED and "yarn" in js["error"]


def test_invalid_json(tmp_path):
    rc, js = write(tmp_path, '{"model_type": "llama", ')
    assert rc == FORMAT and "config.json" in js["error"] and "JSON" in js["error"]


def test_not_an_object(tmp_path):
    rc, js = write(tmp_path, '[1, 2]')
    assert rc == FORMAT and "config.json" in js["error"]


def test_missing_config(tmp_path):
    rc, js = run("config", tmp_path / "nope")
    assert rc == IO and "config.json" in js["error"]


def test_bad_generation_config(tmp_path):
    rc, js = write(tmp_path, dict(REQUIRED, model_type="llama"), gen="{oops")
    assert rc == FORMAT and "generation_config.json" in js["error"]
    rc, js = write(tmp_path, dict(REQUIRED, model_type="llama"), gen={"top_k": "many"})
    assert rc == FORMAT and "generation_config.json" in js["error"] and "top_k" in js["error"]


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def test_moe_configs_as_transformers_wrote_them():
    """The MoE fixtures' config.json, written by transformers 5 (which names qwen3_moe's expert count
    num_local_experts), read with the fields HF's sparse blocks use."""
    rc, q = run("config", os.path.join(FIXTURES, "qwen3moe-tiny"))
    assert rc == OK, q
    assert q["model_type"] == "qwen3_moe" and q["qk_norm"] and q["head_dim"] == 32
    assert q["moe"] == {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                        "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [1], "sparse_layers": 1}
    rc, m = run("config", os.path.join(FIXTURES, "mixtral-tiny"))
    assert rc == OK, m
    assert m["model_type"] == "mixtral" and not m["qk_norm"] and m["sliding_window"] == 0
    assert m["moe"] == {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 96,
                        "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "sparse_layers": 2}


def test_moe_defaults_and_errors(tmp_path):
    rc, js = write(tmp_path, dict(REQUIRED, model_type="qwen3_moe", num_experts=16, decoder_sparse_step=2))
    assert rc == OK, js
    assert js["moe"]["num_experts_per_tok"] == 8 and js["moe"]["moe_intermediate_size"] == 768
    assert js["moe"]["norm_topk_prob"] is False and js["moe"]["sparse_layers"] == REQUIRED["num_hidden_layers"] // 2
    assert js["head_dim"] == REQUIRED["hidden_size"] // REQUIRED["num_attention_heads"]  # transformers 5: E/H
    rc, js = write(tmp_path, dict(REQUIRED, model_type="mixtral", num_local_experts=2, num_experts_per_tok=3))
    assert rc == FORMAT and "num_experts_per_tok" in js["error"], js
    rc, js = write(tmp_path, dict(REQUIRED, model_type="qwen3_moe", mlp_only_layers=[300]))
    assert rc == FORMAT and "mlp_only_layers" in js["error"], js
