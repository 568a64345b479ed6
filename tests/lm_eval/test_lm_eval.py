"""EleutherAI lm-evaluation-harness (PyPI `lm-eval`, model `local-completions`
with the server's own tokenizer endpoints) against `cllm serve` on two tasks
of our own (tasks/*.jsonl): a multiple-choice task scored from echoed prompt
logprobs, and a generate_until task (greedy, stop at a newline). Every
choice's log-likelihood as lm-eval received it must equal Hugging Face
transformers' fp32 value (golden.json, made by make_golden.py) within 1e-4,
its is_greedy flag too, and every generation must equal HF's greedy text."""
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyhelpers"))
from cllm_procs import MODEL_DIR, Server  # noqa: E402

TASKS = {
    "cllm_mc": """task: cllm_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}/mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
""",
    "cllm_gen": """task: cllm_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}/gen.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: ""
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 32
  do_sample: false
metric_list:
  - metric: exact_match
""",
}


def samples(out, task):
    (path,) = glob.glob(os.path.join(out, "**", f"samples_{task}_*.jsonl"), recursive=True)
    with open(path) as f:
        return sorted((json.loads(line) for line in f), key=lambda d: d["doc_id"])


def test_lm_eval_matches_transformers(tmp_path):
    golden = json.load(open(os.path.join(HERE, "golden.json")))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, text in TASKS.items():
        (tasks / f"{name}.yaml").write_text(text.format(data=os.path.join(HERE, "tasks")))
    s = Server(MODEL_DIR, extra=["--max-model-len", "512"])
    try:
        # the server tokenizes as transformers does (lm-eval's "remote" tokenizer asks /tokenize)
        for item in golden["mc"]:
            st, _, body = s.request("POST", "/tokenize", {"prompt": item["context"], "add_special_tokens": False})
            assert st == 200 and json.loads(body)["tokens"] == item["ids"][0][0], item["context"]
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        out = tmp_path / "out"
        args = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args",
                f"model=stories,base_url={s.url}/v1/completions,tokenizer_backend=remote,tokenized_requests=True,"
                "max_retries=1,timeout=120", "--tasks", "cllm_mc,cllm_gen", "--include_path", str(tasks),
                "--log_samples", "--output_path", str(out), "--batch_size", "1"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    finally:
        assert s.stop() == 0
    mc = samples(out, "cllm_mc")
    assert len(mc) == len(golden["mc"])
    worst = 0.0
    for doc, ref in zip(mc, golden["mc"]):
        got = [(float(ll), greedy in (True, "True")) for ll, greedy in doc["filtered_resps"]]
        for (ll, greedy), ref_ll, ref_greedy, choice in zip(got, ref["loglik"], ref["is_greedy"], ref["choices"]):
            worst = max(worst, abs(ll - ref_ll))
            assert abs(ll - ref_ll) <= 1e-4, (ref["context"], choice, ll, ref_ll)
            assert greedy == ref_greedy, (ref["context"], choice)
    acc = sum(d["acc"] for d in mc) / len(mc)
    hf_acc = sum(max(range(len(r["loglik"])), key=lambda i: r["loglik"][i]) == 0 for r in golden["mc"]) / len(mc)
    assert acc == hf_acc, (acc, hf_acc)
    gen = samples(out, "cllm_gen")
    assert [d["filtered_resps"][0] for d in gen] == [g["text"] for g in golden["gen"]]
    print(f"lm-eval: acc {acc:.2f} (HF {hf_acc:.2f}), worst log-likelihood difference {worst:.2e}, "
          f"{len(gen)} generations equal")
