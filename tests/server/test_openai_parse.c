/* OpenAI request parsing: every bad-input case gives the right HTTP status,
 * error type, param and a message naming the fix (vLLM's wording where it has
 * one); good requests fill the fields as OpenAI/vLLM define them. */
#include "server/openai_protocol.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>

typedef struct bad_case {
    char ep;              /* C completions, H chat, T tokenize, D detokenize */
    const char *body;
    int status;
    const char *param;    /* "" -> no param */
    const char *msg;      /* substring the message must contain */
    size_t max_body;      /* 0: default limits */
    int32_t vocab;
} bad_case;

static const bad_case BAD[] = {
    /* sampling ranges (vLLM SamplingParams._verify_args wording) */
    {'C', "{\"prompt\":\"hi\",\"temperature\":-0.5}", 400, "temperature", "temperature must be in [0, 2], got -0.5."},
    {'C', "{\"prompt\":\"hi\",\"temperature\":2.5}", 400, "temperature", "temperature must be in [0, 2]"},
    {'C', "{\"prompt\":\"hi\",\"temperature\":\"hot\"}", 400, "temperature", "'temperature' must be a number, got a string"},
    {'C', "{\"prompt\":\"hi\",\"top_p\":0}", 400, "top_p", "top_p must be in (0, 1], got 0."},
    {'C', "{\"prompt\":\"hi\",\"top_p\":1.5}", 400, "top_p", "top_p must be in (0, 1]"},
    {'C', "{\"prompt\":\"hi\",\"n\":0}", 400, "n", "n must be at least 1, got 0."},
    {'C', "{\"prompt\":\"hi\",\"n\":129}", 400, "n", "n must be at most 128, got 129."},
    {'C', "{\"prompt\":\"hi\",\"n\":1.5}", 400, "n", "'n' must be an integer"},
    {'C', "{\"prompt\":\"hi\",\"n\":true}", 400, "n", "'n' must be an integer, got a boolean"},
    {'C', "{\"prompt\":\"hi\",\"stop\":5}", 400, "stop", "'stop' must be a string or a list of strings"},
    {'C', "{\"prompt\":\"hi\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
     400, "stop", "at most 16 are allowed"},
    {'C', "{\"prompt\":\"hi\",\"stop\":[\"\"]}", 400, "stop[0]", "must not be an empty string"},
    {'C', "{\"prompt\":\"hi\",\"stop\":[\"a\", 3]}", 400, "stop[1]", "'stop[1]' must be a string"},
    {'C', "{\"prompt\":\"hi\",\"presence_penalty\":3}", 400, "presence_penalty", "presence_penalty must be in [-2, 2], got 3."},
    {'C', "{\"prompt\":\"hi\",\"frequency_penalty\":-2.5}", 400, "frequency_penalty", "frequency_penalty must be in [-2, 2]"},
    {'C', "{\"prompt\":\"hi\",\"logprobs\":21}", 400, "logprobs",
     "Requested sample logprobs of 21, which is greater than max allowed: 20"},
    {'C', "{\"prompt\":\"hi\",\"logprobs\":-1}", 400, "logprobs", "logprobs must be non-negative, got -1."},
    {'C', "{\"prompt\":\"hi\",\"echo\":\"yes\"}", 400, "echo", "'echo' must be true or false"},
    {'C', "{\"prompt\":\"hi\",\"top_k\":-2}", 400, "top_k", "top_k must be -1 or 0 (disable), or at least 1, got -2."},
    {'C', "{\"prompt\":\"hi\",\"min_p\":1.5}", 400, "min_p", "min_p must be in [0, 1], got 1.5."},
    {'C', "{\"prompt\":\"hi\",\"repetition_penalty\":0}", 400, "repetition_penalty",
     "repetition_penalty must be greater than zero, got 0."},
    {'C', "{\"prompt\":\"hi\",\"min_tokens\":-1}", 400, "min_tokens", "min_tokens must be greater than or equal to 0"},
    {'C', "{\"prompt\":\"hi\",\"min_tokens\":20,\"max_tokens\":10}", 400, "min_tokens",
     "min_tokens must be less than or equal to max_tokens=10, got 20."},
    {'C', "{\"prompt\":\"hi\",\"stop_token_ids\":[\"a\"]}", 400, "stop_token_ids", "must be a token id (an integer)"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":[1]}", 400, "logit_bias", "'logit_bias' must be an object mapping token"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"x1\":1}}", 400, "logit_bias",
     "Found token_id `x1` in logit_bias but token_id must be an integer or string representing an integer"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"1.5\":1}}", 400, "logit_bias", "token_id must be an integer"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"\":1}}", 400, "logit_bias", "token_id must be an integer"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"-1\":1}}", 400, "logit_bias", "out of the vocabulary"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"99\":1,\"100\":1}}", 400, "logit_bias",
     "token_id 100 in logit_bias is out of the vocabulary: token ids are in [0, 100)", 0, 100},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"99999999999\":1}}", 400, "logit_bias", "token_id must be an integer"},
    {'C', "{\"prompt\":\"hi\",\"logit_bias\":{\"3\":\"a\"}}", 400, "logit_bias", "must be a number, got a string"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"7\":true}}", 400, "logit_bias",
     "must be a number"},
    {'C', "{\"prompt\":\"hi\",\"response_format\":{\"type\":\"json_object\"}}", 400, "response_format",
     "response_format type \"json_object\" needs structured outputs"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
          "\"json_schema\":{\"name\":\"a\",\"schema\":{}}}}", 400, "response_format", "needs structured outputs"},
    {'C', "{\"prompt\":\"hi\",\"response_format\":\"json\"}", 400, "response_format", "must be an object with a string"},
    {'C', "{\"prompt\":\"hi\",\"guided_json\":{}}", 400, "guided_json", "needs structured outputs"},
    {'C', "{\"prompt\":\"hi\",\"suffix\":\"x\"}", 400, "suffix", "suffix is not currently supported"},
    {'C', "{\"prompt\":\"hi\",\"best_of\":3}", 400, "best_of", "best_of (3) different from n (1) is not supported"},
    {'C', "{\"prompt\":\"hi\",\"use_beam_search\":true}", 400, "use_beam_search", "beam search is not supported"},
    {'C', "{\"prompt\":\"hi\",\"priority\":5}", 400, "priority", "Priority scheduling is not enabled"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"return_tokens_as_token_ids\":true}", 400,
     "return_tokens_as_token_ids", "is not supported"},
    {'C', "{\"prompt\":\"hi\",\"allowed_token_ids\":[1]}", 400, "allowed_token_ids", "is not supported"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"bad_words\":[\"a\"]}", 400, "bad_words",
     "is not supported"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template\":\"{{ 1 }}\"}", 400,
     "chat_template", "a chat template passed with the request is refused"},
    {'C', "{\"prompt\":\"hi\",\"truncate_prompt_tokens\":0}", 400, "truncate_prompt_tokens",
     "truncate_prompt_tokens must be >= 1"},
    {'C', "{\"prompt\":\"hi\",\"add_special_tokens\":1}", 400, "add_special_tokens", "must be true or false"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"guided_choice\":[\"a\"]}", 400, "guided_choice",
     "needs structured outputs"},
    {'C', "{\"prompt\":\"hi\",\"max_tokens\":-1}", 400, "max_tokens", "max_tokens must be at least 0, got -1."},
    {'C', "{\"prompt\":\"hi\",\"model\":5}", 400, "model", "'model' must be a string, got an integer"},
    {'C', "{\"prompt\":\"hi\",\"seed\":\"x\"}", 400, "seed", "'seed' must be an integer"},
    {'C', "{\"prompt\":\"hi\",\"user\":[]}", 400, "user", "'user' must be a string"},
    {'C', "{\"prompt\":\"hi\",\"ignore_eos\":1}", 400, "ignore_eos", "must be true or false"},
    {'C', "{\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options",
     "Stream options can only be defined when `stream=True`."},
    {'C', "{\"prompt\":\"hi\",\"stream\":true,\"stream_options\":{\"include_usage\":\"x\"}}", 400,
     "stream_options.include_usage", "must be true or false"},
    {'C', "{\"prompt\":\"hi\",\"stream\":true,\"stream_options\":3}", 400, "stream_options", "must be an object"},
    /* prompt shapes */
    {'C', "{\"model\":\"m\"}", 400, "prompt", "'prompt' is required"},
    {'C', "{\"prompt\":null}", 400, "prompt", "'prompt' is required"},
    {'C', "{\"prompt\":5}", 400, "prompt", "'prompt' must be a string, a list of strings"},
    {'C', "{\"prompt\":[]}", 400, "prompt", "must not be an empty list"},
    {'C', "{\"prompt\":[\"a\", 1]}", 400, "prompt[1]", "a prompt list must hold only strings"},
    {'C', "{\"prompt\":[[1,2],[]]}", 400, "prompt[1]", "must not be an empty list of token ids"},
    {'C', "{\"prompt\":[[1,2],[3,\"x\"]]}", 400, "prompt[1]", "'prompt[1][1]' must be a token id"},
    {'C', "{\"prompt\":[1,-5]}", 400, "prompt", "Token id -5 in 'prompt[1]' is out of range"},
    {'C', "{\"prompt\":[1,4294967296]}", 400, "prompt", "out of range"},
    {'C', "{\"prompt\":[1,600]}", 400, "prompt", "Token id 600 in 'prompt[1]' is out of vocabulary", 0, 512},
    /* body-level */
    {'C', "{\"prompt\": \"a\",}", 400, "", "malformed JSON at line 1"},
    {'C', "{\"prompt\": \"a\"", 400, "", "malformed JSON"},
    {'C', "{\"prompt\":\"\xff\"}", 400, "", "not valid UTF-8 (invalid byte 0xFF at offset 11)"},
    {'C', "{\"prompt\":\"\xc0\xaf\"}", 400, "", "not valid UTF-8 (invalid byte 0xC0 at offset 11)"},
    {'C', "{\"prompt\":\"\xed\xa0\x80\"}", 400, "", "not valid UTF-8"},        /* encoded surrogate */
    {'C', "{\"prompt\":\"ab\xe2\x82\"}", 400, "", "not valid UTF-8"},          /* truncated sequence */
    {'C', "{\"prompt\":\"\\ud800\"}", 400, "", "not valid Unicode"},
    {'C', "{\"prompt\":\"a\\u0000b\"}", 400, "", "NUL"},
    {'C', "{\"prompt\":\"this body is longer than the limit of sixty-four bytes.....\"}", 413, "",
     "more than the server's limit of 64 bytes", 64},
    {'C', "[1,2]", 400, "", "request body must be a JSON object, got a list"},
    {'C', "", 400, "", "request body is empty"},
    /* chat */
    {'H', "{\"model\":\"m\"}", 400, "messages", "'messages' is required"},
    {'H', "{\"messages\":[]}", 400, "messages", "[] is too short"},
    {'H', "{\"messages\":\"hi\"}", 400, "messages", "'messages' must be a list, got a string"},
    {'H', "{\"messages\":[3]}", 400, "messages[0]", "must be a message object"},
    {'H', "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role",
     "unknown role 'wizard' in 'messages[0].role': expected one of system, user, assistant, tool, developer"},
    {'H', "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role", "'messages[0].role' is required"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content",
     "must be a string or a list of content parts"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
     400, "messages[0].content[0]", "content part type 'image_url'"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400, "messages[0].content[0]",
     "'messages[0].content[0].text' is required"},
    {'H', "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\"}]}", 400, "messages[1].content",
     "'messages[1].content' is required for a user message"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", 400, "messages[0].tool_calls",
     "only allowed in assistant messages"},
    {'H', "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"function\":{}}]}]}", 400,
     "messages[0].tool_calls[0]", "'messages[0].tool_calls[0].function.name' is required"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":5}]}", 400, "messages[0].name", "must be a string"},
    {'H', "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\",\"tool_call_id\":1}]}", 400, "messages[0].tool_call_id",
     "must be a string"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"\xf5\x80\x80\x80\"}]}", 400, "", "not valid UTF-8"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}", 400,
     "max_completion_tokens", "max_completion_tokens must be at least 1, got 0."},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400, "max_tokens",
     "max_tokens must be at least 1, got 0."},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":5}", 400, "top_logprobs",
     "when using `top_logprobs`, `logprobs` must be set to true."},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}", 400,
     "top_logprobs", "`top_logprobs` must be at most 20"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":-1}", 400,
     "top_logprobs", "`top_logprobs` must be a positive value"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400, "logprobs",
     "'logprobs' must be true or false"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", 400, "tool_choice",
     "When using `tool_choice`, `tools` must be set."},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}}],"
          "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}}", 400, "tool_choice",
     "Tool 'b' has not been passed in `tools`."},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", 400, "tools[0]",
     "'tools[0].function' is required"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"retrieval\",\"function\":{\"name\":\"a\"}}]}",
     400, "tools[0]", "must be \"function\""},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools", "must be a list"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\"}", 400, "tool_choice",
     "got \"maybe\""},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[]}", 400,
     "chat_template_kwargs", "must be an object"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", 400, "temperature",
     "temperature must be in [0, 2]"},
    {'H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"continue_final_message\":true,\"add_generation_prompt\":true}",
     400, "continue_final_message", "Cannot set both"},
    /* tokenize / detokenize */
    {'T', "{\"model\":\"m\"}", 400, "prompt", "'prompt' (a string) or 'messages'"},
    {'T', "{\"prompt\":3}", 400, "prompt", "'prompt' must be a string"},
    {'T', "{\"messages\":[]}", 400, "messages", "[] is too short"},
    {'D', "{\"model\":\"m\"}", 400, "tokens", "'tokens' (a list of token ids) is required"},
    {'D', "{\"tokens\":[\"a\"]}", 400, "tokens", "must be a token id"},
    {'D', "{\"tokens\":[5, 70000]}", 400, "tokens", "out of vocabulary", 0, 32000},
};

