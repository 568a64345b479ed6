"""Streaming with the asyncio engine (AsyncLLM), for servers and UIs.

Each request is an async iterator of outputs; with output_kind DELTA each
carries only the new text. Several requests stream concurrently.

    python examples/streaming.py [--model DIR] [--device auto|cpu|cuda]
"""
import argparse
import asyncio
import os

from cllm import AsyncLLM, RequestOutputKind, SamplingParams

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "stories260K")


async def stream_one(engine: AsyncLLM, prompt: str, request_id: str, max_tokens: int) -> str:
    params = SamplingParams(temperature=0, max_tokens=max_tokens, output_kind=RequestOutputKind.DELTA)
    text = ""
    async for output in engine.generate(prompt, params, request_id=request_id):
        delta = output.outputs[0].text if output.outputs else ""
        text += delta
        print(f"[{request_id}] {delta!r}", flush=True)
    return text


async def main_async(args: argparse.Namespace) -> None:
    engine = AsyncLLM(model=args.model, device=args.device)
    try:
        prompts = ["Once upon a time", "The little dog"]
        texts = await asyncio.gather(*(stream_one(engine, p, f"req-{i}", args.max_tokens)
                                       for i, p in enumerate(prompts)))
        for p, t in zip(prompts, texts):
            print(f"Prompt: {p!r}, Generated text: {t!r}")
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=BUNDLED)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-tokens", type=int, default=32)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
