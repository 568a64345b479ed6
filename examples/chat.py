"""Chat: conversations rendered by the model's chat template (LLM.chat).

Models with a chat_template in tokenizer_config.json need nothing more; for
one without (the bundled stories260K) pass a Jinja template file, as vLLM's
--chat-template:

    python examples/chat.py [--model DIR] [--chat-template examples/template_simple.jinja]
"""
import argparse
import os

from cllm import LLM, SamplingParams

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.join(HERE, "..", "models", "stories260K")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=BUNDLED)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--chat-template", default=None, help="a Jinja file (default: the model's own template; "
                    "examples/template_simple.jinja when the model has none)")
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    llm = LLM(model=args.model, device=args.device)
    template = None
    path = args.chat_template
    if path is None and llm.get_tokenizer().chat_template is None:
        path = os.path.join(HERE, "template_simple.jinja")
    if path is not None:
        with open(path, encoding="utf-8") as f:
            template = f.read()

    sampling_params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    conversation = [
        {"role": "system", "content": "You tell short stories."},
        {"role": "user", "content": "Tell me about a dog."},
    ]
    out = llm.chat(conversation, sampling_params, chat_template=template, use_tqdm=False)[0]
    print(f"Prompt: {out.prompt!r}")
    print(f"Reply: {out.outputs[0].text!r}")

    # several conversations at once, batched by the engine
    conversations = [[{"role": "user", "content": topic}] for topic in ("A cat.", "A big tree.")]
    for out in llm.chat(conversations, sampling_params, chat_template=template, use_tqdm=False):
        print(f"Reply: {out.outputs[0].text!r}")


if __name__ == "__main__":
    main()
