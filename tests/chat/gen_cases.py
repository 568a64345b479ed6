#!/usr/bin/env python3
"""Generate tests/chat/cases.json: expected chat template outputs from Python
jinja2 configured exactly like transformers' _compile_jinja_template
(ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), raise_exception, strftime_now, tojson =
json.dumps(ensure_ascii=False, ...)), rendered like apply_chat_template
(tools=None, documents=None, add_generation_prompt default False).

Usage: python3 tests/chat/gen_cases.py <shared_dir> > tests/chat/cases.json
Needs jinja2 (pip install jinja2); the C test itself does not."""
import json
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


def render(src, ctx):
    kw = dict(ctx)
    kw.setdefault("tools", None)
    kw.setdefault("documents", None)
    kw.setdefault("add_generation_prompt", False)
    try:
        return {"rendered": env.from_string(src).render(**kw)}
    except jinja2.exceptions.TemplateSyntaxError:
        return {"error": ""}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises exactly TemplateError: its message must match
        return {"error": str(e) if type(e) is jinja2.exceptions.TemplateError else ""}
    except Exception:
        return {"error": ""}


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                          "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {"name": "search", "description": "Search the web — quickly",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer", "default": 3},
                         "score": {"type": "number", "minimum": 0.5}}, "required": ["q"]}, "return": {"type": "string"}}}
