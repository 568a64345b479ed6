/* `cllm tokenize`: tokenize JSON-lines strings with a model's tokenizer.
 *
 *   cllm tokenize --model DIR --input FILE.jsonl [--add-special-tokens]
 *
 * Each input line is one JSON string; each output line is
 * {"ids": [...], "decoded": "..."} with decoded = decode(ids) keeping special
 * tokens (Hugging Face `Tokenizer.decode(ids, skip_special_tokens=False)`).
 * Works on any directory (or file) with tokenizer.json; no weights needed.
 *
 *   cllm tokenize --model DIR --chat FILE.json [--add-generation-prompt]
 *
 * renders the model's chat template (tokenizer_config.json's chat_template,
 * src/tokenizer/chat_template.c) as transformers' apply_chat_template does,
 * for FILE.json = a list of messages, or an object {"messages": [...],
 * "tools": [...], other template kwargs}, then tokenizes the text without
 * adding special tokens (the template writes them), and prints one line
 * {"text": "...", "ids": [...]}. A template that raises prints its message. */
#include "cli/cli.h"
#include "cllm.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: cllm tokenize --model DIR --input FILE.jsonl [--add-special-tokens]\n"
            "       cllm tokenize --model DIR --chat FILE.json [--add-generation-prompt]\n\n"
            "  --model DIR            directory with tokenizer.json (or the tokenizer.json file)\n"
            "  --input FILE.jsonl     one JSON string per line ('-' for stdin)\n"
            "  --add-special-tokens   apply the tokenizer's post-processor (e.g. BOS)\n"
            "  --chat FILE.json       render the chat template for a list of messages (or an object with\n"
            "                         messages, tools and other template variables)\n"
            "  --add-generation-prompt  end the rendered text with the assistant's turn header\n\n"
            "Prints one line per input: {\"ids\": [...], \"decoded\": \"...\"}; with --chat one line\n"
            "{\"text\": \"<rendered>\", \"ids\": [...]}.\n");
}

/* Tokenize one line; returns 0, or 1 after printing a message naming lineno. */
static int process_line(const cllm_tokenizer *tok, const char *line, size_t n, size_t lineno, bool add_special) {
    json_error_t err;
    json_t *j = json_loadb(line, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j || !json_is_string(j)) {
        fprintf(stderr, "cllm tokenize: line %zu: expected one JSON string (valid UTF-8) per line%s%s\n", lineno,
                j ? "" : ": ", j ? "" : err.text);
        json_decref(j);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL;
    size_t text_len = 0;
    cllm_status st = cllm_tokenizer_encode(tok, json_string_value(j), json_string_length(j), add_special, &ids, &n_ids);
    if (st == CLLM_OK) st = cllm_tokenizer_decode(tok, ids, n_ids, false, &text, &text_len);
    json_decref(j);
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm tokenize: line %zu: %s\n", lineno, cllm_last_error());
        cllm_free(ids);
        return 1;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n_ids; i++) json_array_append_new(arr, json_integer(ids[i]));
    json_t *o = json_object();
    json_object_set_new(o, "ids", arr);
    json_object_set_new(o, "decoded", json_stringn(text, text_len));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    int rc = 0;
    if (s) { fputs(s, stdout); fputc('\n', stdout); }
    else { fprintf(stderr, "cllm tokenize: line %zu: cannot format the output\n", lineno); rc = 1; }
    free(s);
    json_decref(o);
    cllm_free(ids);
    cllm_free(text);
    return rc;
}

/* --chat: render tok's chat template for the messages in path, tokenize the
 * text (no special tokens added) and print {"text", "ids"}. Returns the exit code. */
static int render_chat(const cllm_tokenizer *tok, const char *path, bool add_generation_prompt) {
    const char *src = cllm_tokenizer_chat_template(tok);
    if (!src) {
        fprintf(stderr, "cllm tokenize: the model has no chat_template in tokenizer_config.json\n");
        return 1;
    }
    json_error_t jerr;
    json_t *in = json_load_file(path, JSON_DECODE_ANY, &jerr);
    if (!in || !(json_is_array(in) || json_is_object(in))) {
        fprintf(stderr, "cllm tokenize: %s: expected a JSON list of messages or an object with \"messages\"%s%s\n",
                path, in ? "" : ": ", in ? "" : jerr.text);
        json_decref(in);
        return 1;
    }
    json_t *ctx = json_is_object(in) ? json_deep_copy(in) : json_object();
    if (json_is_array(in)) json_object_set(ctx, "messages", in);
    json_decref(in);
    if (!json_is_array(json_object_get(ctx, "messages"))) {
        fprintf(stderr, "cllm tokenize: %s: \"messages\" must be a list\n", path);
        json_decref(ctx);
        return 1;
    }
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    const char *bos = cllm_tokenizer_bos_token(tok), *eos = cllm_tokenizer_eos_token(tok);
    if (bos && !json_object_get(ctx, "bos_token")) json_object_set_new(ctx, "bos_token", json_string(bos));
    if (eos && !json_object_get(ctx, "eos_token")) json_object_set_new(ctx, "eos_token", json_string(eos));
    cllm_chat_template *t = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    if (cllm_chat_template_create(src, &t) != CLLM_OK) {
        fprintf(stderr, "cllm tokenize: the chat template does not compile: %s\n", cllm_last_error());
    } else if (cllm_chat_template_render(t, ctx, &text) != CLLM_OK) {
        fprintf(stderr, "cllm tokenize: the chat template failed: %s\n", cllm_last_error());
    } else if (cllm_tokenizer_encode(tok, text, strlen(text), false, &ids, &n_ids) != CLLM_OK) {
        fprintf(stderr, "cllm tokenize: %s\n", cllm_last_error());
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n_ids; i++) json_array_append_new(arr, json_integer(ids[i]));
        json_t *o = json_object();
        json_object_set_new(o, "text", json_string(text));
        json_object_set_new(o, "ids", arr);
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) { puts(s); rc = 0; }
        free(s);
        json_decref(o);
    }
    cllm_free(ids);
    free(text);
    cllm_chat_template_destroy(t);
    json_decref(ctx);
    return rc;
}

int cllm_cli_tokenize(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *chat = NULL;
    bool add_special = false, add_gen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--add-special-tokens")) add_special = true;
        else if (!strcmp(a, "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--input") && i + 1 < argc) input = argv[++i];
        else if (!strcmp(a, "--chat") && i + 1 < argc) chat = argv[++i];
        else if (!strcmp(a, "--add-generation-prompt")) add_gen = true;
        else {
            fprintf(stderr, "cllm tokenize: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !input == !chat) {
        fprintf(stderr, "cllm tokenize: --model and one of --input or --chat are required\n");
        usage(stderr);
        return 2;
    }
    cllm_tokenizer *tok = NULL;
    if (cllm_tokenizer_load(model, &tok) != CLLM_OK) {
        fprintf(stderr, "cllm tokenize: %s\n", cllm_last_error());
        return 1;
    }
    if (chat) {
        int crc = render_chat(tok, chat, add_gen);
        cllm_tokenizer_destroy(tok);
        return crc;
    }
    FILE *f = strcmp(input, "-") ? fopen(input, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "cllm tokenize: cannot open input %s: %s\n", input, strerror(errno));
        cllm_tokenizer_destroy(tok);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue; /* blank line */
        rc = process_line(tok, line, (size_t)n, lineno, add_special);
    }
    free(line);
    if (f != stdin) fclose(f);
    cllm_tokenizer_destroy(tok);
    fflush(stdout);
    return rc;
}
