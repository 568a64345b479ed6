/* The response a chat choice becomes with a tool parser: the generated text
 * (a Qwen3-template render from cases.json's hermes/content_two_calls shape)
 * through cllm_tool_parse_choice and the OpenAI formatters, checked as JSON:
 * message.tool_calls, content, finish_reason "tool_calls", and the streaming
 * delta.tool_calls chunk. */
#include "server/tool_parser.h"

#include "../server/test_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                       "</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>";
    cllm_tool_parse_result res[2];
    cllm_openai_choice ch[2] = {{.index = 0, .finish_reason = CLLM_OPENAI_FINISH_STOP},
                                {.index = 1, .finish_reason = CLLM_OPENAI_FINISH_LENGTH}};
    CHECK(cllm_tool_parse_choice(CLLM_TOOL_PARSER_HERMES, text, strlen(text), &res[0], &ch[0]) == CLLM_OK, "parse 0");
    CHECK(cllm_tool_parse_choice(CLLM_TOOL_PARSER_HERMES, "plain", 5, &res[1], &ch[1]) == CLLM_OK, "parse 1");
    cllm_openai_response r = {.id = "chatcmpl-1", .model = "m", .created = 1, .choices = ch, .n_choices = 2};
    char *body = cllm_openai_format_chat_completion(&r);
    json_t *o = json_loads(body, 0, NULL);
    json_t *c0 = json_array_get(json_object_get(o, "choices"), 0), *c1 = json_array_get(json_object_get(o, "choices"), 1);
    json_t *m0 = json_object_get(c0, "message"), *tc = json_object_get(m0, "tool_calls");
    CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "tool_calls"), "finish 0: %s", body);
    CHECK(!strcmp(json_string_value(json_object_get(m0, "content")), "Let me check.\n"), "content 0");
    CHECK(json_array_size(tc) == 2, "2 calls: %s", body);
    json_t *f0 = json_object_get(json_array_get(tc, 0), "function");
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(tc, 0), "type")), "function"), "type");
    CHECK(!strncmp(json_string_value(json_object_get(json_array_get(tc, 0), "id")), "chatcmpl-tool-", 14), "id");
    CHECK(!strcmp(json_string_value(json_object_get(f0, "name")), "get_weather"), "name");
    CHECK(!strcmp(json_string_value(json_object_get(f0, "arguments")), "{\"city\":\"Paris\"}"), "arguments");
    json_t *m1 = json_object_get(c1, "message");
    CHECK(!strcmp(json_string_value(json_object_get(m1, "content")), "plain") && !json_object_get(m1, "tool_calls"),
          "plain choice: %s", body);
    CHECK(!strcmp(json_string_value(json_object_get(c1, "finish_reason")), "length"), "finish 1");
    json_decref(o);
    free(body);
    /* only calls: content null */
    cllm_tool_parse_result_free(&res[0]);
    const char *only = "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
    ch[0] = (cllm_openai_choice){.finish_reason = CLLM_OPENAI_FINISH_STOP};
    cllm_tool_parse_choice(CLLM_TOOL_PARSER_HERMES, only, strlen(only), &res[0], &ch[0]);
    r.n_choices = 1;
    body = cllm_openai_format_chat_completion(&r);
    o = json_loads(body, 0, NULL);
    m0 = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "message");
    CHECK(json_is_null(json_object_get(m0, "content")), "content should be null: %s", body);
    json_decref(o);
    free(body);
    /* streaming chunk with one tool call at index 1 */
    cllm_openai_chunk c = {.id = "chatcmpl-1", .model = "m", .created = 1, .tool_calls = res[0].calls,
                           .n_tool_calls = 1, .tool_call_index = 1};
    body = cllm_openai_format_chat_chunk(&c);
    o = json_loads(body, 0, NULL);
    json_t *d = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "delta");
    json_t *t = json_array_get(json_object_get(d, "tool_calls"), 0);
    CHECK(json_integer_value(json_object_get(t, "index")) == 1, "index: %s", body);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")), "f"), "chunk name");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "arguments")), "{}"), "args");
    CHECK(!json_object_get(d, "content"), "no content key: %s", body);
    json_decref(o);
    free(body);
    cllm_tool_parse_result_free(&res[0]);
    cllm_tool_parse_result_free(&res[1]);
    TEST_DONE();
}
