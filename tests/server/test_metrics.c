/* Metrics: concurrent updates are all counted; the text follows the
 * Prometheus exposition format (checked here line by line, and by
 * check_metrics.py with prometheus_client's parser). With an argument, prints
 * the rendered text of a fixed set of observations for check_metrics.py. */
#include "server/metrics.h"
#include "test_util.h"

#include <pthread.h>
#include <stdlib.h>

static void *worker(void *arg) {
    cllm_metrics *m = arg;
    for (int i = 0; i < 1000; i++) {
        cllm_metrics_add_generation_tokens(m, 1);
        cllm_metrics_observe_time_per_output_token(m, 0.02);
    }
    return NULL;
}

/* The fixed observations check_metrics.py expects. */
static void observe_fixed(cllm_metrics *m) {
    cllm_metrics_set_num_requests_running(m, 3);
    cllm_metrics_set_num_requests_waiting(m, 2);
    cllm_metrics_set_kv_cache_usage(m, 0.25);
    cllm_metrics_add_prefix_cache(m, 100, 40);
    cllm_metrics_add_prompt_tokens(m, 123);
    cllm_metrics_add_generation_tokens(m, 45);
    cllm_metrics_add_generation_tokens(m, -5); /* ignored */
    cllm_metrics_add_preemptions(m, 1);
    cllm_metrics_request_finished(m, CLLM_METRICS_FINISHED_STOP);
    cllm_metrics_request_finished(m, CLLM_METRICS_FINISHED_STOP);
    cllm_metrics_request_finished(m, CLLM_METRICS_FINISHED_LENGTH);
    cllm_metrics_observe_time_to_first_token(m, 0.003);  /* le 0.005 */
    cllm_metrics_observe_time_to_first_token(m, 0.005);  /* le 0.005 (bounds are inclusive) */
    cllm_metrics_observe_time_to_first_token(m, 3000.0); /* only +Inf */
    cllm_metrics_observe_time_to_first_token(m, -1.0);   /* ignored */
    cllm_metrics_observe_e2e_request_latency(m, 1.2);
}

int main(int argc, char **argv) {
    cllm_metrics *m;
    if (argc > 1) { /* print mode for check_metrics.py */
        if (cllm_metrics_create("my \"model\"\\x", &m)) return 1;
        observe_fixed(m);
        char *s = cllm_metrics_render(m, NULL, 0, NULL, NULL);
        fputs(s, stdout);
        free(s);
        cllm_metrics_destroy(m);
        return 0;
    }
    CHECK(cllm_metrics_create("m", &m) == CLLM_OK, "create");
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, m);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    observe_fixed(m);
    size_t len;
    char *s = cllm_metrics_render(m, NULL, 0, NULL, &len);
    CHECK(s && strlen(s) == len, "render");
    CHECK(strstr(s, "cllm:generation_tokens_total{model_name=\"m\"} 4045\n"), "4 threads x 1000 + 45");
    CHECK(strstr(s, "cllm:time_per_output_token_seconds_count{model_name=\"m\"} 4000\n"), "tpot count");
    CHECK(strstr(s, "cllm:time_per_output_token_seconds_bucket{le=\"0.01\",model_name=\"m\"} 0\n"), "0.02 > 0.01");
    CHECK(strstr(s, "cllm:time_per_output_token_seconds_bucket{le=\"0.025\",model_name=\"m\"} 4000\n"), "cumulative");
    CHECK(strstr(s, "cllm:time_per_output_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 4000\n"), "+Inf");
    CHECK(strstr(s, "cllm:time_to_first_token_seconds_bucket{le=\"0.005\",model_name=\"m\"} 2\n"), "le inclusive");
    CHECK(strstr(s, "cllm:time_to_first_token_seconds_bucket{le=\"2560.0\",model_name=\"m\"} 2\n"), "last bound");
    CHECK(strstr(s, "cllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 3\n"), "+Inf 3");
    CHECK(strstr(s, "# TYPE cllm:request_success_total counter\n"), "type line");
    CHECK(strstr(s, "cllm:request_success_total{finished_reason=\"length\",model_name=\"m\"} 1\n"), "reason");
    /* every line is a comment "# HELP|TYPE name ..." or "name{labels} value" */
    int lines = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        if (line[0] == '#') {
            CHECK(!strncmp(line, "# HELP cllm:", 12) || !strncmp(line, "# TYPE cllm:", 12), "comment: %s", line);
            continue;
        }
        CHECK(!strncmp(line, "cllm:", 5), "name prefix: %s", line);
        char *brace = strchr(line, '{'), *close = strrchr(line, '}');
        CHECK(brace && close && close > brace && close[1] == ' ', "labels: %s", line);
        if (close) {
            char *end;
            strtod(close + 2, &end);
            CHECK(*end == 0 && end != close + 2, "value: %s", line);
        }
    }
    CHECK(lines > 100, "lines %d", lines);
    free(s);
    cllm_metrics_destroy(m);
    cllm_metrics_destroy(NULL);
    cllm_metrics_add_prompt_tokens(NULL, 5); /* disabled metrics: no-op */
    CHECK(cllm_metrics_render(NULL, NULL, 0, NULL, NULL) == NULL, "NULL render");
    TEST_DONE();
}
