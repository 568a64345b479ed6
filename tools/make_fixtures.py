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
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
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
