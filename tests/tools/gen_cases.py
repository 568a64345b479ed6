#!/usr/bin/env python3
"""Generate tests/tools/cases.json: "model outputs" that contain tool calls,
made by rendering assistant messages with tool_calls through the models' real
chat templates with Python jinja2 (configured like transformers'
apply_chat_template), and the calls/content vLLM's tool parsers recover from
them (the calls are the messages' own tool_calls: outside truth).

Templates: hermes   = /work/shared/tokenizers/minimind (Qwen3 template, <tool_call> JSON)
           mistral  = /work/shared/tokenizers/mistral-v0.3 (Mistral-7B-Instruct-v0.3)
           llama3_json = Llama 3.1's JSON tool-call format as Meta's model card and
                     Llama-3.1-Instruct's chat template write an assistant tool call:
                     {"name": NAME, "parameters": ARGUMENTS} (the shared llama3
                     tokenizer's template has no tools, so the text is formed here).
The output text of an assistant message is render(messages + [assistant]) minus
render(messages, add_generation_prompt=True), minus the end-of-turn token
(<|im_end|>\\n, </s>, <|eot_id|>), i.e. what the model generates before its stop token.
Expected content follows vLLM: the text before the first tool-call marker
(null when empty); llama3_json: null.

Usage: python3 tests/tools/gen_cases.py /work/shared > tests/tools/cases.json"""
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
USER = [{"role": "user", "content": "What is the weather in Paris and in Tokyo?"}]

ARGS = [
    {"city": "Paris", "unit": "c"},
    {"city": "Tōkyō 東京", "days": 3, "ratio": 0.1, "big": 12345678901, "neg": -2.5e-7, "ok": True, "none": None},
    {"q": "quote \" backslash \\ newline \n tab \t brace } bracket ] </tool_call> [TOOL_CALLS]",
     "nested": {"list": [1, [2, {"x": []}], {}], "empty": ""}},
    {},
]


def call(i, name, args, string_args=False):
    return {"id": "call%05d" % i + "abcd"[: 9 - len("call%05d" % i)], "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if string_args else args}}


def output(src, msg, ctx, end):
    before = env.from_string(src).render(messages=USER, add_generation_prompt=True, **ctx)
    full = env.from_string(src).render(messages=USER + [msg], add_generation_prompt=False, **ctx)
    assert full.startswith(before), "template does not extend the generation prompt"
    out = full[len(before):]
    assert out.endswith(end), repr(out[-40:])
    return out[: -len(end)]


def case(parser, name, text, calls, content):
    return {"parser": parser, "name": name, "output": text, "calls": calls, "content": content}


def main():
    shared = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    tok = lambda d: json.load(open(os.path.join(shared, "tokenizers", d, "tokenizer_config.json")))
    cases = []

    qwen = tok("minimind")["chat_template"]
    ctx = {"tools": [WEATHER], "bos_token": "", "eos_token": "<|im_end|>"}
    hermes_msgs = [
        ("one_call", None, [("get_weather", ARGS[0])]),
        ("content_two_calls", "Let me check both cities.", [("get_weather", ARGS[0]), ("get_weather", ARGS[1])]),
        ("escapes_nested", None, [("search", ARGS[2])]),
        ("empty_args_three_calls", "ok", [("a", ARGS[3]), ("b_2", ARGS[0]), ("c", ARGS[1])]),
        ("string_args", None, [("get_weather", ARGS[1])]),
        ("plain_content", "No tools needed: 1 < 2 and <tool is not a tag.", []),
    ]
    for name, content, calls in hermes_msgs:
        msg = {"role": "assistant", "content": content}
        if calls:
            msg["tool_calls"] = [call(i, n, a, string_args=(name == "string_args")) for i, (n, a) in enumerate(calls)]
        text = output(qwen, msg, ctx, "<|im_end|>\n")
        # the generation prompt ends with an empty think block; the model's text follows it
        marker = text.find("<tool_call>")
        exp_content = (text if marker < 0 else text[:marker]) or None
        cases.append(case("hermes", name, text, [{"name": n, "arguments": a} for n, a in calls], exp_content))

    mistral = tok("mistral-v0.3")["chat_template"]
    ctx = {"tools": [WEATHER], "bos_token": "<s>", "eos_token": "</s>"}
    for name, calls in [("one_call", [("get_weather", ARGS[0])]),
                        ("two_calls", [("get_weather", ARGS[1]), ("search", ARGS[2])]),
                        ("empty_args", [("ping", ARGS[3])])]:
        msg = {"role": "assistant", "content": None,
               "tool_calls": [call(i, n, a) for i, (n, a) in enumerate(calls)]}
        text = output(mistral, msg, ctx, "</s>")
        marker = text.find("[TOOL_CALLS]")
        cases.append(case("mistral", name, text, [{"name": n, "arguments": a} for n, a in calls],
                          text[:marker] or None))
    text = output(mistral, {"role": "assistant", "content": "It is sunny [really]."}, ctx, "</s>")
    cases.append(case("mistral", "plain_content", text, [], text))

    def llama_call(n, a):  # Llama-3.1-Instruct's template: '{"name": "' + name + '", "parameters": ' + args|tojson + '}'
        return '{"name": "' + n + '", "parameters": ' + json.dumps(a, ensure_ascii=False) + "}"
    singles = []
    for name, n, a in [("one_call", "get_weather", ARGS[0]), ("unicode_args", "get_weather", ARGS[1]),
                       ("escapes_nested", "search", ARGS[2]), ("empty_args", "ping", ARGS[3])]:
        text = llama_call(n, a)
        singles.append((text, n, a))
        cases.append(case("llama3_json", name, text, [{"name": n, "arguments": a}], None))
    # several calls: vLLM's llama3_json parser reads JSON objects separated by "; "
    text = "; ".join(t for t, _, _ in singles[:3])
    cases.append(case("llama3_json", "three_calls", text, [{"name": n, "arguments": a} for _, n, a in singles[:3]],
                      None))
    text = "<|python_tag|>" + singles[1][0]
    cases.append(case("llama3_json", "python_tag", text, [{"name": singles[1][1], "arguments": singles[1][2]}], None))
    text = "The answer is {not json}."
    cases.append(case("llama3_json", "plain_content", text, [], text))
    json.dump(cases, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


main()
