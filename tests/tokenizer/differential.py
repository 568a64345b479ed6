#!/usr/bin/env python3
"""Differential test: `cllm tokenize` against PyPI `tokenizers` (Tokenizer.from_file).

Generates seeded random strings (many scripts, combining marks, CJK, emoji with
ZWJ sequences, whitespace runs incl. \\t\\n\\r and unicode spaces, digits, code,
literal special-token text) and compares, for each tokenizer, the ids without
and with special tokens and decode(ids, skip_special_tokens=False).

usage: differential.py CLLM_BINARY SHARED_DIR
env:   CLLM_TOK_DIFF_N (strings per tokenizer, default 2000),
       CLLM_TOK_DIFF_SEED (default 1234)
"""
import json
import os
import random
import subprocess
import sys
import unicodedata

from tokenizers import Tokenizer

TOKENIZERS = ["llama3", "llama2", "mistral-v0.3", "minimind"]

WORDS = ["the", "The", "quick", "brown", "fox", "Once", "upon", "a", "time", "don't", "I'm", "we've",
         "HELLO", "x", "naïve", "café", "Straße", "über", "résumé", "façade", "Lily", "_init_", "snake_case",
         "camelCase", "URL", "https://example.com/a?b=c&d=e#f", "user@example.org", "1e10", "0x1F", "3.14159"]
CODE = ["def f(x):\n    return x**2", "for (int i = 0; i < n; ++i) { s += a[i]; }", "if x == 1:", "}", "{",
        "();", "=>", "!==", "<div class=\"a\">", "</div>", "#include <stdio.h>", "\\frac{a}{b}", "`code`",
        "$$", "...", "!!!", "???", "---", "___", "===", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_5|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "[TOOL_CALLS]",
            "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|begin_of_text",
            "<s", "s>", "<|im_start|", "[INST", "<0x41>", "▁", "▁▁", "Ġ", "Ċ"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\t\t", "\u00a0", "\u2000", "\u2003", "\u2009",
          "\u200a", "\u3000", "\u0085", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\u200b", "\u180e",
          "\u000b", "\u000c", "\ufeff"]
EMOJI = ["😀", "🚀", "🔥", "👍🏽", "🇺🇸", "🇯🇵", "👩\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "❤️", "🏳️\u200d🌈",
         "🧑🏿\u200d🦰", "✨", "☃", "🀄", "1️⃣"]
RANGES = [  # (lo, hi) code point ranges of various scripts
    (0x41, 0x5A), (0x61, 0x7A), (0x30, 0x39), (0x21, 0x2F), (0xC0, 0xFF), (0x100, 0x17F), (0x370, 0x3FF),
    (0x400, 0x4FF), (0x5D0, 0x5EA), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE5B), (0x1100, 0x11FF),
    (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF01, 0xFF5E), (0x2150, 0x218F),
    (0x0660, 0x0669), (0x06F0, 0x06F9), (0x0966, 0x096F), (0xFF10, 0xFF19), (0x2460, 0x24FF), (0x1D400, 0x1D7FF),
    (0x20000, 0x2A6DF), (0x1F300, 0x1FAFF), (0x2000, 0x206F), (0x2190, 0x22FF), (0xE000, 0xE0FF),
]
COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u0e31", "\u093f", "\u094d", "\u05b7", "\u064b", "\u20dd"]


def rand_cp(rng):
    # Only code points assigned in this Python's Unicode tables (14.0, the
    # version of Debian's PCRE2 10.42): HF's Oniguruma knows newer letters
    # (e.g. Egyptian Hieroglyphs Ext-A, Unicode 16) that PCRE2 10.42 does not
    # (a known, documented difference).
    while True:
        if rng.random() < 0.1:
            c = rng.randrange(0x20, 0x10FFFF)
        else:
            lo, hi = rng.choice(RANGES)
            c = rng.randint(lo, hi)
        if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn":
            return chr(c)


def rand_piece(rng):
    k = rng.random()
    if k < 0.22:
        return rng.choice(WORDS)
    if k < 0.34:
        return rng.choice(SPACES) * rng.choice([1, 1, 1, 2, 3])
    if k < 0.46:
        return "".join(rand_cp(rng) for _ in range(rng.randint(1, 6)))
    if k < 0.54:
        return rng.choice(CODE)
    if k < 0.62:
        return rng.choice(SPECIALS)
    if k < 0.70:
        return rng.choice(EMOJI)
    if k < 0.78:
        return rand_cp(rng) + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 3)))
    if k < 0.86:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if k < 0.90:
        return "x" * rng.randint(1, 80)
    if k < 0.93:
        return "\x00" if rng.random() < 0.3 else chr(rng.randint(1, 31))
    return rng.choice(WORDS).upper()


def rand_string(rng):
    n = rng.choice([0, 1, 1, 2, 3, 4, 6, 8, 12, 20])
    sep = rng.random() < 0.5
    parts = [rand_piece(rng) for _ in range(n)]
    return (" " if sep else "").join(parts)


def run_cllm(binary, model, texts, special):
    inp = "".join(json.dumps(t) + "\n" for t in texts)
    cmd = [binary, "tokenize", "--model", model, "--input", "-"] + (["--add-special-tokens"] if special else [])
    r = subprocess.run(cmd, input=inp.encode(), capture_output=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    out = [json.loads(line) for line in r.stdout.decode().splitlines()]
    if len(out) != len(texts):
        sys.exit(f"FAIL: {model}: {len(out)} output lines for {len(texts)} inputs")
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, shared = sys.argv[1], sys.argv[2]
    n = int(os.environ.get("CLLM_TOK_DIFF_N", "2000"))
    seed = int(os.environ.get("CLLM_TOK_DIFF_SEED", "1234"))
    total_fail = 0
    for name in TOKENIZERS:
        rng = random.Random(f"{seed}-{name}")
        texts = [rand_string(rng) for _ in range(n)]
        model = os.path.join(shared, "tokenizers", name)
        hf = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
        plain = run_cllm(binary, model, texts, False)
        withs = run_cllm(binary, model, texts, True)
        fails = 0
        for t, a, b in zip(texts, plain, withs):
            e1 = hf.encode(t, add_special_tokens=False).ids
            e2 = hf.encode(t, add_special_tokens=True).ids
            d1 = hf.decode(e1, skip_special_tokens=False)
            problems = []
            if a["ids"] != e1:
                problems.append(f"ids\n    got      {a['ids']}\n    expected {e1}")
            if b["ids"] != e2:
                problems.append(f"ids_with_special\n    got      {b['ids']}\n    expected {e2}")
            if a["decoded"] != d1:
                problems.append(f"decoded\n    got      {a['decoded']!r}\n    expected {d1!r}")
            if problems:
                fails += 1
                if fails <= 5:
                    print(f"MISMATCH {name} text={t!r}: " + "; ".join(problems))
        print(f"{name}: {n - fails}/{n} strings match")
        total_fail += fails
    if total_fail:
        sys.exit(f"FAIL: {total_fail} mismatching strings")
    print("differential: all match")


if __name__ == "__main__":
    main()