static void run_bad(size_t k, const bad_case *c) {
    cllm_openai_limits lim = cllm_openai_default_limits();
    if (c->max_body) lim.max_body_bytes = c->max_body;
    if (c->vocab) lim.vocab_size = c->vocab;
    cllm_openai_error err;
    cllm_status st;
    size_t len = strlen(c->body);
    if (c->ep == 'C' || c->ep == 'H') {
        cllm_openai_request r;
        st = c->ep == 'C' ? cllm_openai_parse_completion(c->body, len, &lim, &r, &err)
                          : cllm_openai_parse_chat(c->body, len, &lim, &r, &err);
        CHECK(r.prompts == NULL && r.messages == NULL, "case %zu left allocations", k);
    } else if (c->ep == 'T') {
        cllm_openai_tokenize_request r;
        st = cllm_openai_parse_tokenize(c->body, len, &lim, &r, &err);
    } else {
        cllm_openai_detokenize_request r;
        st = cllm_openai_parse_detokenize(c->body, len, &lim, &r, &err);
    }
    CHECK(st == CLLM_ERR_INVALID_ARG, "case %zu (%s): status %s", k, c->body, cllm_status_str(st));
    CHECK(err.http_status == c->status, "case %zu (%s): http %d, want %d", k, c->body, err.http_status, c->status);
    CHECK(!strcmp(err.type, "invalid_request_error"), "case %zu: type %s", k, err.type);
    CHECK(!strcmp(err.param, c->param), "case %zu (%s): param '%s', want '%s'", k, c->body, err.param, c->param);
    CHECK(strstr(err.message, c->msg) != NULL, "case %zu (%s): message '%s' lacks '%s'", k, c->body, err.message, c->msg);
}

