"""Hugging Face reference for tests/lm_eval (run once, by hand; CI only reads golden.json):

    python3 -m venv /tmp/hfv && /tmp/hfv/bin/pip install torch transformers
    /tmp/hfv/bin/python tests/lm_eval/make_golden.py models/stories260K tests/lm_eval/golden.json

For the multiple-choice task, each choice's log-likelihood computed as
lm-evaluation-harness asks for it (TemplateAPI with tokenized requests:
context and context+continuation encoded without special tokens, the
continuation = the whole's tokens after the context's), scored by
transformers' LlamaForCausalLM in float32 on the CPU. For the generate_until
task, the greedy continuation of each prompt (encoded the same way, no BOS),
decoded as vLLM and cllm decode it (the text of prompt+output minus the text
of the prompt), cut at the first stop string. The tasks' data:
tests/lm_eval/tasks/*.jsonl; their settings: the constants below (also in
test_lm_eval.py)."""
import json
import sys

import torch
import transformers

UNTIL = ["\n"]          # generate_until stop strings (plus the EOS token)
MAX_GEN_TOKS = 32
TARGET_DELIMITER = " "


def main(model_dir, out):
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731 - lm-eval's tok_encode
    here = __file__.rsplit("/", 1)[0]
    golden = {"model": model_dir, "transformers": transformers.__version__, "torch": torch.__version__,
              "until": UNTIL, "max_gen_toks": MAX_GEN_TOKS, "mc": [], "gen": []}
    with open(f"{here}/tasks/mc.jsonl") as f:
        for line in f:
            doc = json.loads(line)
            item = {"context": doc["context"], "choices": doc["choices"], "ids": [], "loglik": [], "is_greedy": []}
            for choice in doc["choices"]:
                ctx, cont = doc["context"], TARGET_DELIMITER + choice
                whole, ctx_enc = enc(ctx + cont), enc(ctx)
                cont_enc = whole[len(ctx_enc):]
                ids = torch.tensor([ctx_enc + cont_enc])
                with torch.no_grad():
                    logp = torch.log_softmax(model(ids).logits[0].double(), -1)
                pos = range(len(ctx_enc) - 1, len(ctx_enc) + len(cont_enc) - 1)
                ll = sum(float(logp[p, t]) for p, t in zip(pos, cont_enc))
                greedy = all(int(logp[p].argmax()) == t for p, t in zip(pos, cont_enc))
                item["ids"].append([ctx_enc, cont_enc])
                item["loglik"].append(ll)
                item["is_greedy"].append(greedy)
            golden["mc"].append(item)
    with open(f"{here}/tasks/gen.jsonl") as f:
        for line in f:
            prompt = json.loads(line)["prompt"]
            ids = enc(prompt)
            with torch.no_grad():
                out_ids = model.generate(torch.tensor([ids]), max_new_tokens=MAX_GEN_TOKS, do_sample=False,
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0].tolist()
            gen = out_ids[len(ids):]
            if tok.eos_token_id in gen:
                gen = gen[:gen.index(tok.eos_token_id)]
            text = tok.decode(ids + gen, skip_special_tokens=True)[len(tok.decode(ids, skip_special_tokens=True)):]
            for stop in UNTIL:
                text = text.split(stop)[0]
            golden["gen"].append({"prompt": prompt, "ids": ids, "output_ids": gen, "text": text})
    with open(out, "w") as f:
        json.dump(golden, f, indent=1)
    print(f"wrote {out}: {len(golden['mc'])} multiple-choice items, {len(golden['gen'])} generations")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