CALL1 = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}
CALL1S = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
CALL2S = {"id": "call67890", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"météo\"}"}}

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    "multi_turn": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "2+2?"},
                   {"role": "assistant", "content": "4"}, {"role": "user", "content": "Thanks"}],
    "prefill": [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn moonlight"}],
    "non_ascii": [{"role": "user", "content": "Grüße! 你好 🌍 — «ça va?» \u00a0tab\tend"},
                  {"role": "assistant", "content": "Très bien 👍"}, {"role": "user", "content": "日本語で"}],
    "empty": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": " "}],
    "whitespace": [{"role": "user", "content": "\n\n  spaced \n"}, {"role": "assistant", "content": "  ok  "},
                   {"role": "user", "content": "\tnext"}],
    "think": [{"role": "user", "content": "Q?"},
              {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer."},
              {"role": "user", "content": "And?"}],
    "tool_call_obj": [{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": None, "tool_calls": [CALL1]},
                      {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21}"},
                      {"role": "assistant", "content": "It is 21°C."}],
    "tool_calls_str": [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather and search"},
                       {"role": "assistant", "content": None, "tool_calls": [CALL1S, CALL2S]},
                       {"role": "tool", "tool_call_id": "call12345", "content": "sunny"},
                       {"role": "tool", "tool_call_id": "call67890", "content": "résultats"},
                       {"role": "assistant", "content": "Sunny; found results."}, {"role": "user", "content": "ok"}],
    "tool_response_last": [{"role": "user", "content": "Weather?"},
                           {"role": "assistant", "content": None, "tool_calls": [CALL1S]},
                           {"role": "tool", "tool_call_id": "call12345", "content": "rain"}],
    "bad_alternation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "bad_role": [{"role": "user", "content": "a"}, {"role": "narrator", "content": "b"}],
    "bad_tool_id": [{"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": [dict(CALL1S, id="short")]}],
    "quotes": [{"role": "user", "content": "He said \"hi\" and 'bye' \\ backslash {{ not jinja }} {% nope %}"}],
}


def template_cases(shared):
    out = []
    for name in ["llama3", "mistral-v0.3", "minimind", "deepseek-r1-qwen-template"]:
        cfg = json.load(open(f"{shared}/tokenizers/{name}/tokenizer_config.json"))
        tok = lambda k: cfg[k]["content"] if isinstance(cfg.get(k), dict) else cfg.get(k, "")
        src = cfg["chat_template"]
        for conv_name, msgs in CONVERSATIONS.items():
            for agp in (True, False):
                for tools in (None, [WEATHER, SEARCH]):
                    if tools and conv_name not in ("single", "system", "tool_call_obj", "tool_calls_str", "multi_turn"):
                        continue
                    ctx = {"messages": msgs, "add_generation_prompt": agp, "bos_token": tok("bos_token"),
                           "eos_token": tok("eos_token")}
                    if tools:
                        ctx["tools"] = tools
                    case = {"name": f"{name}/{conv_name}/agp={agp}/tools={bool(tools)}", "template_ref": name,
                            "context": ctx}
                    case.update(render(src, ctx))
                    out.append(case)
        # minimind's open_thinking kwarg
        ctx = {"messages": CONVERSATIONS["single"], "add_generation_prompt": True, "open_thinking": True,
               "bos_token": tok("bos_token"), "eos_token": tok("eos_token")}
        case = {"name": f"{name}/extra_kwarg", "template_ref": name, "context": ctx}
        case.update(render(src, ctx))
        out.append(case)
    return out


UNIT = [
    # text and whitespace control
    "plain text only", "line1\nline2\n", "a\r\nb\rc", "  {% if true %}\n  x\n  {% endif %}\n  y",
    "{% if true %}  \nkeep{% endif %}", "a  {%- if true -%}  b  {%- endif -%}  c", "a {{- 'b' -}} c",
    "{# comment #}\nafter", "  {# indented comment #}\nx", "a {%+ if true %}b{% endif %}", "x\n    {%- set y = 1 %}\n z",
    "{% raw %}{{ not evaluated }}{% endraw %}", "{{ 'x' }}\n{{ 'y' }}\n", "{% for i in [1,2] %}\n  - {{ i }}\n{% endfor %}\n",
    "text {% if false %}no{% else %}yes{% endif %} more", "{{ '{{' }} and {{ '}}' }}", "{{ {'a': {'b': 1}} }}",
    # literals and printing
    "{{ 1 }} {{ -3 }} {{ 1.0 }} {{ 1.5e3 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 1_000 }}",
    "{{ true }} {{ True }} {{ none }} {{ None }} {{ false }}", "{{ 'a\\nb\\t\\'c\\' \\\"d\\\" \\u00e9 \\x41' }}",
    "{{ [1, 'a', none, true, 2.5, [], {}] }}", "{{ {'k': 'v', 'n': [1, {'x': none}]} }}", "{{ ('a',) }} {{ (1, 2) }} {{ () }}",
    "{{ ['it\\'s', 'say \"x\"', 'both \\' \"', 'back\\\\slash', 'nl\\n', '\\u00a0', 'é'] }}", "{{ 'adjacent' 'strings' }}",
    # arithmetic
    "{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}",
    "{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 ~ 4 }} {{ 1 + 1.5 }}",
    "{{ 'ab' * 3 }} {{ [1] * 3 }} {{ 'a' + 'b' }} {{ [1] + [2, 3] }} {{ 1 ~ 2 ~ 'x' ~ none ~ true }}",
    "{{ 1 / 0 }}", "{{ 'a' + 1 }}", "{{ true + 1 }}",
    # comparisons / logic
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 'abc' < 'abd' }} {{ [1,2] == [1,2] }} {{ 2 >= 2 }}",
    "{{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'z' not in 'abc' }}",
    "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 }} {{ not 0 }} {{ not [1] }} {{ none or [] }}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}]", "{{ 1 if 2 if 0 else 3 else 4 }}",
    # variables, attributes, undefined
    "{{ undefined_var }}|{{ undefined_var is defined }}|{{ undefined_var is undefined }}|{{ not undefined_var }}",
    "{{ d.a }} {{ d['a'] }} {{ d.missing }} {{ d.missing is defined }} {{ d.l[1] }} {{ d.l[-1] }} {{ d.l[5] is defined }}",
    "{{ d.missing.deeper }}", "{{ s[0] }}{{ s[-1] }} {{ d.l.0 }}", "{{ undefined_var.attr }}",
    "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{% for k in d %}{{ k }},{% endfor %}",
    # slicing
    "{{ s[1:3] }} {{ s[:2] }} {{ s[2:] }} {{ s[::-1] }} {{ s[-3:] }} {{ s[::2] }} {{ s[5:1:-1] }} {{ s[100:] }}|",
    "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[-2:] }} {{ xs[1:100] }} {{ xs[::3] }}",
    # for loops
    "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }} {% endfor %}",
    "{% for x in xs if x is odd %}{{ x }}:{{ loop.index }}:{{ loop.length }} {% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}", "{% for x in xs %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in xs %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in xs %}{{ loop.previtem }}>{{ loop.nextitem }} {% endfor %}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }} {% endfor %}", "{% for c in 'héllo' %}{{ c }}.{% endfor %}",
    "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }} {% endfor %}{% endfor %}",
    "{% for i in range(2, 10, 3) %}{{ i }}{% endfor %} {{ range(5) | list }} {{ range(5, 0, -2) | list }}",
    "{% set x = 0 %}{% for i in xs %}{% set x = x + i %}{% endfor %}{{ x }}",
    "{% for i in xs %}{% if loop.first %}{% set y = 5 %}{% endif %}{{ y }},{% endfor %}",
    "{% for x in none %}{% endfor %}",
    # set, namespace, macro, call, filter blocks
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}", "{% set ns = namespace(total=0, items=[]) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% endfor %}{{ ns.total }} {{ ns.items }}",
    "{% set ns = namespace() %}{% set ns.flag = true %}{{ ns.flag }}", "{% set x %}block {{ 1 + 1 }}{% endset %}[{{ x }}]",
    "{% set x | upper %}shout{% endset %}{{ x }}", "{% set d2 = {'a': 1} %}{% set d2.b = 2 %}",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', 'Hi') }} {{ greet(name='Cy', greeting='Yo') }}",
    "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}",
    "{% macro render_list(items) %}{% for i in items %}<{{ i }}>{% endfor %}{% endmacro %}{{ render_list(xs) }}",
    "{% filter upper %}hello {{ 'world' }}{% endfilter %}",
    # tests
    "{{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ 'a' is string }} {{ d is mapping }} {{ xs is sequence }} {{ 'a' is iterable }} {{ 5 is iterable }}",
    "{{ none is none }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ true is boolean }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }}",
    "{{ 'user' is equalto 'user' }} {{ 2 is eq 3 }} {{ 1 is lt 2 }} {{ 'A' is upper }} {{ 'a' is lower }} {{ 2 is in [1,2] }} {{ none is not none }}",
    "{{ xs | selectattr('x') | list }}", "{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}",
    "{{ msgs | rejectattr('role', 'eq', 'user') | list | length }}", "{{ xs | select('odd') | list }} {{ xs | reject('even') | list }}",
    "{{ msgs | map(attribute='missing', default='-') | list }}", "{{ ['a', 'B'] | map('upper') | join(',') }}",
    # filters
    "{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ s | length }} {{ xs | count }} {{ d | length }}",
    "{{ xs | first }} {{ xs | last }} {{ s | first }} {{ [] | first }}| {{ xs | join('-') }} {{ msgs | join(', ', attribute='role') }}",
    "{{ 'hello wORLD' | upper }} {{ 'HeLLo' | lower }} {{ 'hello big-world (x)y' | title }} {{ 'hELLO there' | capitalize }}",
    "{{ 'a-b-c' | replace('-', '+') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ undefined_var | default('dflt') }} {{ '' | default('e', true) }} {{ none | d('n') }}",
    "{{ 'abc' | list }} {{ 42 | string }} {{ '42' | int + 1 }} {{ '3.5' | float }} {{ 'x' | int }} {{ 3.9 | int }} {{ '7' | float }}",
    "{{ d | items | list }} {{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ msgs | sort(attribute='role') | map(attribute='role') | list }}",
    "{{ [1, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }} {{ xs | reverse | list }} {{ 'abc' | reverse }}",
    "{{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 2.7 | round(0, 'floor') }} {{ 2.1 | round(0, 'ceil') }} {{ -3 | abs }} {{ -2.5 | abs }} {{ 5 | round }}",
    "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(4, true) }}|{{ 'x\\n\\ny' | indent(2, blank=true) }}",
    "{{ '<b>' | safe }} {{ '<a href=\"x\">&' | e }} {{ xs | sum }} {{ xs | min }} {{ xs | max }} {{ 'hello world foo' | wordcount }}",
    "{{ '%s and %d' | format('x', 3) }} {{ '%s!' % 'hi' }} {{ d | dictsort }}",
    # tojson
    "{{ d | tojson }}", "{{ d | tojson(indent=2) }}", "{{ tools | tojson }}", "{{ tools[0] | tojson(indent=4) }}",
    "{{ {'b': 1, 'a': [1.5, true, none, 'é\"\\n\\u0001']} | tojson(sort_keys=true) }}", "{{ [] | tojson }}{{ {} | tojson(indent=2) }}{{ [[]] | tojson(indent=2) }}",
    "{{ d | tojson(separators=(',', ':')) }}", "{{ 'x' | tojson }} {{ 1.0 | tojson }} {{ 1e100 | tojson }}", "{{ undefined_var | tojson }}",
    # string methods
    "{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ '\\n\\nx\\n'.strip('\\n') }}|{{ 'xyhixy'.strip('xy') }}",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x'.split('x') }}",
    "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.upper() }} {{ 'HeLLo'.lower() }}",
    "{{ 'a-b'.replace('-', '_') }} {{ 'hello world'.title() }} {{ 'hello'.capitalize() }} {{ 'héllo'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'hello'.rfind('l') }}",
    "{{ '{} and {}'.format('a', 'b') }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='N') }} {{ ', '.join(['a', 'b']) }}",
    "{{ 'a\\nb\\r\\nc'.splitlines() }} {{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ '  '.isspace() }}",
    "{{ msgs[0].content.startswith('Hi') }} {{ (msgs | last).content.split(' ')[0] }}",
    "{% set c = '<think>\\nr\\n</think>\\n\\nans' %}{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[-1].lstrip('\\n') }}",
    # errors
    "{{ raise_exception('custom failure: ' ~ 42) }}", "{% if msgs | length > 1 %}{{ raise_exception('Too many messages') }}{% endif %}",
    "{{ xs.append(4) }}", "{{ 1 < 'a' }}", "{% for %}", "{{ }}", "{% endif %}", "{{ 1 +* 2 }}", "{% if x %}",
    # misc globals
    "{{ namespace(a=1).a }} {{ dict(a=1, b=2) }} {{ range(3) | list }}",
]

UNIT_CTX = {"d": {"a": 1, "l": [10, 20, 30], "s": "str"}, "xs": [1, 2, 3, 4, 5], "s": "héllo",
            "msgs": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"},
                     {"role": "user", "content": "Bye now"}],
            "tools": [WEATHER]}


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else "../shared"
    cases = template_cases(shared)
    for i, src in enumerate(UNIT):
        case = {"name": f"unit{i}", "template": src, "context": UNIT_CTX}
        case.update(render(src, UNIT_CTX))
        cases.append(case)
    json.dump({"generator": "tests/chat/gen_cases.py with jinja2 " + jinja2.__version__, "templates": {}, "cases": cases},
              sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