static cllm_status parse(char ep, const char *body, cllm_openai_request *r) {
    cllm_openai_error err;
    cllm_status st = ep == 'C' ? cllm_openai_parse_completion(body, strlen(body), NULL, r, &err)
                               : cllm_openai_parse_chat(body, strlen(body), NULL, r, &err);
    if (st) fprintf(stderr, "unexpected error for %s: %d %s (%s)\n", body, err.http_status, err.message, err.param);
    return st;
}

static void good_completion(void) {
    cllm_openai_request r;
    /* OpenAI / vLLM defaults */
    CHECK(parse('C', "{\"model\":\"m\",\"prompt\":\"Hello\"}", &r) == CLLM_OK, "defaults");
    CHECK(!strcmp(r.model, "m") && r.n_prompts == 1 && !r.prompts[0].is_tokens, "prompt");
    CHECK(!strcmp(r.prompts[0].text, "Hello") && r.prompts[0].text_len == 5, "text");
    CHECK(r.max_tokens == 16 && r.temperature == 1.0 && r.top_p == 1.0 && r.top_k == -1 && r.n == 1, "defaults");
    CHECK(r.logprobs == -1 && !r.echo && !r.stream && r.skip_special_tokens && !r.has_temperature, "defaults");
    CHECK(r.repetition_penalty == 1.0 && r.min_p == 0 && !r.has_seed, "defaults");
    cllm_openai_request_free(&r);

    CHECK(parse('C', "{\"prompt\":[\"a\",\"bc\"],\"max_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"top_k\":0,"
                     "\"n\":3,\"stop\":\"\\n\",\"seed\":-3,\"logprobs\":0,\"echo\":true,\"stream\":true,"
                     "\"stream_options\":{\"include_usage\":true},\"min_p\":0.1,\"repetition_penalty\":1.2,"
                     "\"ignore_eos\":true,\"min_tokens\":2,\"stop_token_ids\":[2,3],\"skip_special_tokens\":false,"
                     "\"user\":\"u\",\"presence_penalty\":-2,\"frequency_penalty\":2,\"best_of\":1,\"unknown\":{}}",
                &r) == CLLM_OK, "all fields");
    CHECK(r.n_prompts == 2 && !strcmp(r.prompts[1].text, "bc"), "list of strings");
    CHECK(r.max_tokens == 7 && r.temperature == 0 && r.has_temperature && r.top_p == 0.5 && r.top_k == -1 && r.has_top_k, "sampling");
    CHECK(r.n == 3 && r.n_stop == 1 && !strcmp(r.stop[0], "\n") && r.has_seed && r.seed == -3, "n/stop/seed");
    CHECK(r.logprobs == 0 && r.echo && r.stream && r.include_usage, "logprobs/echo/stream");
    CHECK(fabs(r.min_p - 0.1) < 1e-12 && fabs(r.repetition_penalty - 1.2) < 1e-12 && r.ignore_eos && r.min_tokens == 2, "extras");
    CHECK(r.n_stop_token_ids == 2 && r.stop_token_ids[1] == 3 && !r.skip_special_tokens && !strcmp(r.user, "u"), "extras");
    CHECK(r.presence_penalty == -2 && r.frequency_penalty == 2, "penalties");
    cllm_openai_request_free(&r);

    /* logit_bias: ids from string keys, values clamped to [-100, 100]; {} and null are no bias; response_format
     * text is the default */
    CHECK(parse('C', "{\"prompt\":\"hi\",\"logit_bias\":{\"5\":-250,\"+7\":0.5,\"12\":101},"
                     "\"response_format\":{\"type\":\"text\"}}", &r) == CLLM_OK, "logit_bias");
    CHECK(r.n_logit_bias == 3, "logit_bias: %zu entries", r.n_logit_bias);
    for (size_t i = 0; i < r.n_logit_bias; i++) {
        int32_t id = r.logit_bias_ids[i];
        float v = r.logit_bias_values[i];
        CHECK((id == 5 && v == -100) || (id == 7 && v == 0.5f) || (id == 12 && v == 100), "logit_bias %d: %g", id, v);
    }
    cllm_openai_request_free(&r);
    CHECK(parse('C', "{\"prompt\":\"hi\",\"logit_bias\":{}}", &r) == CLLM_OK && r.n_logit_bias == 0, "logit_bias {}");
    CHECK(r.add_special_tokens && !r.include_stop_str_in_output && r.truncate_prompt_tokens == 0, "vLLM extras' defaults");
    cllm_openai_request_free(&r);
    /* vLLM extras; neutral values of the unsupported fields pass */
    CHECK(parse('C', "{\"prompt\":\"hi\",\"n\":2,\"best_of\":2,\"suffix\":\"\",\"use_beam_search\":false,"
                     "\"allowed_token_ids\":[],\"bad_words\":null,\"include_stop_str_in_output\":true,\"priority\":0,"
                     "\"add_special_tokens\":false,\"truncate_prompt_tokens\":-1}", &r) == CLLM_OK, "neutral values");
    CHECK(r.include_stop_str_in_output && !r.add_special_tokens && r.truncate_prompt_tokens == -1, "vLLM extras");
    cllm_openai_request_free(&r);
    CHECK(parse('H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r) == CLLM_OK && !r.add_special_tokens,
          "chat: add_special_tokens defaults to false");
    cllm_openai_request_free(&r);
    CHECK(parse('H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":null,"
                     "\"response_format\":null}", &r) == CLLM_OK && r.n_logit_bias == 0, "logit_bias null");
    cllm_openai_request_free(&r);

    CHECK(parse('C', "{\"prompt\":[1,2,3],\"max_tokens\":16.0,\"temperature\":null,\"stop\":[\"a\",\"b\"]}", &r) == CLLM_OK, "ids");
    CHECK(r.n_prompts == 1 && r.prompts[0].is_tokens && r.prompts[0].n_tokens == 3 && r.prompts[0].token_ids[2] == 3, "ids");
    CHECK(r.max_tokens == 16 && !r.has_temperature && r.n_stop == 2, "integral real, null = unset");
    cllm_openai_request_free(&r);

    CHECK(parse('C', "{\"prompt\":[[1],[4,5]],\"max_tokens\":0,\"echo\":true}", &r) == CLLM_OK, "list of lists");
    CHECK(r.n_prompts == 2 && r.prompts[1].n_tokens == 2 && r.prompts[1].token_ids[0] == 4 && r.max_tokens == 0, "lists");
    cllm_openai_request_free(&r);

    CHECK(parse('C', "{\"prompt\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}", &r) == CLLM_OK, "UTF-8 ok");
    CHECK(r.prompts[0].text_len == 10, "utf8 bytes %zu", r.prompts[0].text_len);
    cllm_openai_request_free(&r);
    cllm_openai_request_free(NULL);
}

static void good_chat(void) {
    cllm_openai_request r;
    CHECK(parse('H', "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},"
                     "{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                     "{\"role\":\"user\",\"content\":\"hi\",\"name\":\"bob\"},"
                     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
                     "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                     "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"call_1\"}],"
                     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"description\":\"g\","
                     "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}},"
                     "\"max_tokens\":5,\"max_completion_tokens\":9,\"logprobs\":true,\"top_logprobs\":3,"
                     "\"add_generation_prompt\":false,\"chat_template_kwargs\":{\"enable_thinking\":false},\"stream\":false}",
                &r) == CLLM_OK, "chat");
    CHECK(r.endpoint == CLLM_OPENAI_CHAT && r.n_messages == 5, "messages");
    CHECK(r.messages[0].role == CLLM_OPENAI_ROLE_DEVELOPER && !strcmp(cllm_openai_role_name(r.messages[0].role), "developer"), "role");
    CHECK(!strcmp(r.messages[1].content, "a\nb") && r.messages[1].content_len == 3, "parts joined with newline (vLLM)");
    CHECK(!strcmp(r.messages[2].name, "bob"), "name");
    CHECK(r.messages[3].content == NULL && r.messages[3].n_tool_calls == 1, "assistant tool call");
    CHECK(!strcmp(r.messages[3].tool_calls[0].id, "call_1") && !strcmp(r.messages[3].tool_calls[0].name, "get"), "tc");
    CHECK(!strcmp(r.messages[3].tool_calls[0].arguments, "{\"x\":1}"), "args");
    CHECK(r.messages[4].role == CLLM_OPENAI_ROLE_TOOL && !strcmp(r.messages[4].tool_call_id, "call_1"), "tool msg");
    CHECK(r.n_tools == 1 && !strcmp(r.tools[0].description, "g") && !strcmp(r.tools[0].parameters_json, "{\"type\":\"object\"}"), "tools");
    CHECK(r.tool_choice == CLLM_OPENAI_TOOL_CHOICE_NAMED && !strcmp(r.tool_choice_name, "get"), "tool_choice");
    CHECK(r.max_tokens == 9, "max_completion_tokens preferred over max_tokens");
    CHECK(r.chat_logprobs && r.logprobs == 3, "logprobs");
    CHECK(!r.add_generation_prompt && !strcmp(r.chat_template_kwargs_json, "{\"enable_thinking\":false}"), "template");
    cllm_openai_request_free(&r);

    CHECK(parse('H', "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r) == CLLM_OK, "minimal chat");
    CHECK(r.max_tokens == -1 && r.add_generation_prompt && r.logprobs == -1 && !r.chat_logprobs && !r.model, "chat defaults");
    CHECK(r.tool_choice == CLLM_OPENAI_TOOL_CHOICE_UNSET, "tool_choice unset");
    cllm_openai_request_free(&r);
}

static void tokenize_requests(void) {
    cllm_openai_error err;
    cllm_openai_tokenize_request t;
    const char *b = "{\"model\":\"m\",\"prompt\":\"Hello world\"}";
    CHECK(cllm_openai_parse_tokenize(b, strlen(b), NULL, &t, &err) == CLLM_OK, "tokenize");
    CHECK(!strcmp(t.prompt, "Hello world") && t.add_special_tokens && !t.messages, "tokenize prompt");
    cllm_openai_tokenize_request_free(&t);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"add_generation_prompt\":false}";
    CHECK(cllm_openai_parse_tokenize(b, strlen(b), NULL, &t, &err) == CLLM_OK, "tokenize chat");
    CHECK(t.n_messages == 1 && !t.add_special_tokens && !t.add_generation_prompt, "tokenize chat defaults (vLLM)");
    cllm_openai_tokenize_request_free(&t);
    cllm_openai_detokenize_request d;
    b = "{\"tokens\":[1, 2, 3]}";
    CHECK(cllm_openai_parse_detokenize(b, strlen(b), NULL, &d, &err) == CLLM_OK, "detokenize");
    CHECK(d.n_tokens == 3 && d.tokens[0] == 1, "detokenize ids");
    cllm_openai_detokenize_request_free(&d);
}

static void context_length(void) {
    cllm_openai_error err;
    int64_t mt = 100;
    CHECK(cllm_openai_check_context_length(4000, &mt, 4096, "messages", &err) == CLLM_ERR_CONTEXT_LENGTH, "too long");
    CHECK(!strcmp(err.message, "This model's maximum context length is 4096 tokens. However, you requested 4100 "
                               "tokens (4000 in the messages, 100 in the completion). Please reduce the length of "
                               "the messages or completion."), "vLLM wording: %s", err.message);
    CHECK(err.http_status == 400 && !strcmp(err.param, "messages") && !strcmp(err.code, "context_length_exceeded"), "ctx");
    mt = 96;
    CHECK(cllm_openai_check_context_length(4000, &mt, 4096, "prompt", &err) == CLLM_OK && mt == 96, "fits exactly");
    mt = -1;
    CHECK(cllm_openai_check_context_length(4000, &mt, 4096, "prompt", &err) == CLLM_OK && mt == 96, "default fills");
    mt = -1;
    CHECK(cllm_openai_check_context_length(4096, &mt, 4096, "prompt", &err) == CLLM_ERR_CONTEXT_LENGTH, "prompt fills all");
    CHECK(strstr(err.message, "maximum context length is 4096 tokens") && err.http_status == 400, "%s", err.message);
}

int main(void) {
    for (size_t k = 0; k < sizeof BAD / sizeof BAD[0]; k++) run_bad(k, &BAD[k]);
    good_completion();
    good_chat();
    tokenize_requests();
    context_length();
    printf("%zu bad-input cases\n", sizeof BAD / sizeof BAD[0]);
    TEST_DONE();
}
