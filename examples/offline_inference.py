"""Offline batched generation with cllm's vLLM-style API (one GPU or the CPU).

    python examples/offline_inference.py [--model DIR|ORG/NAME] [--device auto|cpu|cuda]
"""
import argparse
import os

from cllm import LLM, SamplingParams

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "stories260K")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=BUNDLED, help="checkpoint directory or Hugging Face repo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    prompts = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They"]
    sampling_params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    llm = LLM(model=args.model, device=args.device)
    for output in llm.generate(prompts, sampling_params):
        print(f"Prompt: {output.prompt!r}, Generated text: {output.outputs[0].text!r}")


if __name__ == "__main__":
    main()
