"""Tensor parallelism: the model sharded over several GPUs (or CPU processes).

cllm starts the other ranks itself (`cllm worker` processes, the executable
shipped in the package); on CPU they talk over TCP, on CUDA over NCCL. The
greedy text is the same as on one rank.

    python examples/tensor_parallel.py [--model DIR] [--tensor-parallel-size 2] [--device auto|cpu|cuda]
"""
import argparse
import os

from cllm import LLM, SamplingParams

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "stories260K")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=BUNDLED)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tensor-parallel-size", "-tp", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    llm = LLM(model=args.model, device=args.device, tensor_parallel_size=args.tensor_parallel_size)
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    for output in llm.generate(["Once upon a time", "The little dog"], greedy):
        print(f"Prompt: {output.prompt!r}, Generated text: {output.outputs[0].text!r}")
    for s in llm.llm_engine.get_distributed_stats():
        if s["name"] == "tp":
            ar = s["ops"]["all_reduce"]
            print(f"rank {s['rank']}: {ar['calls']} all-reduces, {ar['bytes']} bytes, {ar['time_s'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
