#!/usr/bin/env python3
"""`cllm tokenize --chat` against Hugging Face: for every case of
shared/golden/chat_dev.json whose tokenizer has a tokenizer.json, the printed
text must equal transformers' apply_chat_template rendering (or the command
must fail where transformers raises), and the ids must equal PyPI
`tokenizers`' encoding of that text without added special tokens (what
apply_chat_template(tokenize=True) does).

usage: test_tokenize_chat.py CLLM SHARED_DIR"""
import json, os, subprocess, sys, tempfile
from tokenizers import Tokenizer

cllm, shared = sys.argv[1], sys.argv[2]
golden = json.load(open(os.path.join(shared, "golden", "chat_dev.json")))
fails = checked = 0
with tempfile.TemporaryDirectory() as tmp:
    for name, cases in golden.items():
        tdir = os.path.join(shared, "tokenizers", name)
        if not os.path.exists(os.path.join(tdir, "tokenizer.json")):
            continue  # template-only folder: nothing to tokenize with
        hf = Tokenizer.from_file(os.path.join(tdir, "tokenizer.json"))
        for i, case in enumerate(cases):
            inp = dict(case["input"])
            gen = inp.pop("add_generation_prompt", False)
            path = os.path.join(tmp, f"{name}_{i}.json")
            json.dump(inp, open(path, "w"))
            cmd = [cllm, "tokenize", "--model", tdir, "--chat", path] + (["--add-generation-prompt"] if gen else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            checked += 1
            if "error" in case:
                if r.returncode == 0:
                    fails += 1
                    print(f"FAIL {name}[{i}]: transformers raises ({case['error']!r}) but cllm rendered")
                continue
            if r.returncode != 0:
                fails += 1
                print(f"FAIL {name}[{i}]: exit {r.returncode}: {r.stderr.strip()}")
                continue
            out = json.loads(r.stdout)
            want_ids = hf.encode(case["rendered"], add_special_tokens=False).ids
            if out["text"] != case["rendered"]:
                fails += 1
                print(f"FAIL {name}[{i}]: text\n  got  {out['text']!r}\n  want {case['rendered']!r}")
            elif out["ids"] != want_ids:
                fails += 1
                print(f"FAIL {name}[{i}]: ids differ from tokenizers: {out['ids'][:20]} vs {want_ids[:20]}")
    # bad input: not a list of messages, missing file
    bad = os.path.join(tmp, "bad.json")
    open(bad, "w").write('{"messages": 3}')
    for args in (["--chat", bad], ["--chat", os.path.join(tmp, "missing.json")]):
        r = subprocess.run([cllm, "tokenize", "--model", os.path.join(shared, "tokenizers", "llama3")] + args,
                           capture_output=True, text=True)
        checked += 1
        if r.returncode == 0 or not r.stderr.strip() or "Traceback" in r.stderr:
            fails += 1
            print(f"FAIL bad input {args}: exit {r.returncode}, stderr {r.stderr!r}")
print(f"{checked - fails} passed, {fails} failed")
sys.exit(1 if fails or checked < 10 else 0)
