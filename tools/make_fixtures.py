#!/usr/bin/env python3
"""Make golden-logit fixtures with Hugging Face transformers (the reference).

Runs on the GPU machine (torch + transformers there). Two modes:

  tiny (default): for each supported family, a random-weight float32 checkpoint
  small enough to commit (llama3-tiny, qwen3-tiny, qwen2.5-tiny, mistral-tiny
  from shared/device/make_checkpoint.py with a 512-token vocabulary and the
  stories260K tokenizer), plus golden.safetensors holding, for N = 0, 1, ...,
  `input_ids.N` (I32 [T]) and `logits.N` (F32 [T, V]): transformers' fp32
  logits of every position (teacher forcing), eager attention, no TF32.

      python3 tools/make_fixtures.py --make-checkpoint PATH/make_checkpoint.py \
          --tokenizer models/stories260K --out tests/fixtures

  moe: the mixture-of-experts families (qwen3moe-tiny with one dense layer,
  mixtral-tiny), built by transformers itself (AutoModelForCausalLM.from_config
  with a fixed seed, float32) and written with save_pretrained, which stores
  the Hub's per-expert layout (`mlp.experts.N.gate_proj`, `block_sparse_moe.
  experts.N.w1`) even where transformers 5 fuses the experts in memory; runs on
  any machine with torch (CPU is enough):

      python3 tools/make_fixtures.py --moe --tokenizer models/stories260K --out tests/fixtures

  large: golden logits of an existing checkpoint directory in its own dtype
  (bf16 for the 8B presets), random prompt ids of the given lengths:

      python3 tools/make_fixtures.py --golden-only DIR --lengths 16,128,512 --dtype bfloat16
"""
import argparse, os, shutil, subprocess, sys, tempfile

TINY = {
    # name: make_checkpoint preset and overrides (E=128; qwen3 keeps head_dim 64 so H*D=256 != E)
    "llama3-tiny": ("llama3-tiny", ["hidden_size=128", "intermediate_size=384"]),
    "qwen3-tiny": ("qwen3-tiny", ["hidden_size=128", "intermediate_size=384", "head_dim=64"]),
    "qwen2.5-tiny": ("qwen2.5-tiny", ["hidden_size=128", "intermediate_size=384"]),
    "mistral-tiny": ("mistral-tiny", ["hidden_size=128", "intermediate_size=384"]),
}
COMMON = ["vocab_size=512", "bos_token_id=1", "eos_token_id=2"]
MOE = {
    # name: (model_type, config overrides); E=128, 2 layers, GQA 4/2
    "qwen3moe-tiny": ("qwen3_moe", dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                                        intermediate_size=192, norm_topk_prob=True, decoder_sparse_step=1,
                                        mlp_only_layers=[1], head_dim=32)),
    "mixtral-tiny": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=96)),
}


def make_moe(name, model_type, overrides, tokenizer, out_root, seed=1):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(model_type, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, vocab_size=512, bos_token_id=1, eos_token_id=2,
                               max_position_embeddings=4096, tie_word_embeddings=False, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # bigger than the default init so that routing is not a near tie
        for n, t in model.named_parameters():
            if "norm" in n:
                t.copy_(1.0 + 0.1 * torch.randn_like(t))
            else:
                t.copy_(0.05 * torch.randn_like(t))
    out = os.path.join(out_root, name)
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(tokenizer, f), out)
    return out


def golden(model_dir, lengths, dtype_name, out_path, seed=0, vocab_limit=None):
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = getattr(torch, dtype_name)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager").to(dev).eval()
    V = model.config.vocab_size
    hi = min(V, vocab_limit or V)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, T in enumerate(lengths):
        ids = torch.randint(3, hi, (T,), generator=g)
        ids[0] = model.config.bos_token_id if model.config.bos_token_id is not None and model.config.bos_token_id < V else ids[0]
        with torch.no_grad():
            logits = model(ids[None].to(dev)).logits[0].float().cpu()
        tensors[f"input_ids.{i}"] = ids.to(torch.int32).contiguous()
        tensors[f"logits.{i}"] = logits.contiguous()
    save_file(tensors, out_path)
    print(f"golden: {out_path}: {len(lengths)} prompts, lengths {lengths}, V={V}, dtype {dtype_name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-checkpoint", help="path of shared/device/make_checkpoint.py")
    ap.add_argument("--tokenizer", default="models/stories260K")
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--golden-only", help="checkpoint dir: write DIR/golden.safetensors only")
    ap.add_argument("--lengths", default="1,7,37,100")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--vocab-limit", type=int, default=None, help="draw prompt ids below this")
    ap.add_argument("--golden-name", default="golden.safetensors", help="file name in --golden-only mode")
    ap.add_argument("--moe", action="store_true", help="make the mixture-of-experts fixtures only")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    if a.moe:
        for name, (mt, ov) in MOE.items():
            out = make_moe(name, mt, ov, a.tokenizer, a.out)
            golden(out, lengths, "float32", os.path.join(out, "golden.safetensors"))
        return
    if a.golden_only:
        golden(a.golden_only, lengths, a.dtype, os.path.join(a.golden_only, a.golden_name),
               vocab_limit=a.vocab_limit)
        return
    if not a.make_checkpoint:
        sys.exit("--make-checkpoint is required in tiny mode")
    tokdir = tempfile.mkdtemp()
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(a.tokenizer, f), tokdir)
    for name, (preset, sets) in TINY.items():
        out = os.path.join(a.out, name)
        cmd = [sys.executable, a.make_checkpoint, "--preset", preset, "--out", out, "--tokenizer", tokdir,
               "--dtype", "float32", "--seed", "1"]
        for s in COMMON + sets:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True)
        golden(out, lengths, "float32", os.path.join(out, "golden.safetensors"))


if __name__ == "__main__":
    main()
