#!/usr/bin/env python3
"""Router margins of the MoE golden fixtures: which positions have a near-tie in expert choice.

A mixture-of-experts layer picks each token's top_k experts by its router logits. Where the
k-th and the (k+1)-th logit are closer than bf16 rounding can resolve, a bf16 run (the CUDA
backend) may pick the other expert, and that position's logits differ from the float32
reference by far more than rounding: a correct kernel, another (equally valid) choice. The
CUDA golden test (`test_golden_logits ... cuda --router-tie EPS`) leaves such positions out
of its error bound and says how many it left out; every other position is held to the bound.

This script recomputes each fixture's forward pass in float32 numpy from its safetensors
(Qwen3-MoE and Mixtral, following transformers' modeling_qwen3_moe.py / modeling_mixtral.py:
RMSNorm, rotary embedding, causal GQA attention, softmax router -> top_k -> renormalise,
SwiGLU experts), checks that its logits match the fixture's golden logits (transformers'
own, float32) to 1e-4, and writes FIXTURE/router_margins.safetensors:
  margin.N  F32 [T]: per position of input_ids.N, the smallest over MoE layers of
            (k-th largest - (k+1)-th largest router logit).
With --bf16 it also reruns with every weight and activation rounded to bf16 and prints the
positions whose expert set changes (a demonstration of the near-ties, not used by the test).

    python3 tools/moe_router_margins.py tests/fixtures/qwen3moe-tiny tests/fixtures/mixtral-tiny [--bf16]
Needs numpy and safetensors (pip).
"""
import json, os, sys

import numpy as np
from safetensors.numpy import load_file, save_file


def bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    u = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) & np.uint32(0xFFFF0000)).astype(np.uint32)
    return u.view(np.float32)


def forward(cfg, W, ids, round_bf16=False):
    """float32 logits [T, V] and margins [T] (min over MoE layers); optionally bf16-rounded."""
    r = bf16 if round_bf16 else (lambda a: a)
    if round_bf16:
        W = {k: bf16(v) for k, v in W.items()}
    mixtral = cfg["model_type"] == "mixtral"
    E, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or E // H
    eps, k_top = cfg["rms_norm_eps"], cfg["num_experts_per_tok"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    renorm = True if mixtral else cfg.get("norm_topk_prob", True)
    dense = set(cfg.get("mlp_only_layers", []))
    T = len(ids)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    f = np.outer(np.arange(T), inv)
    cos, sin = np.cos(np.concatenate([f, f], -1)), np.sin(np.concatenate([f, f], -1))

    def rope(q):
        h = hd // 2
        return q * cos[:, None] + np.concatenate([-q[..., h:], q[..., :h]], -1) * sin[:, None]

    def swiglu(h, g, u, d):
        a, b = h @ g.T, h @ u.T
        return r(a / (1 + np.exp(-a)) * b) @ d.T

    x = W["model.embed_tokens.weight"][ids]
    margin = np.full(T, np.inf, np.float32)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = r(rms(x, W[p + "input_layernorm.weight"]))
        q = r(h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, H, hd)
        k = r(h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, KV, hd)
        v = r(h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, KV, hd)
        if p + "self_attn.q_norm.weight" in W:
            q, k = rms(q, W[p + "self_attn.q_norm.weight"]), rms(k, W[p + "self_attn.k_norm.weight"])
        q, k = r(rope(q)), r(rope(k))
        o = np.zeros((T, H, hd), np.float32)
        causal = np.tril(np.ones((T, T), bool))
        for hh in range(H):
            s = q[:, hh] @ k[:, hh // (H // KV)].T / np.sqrt(hd)
            s = np.where(causal, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            o[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, hh // (H // KV)]
        x = r(x + r(r(o.reshape(T, -1)) @ W[p + "self_attn.o_proj.weight"].T))
        h = r(rms(x, W[p + "post_attention_layernorm.weight"]))
        if l in dense or (not mixtral and p + "mlp.gate.weight" not in W):
            y = swiglu(h, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"], W[p + "mlp.down_proj.weight"])
        else:
            m = p + ("block_sparse_moe." if mixtral else "mlp.")
            lg = h @ W[m + "gate.weight"].T
            srt = -np.sort(-lg, -1)
            margin = np.minimum(margin, srt[:, k_top - 1] - srt[:, k_top])
            pr = np.exp(lg - lg.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            top = np.argsort(-lg, -1, kind="stable")[:, :k_top]
            y = np.zeros_like(h)
            for t in range(T):
                w = pr[t, top[t]]
                if renorm:
                    w = w / w.sum()
                for e, we in zip(top[t], w):
                    ep = f"{m}experts.{e}."
                    names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
                    y[t] += we * swiglu(h[t:t + 1], *(W[ep + n + ".weight"] for n in names))[0]
            forward.tops.append(top)
        x = r(x + r(y))
    return rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T, margin


def main(argv):
    show_bf16 = "--bf16" in argv
    dirs = [a for a in argv if not a.startswith("--")]
    if not dirs:
        print(__doc__)
        return 2
    for d in dirs:
        cfg = json.load(open(os.path.join(d, "config.json")))
        W = {k: v.astype(np.float32) for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
        g = load_file(os.path.join(d, "golden.safetensors"))
        out = {}
        n = 0
        while f"input_ids.{n}" in g:
            ids = g[f"input_ids.{n}"].astype(np.int64)
            forward.tops = []
            logits, margin = forward(cfg, W, ids)
            err = float(np.abs(logits - g[f"logits.{n}"]).max())
            if err > 1e-4:
                print(f"{d} input_ids.{n}: numpy forward differs from the golden logits by {err:.3g}: not written")
                return 1
            out[f"margin.{n}"] = margin.astype(np.float32)
            order = np.argsort(margin)[:3]
            print(f"{d} input_ids.{n} T={len(ids)}: matches golden (max abs {err:.2g}); smallest router margins "
                  + ", ".join(f"pos {t}: {margin[t]:.4f}" for t in order))
            if show_bf16:
                tops32 = forward.tops
                forward.tops = []
                lb, _ = forward(cfg, W, ids, round_bf16=True)
                flips = sorted({int(t) for a, b in zip(tops32, forward.tops) for t in range(len(ids))
                                if set(a[t]) != set(b[t])})
                pe = np.abs(lb - g[f"logits.{n}"]).max(-1)
                print(f"    bf16-rounded run: expert set changes at positions {flips}; "
                      f"largest logit errors at {[int(t) for t in np.argsort(-pe)[:3]]}: "
                      f"{[round(float(e), 4) for e in np.sort(pe)[::-1][:3]]}")
            n += 1
        save_file(out, os.path.join(d, "router_margins.safetensors"))
        print(f"wrote {os.path.join(d, 'router_margins.safetensors')} ({n} sequences)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
