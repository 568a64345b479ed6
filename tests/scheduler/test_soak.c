/* Scheduler soak and property tests.
 *   test_soak soak [N]      N random requests (default 10000) with random
 *                           aborts and stop-string finishes, a small block
 *                           pool (preemption happens), checks every step.
 *   test_soak property [N]  the same N requests (no aborts) under four
 *                           configs -- prefix caching on/off x large pool
 *                           (no preemption) / small pool (preemption) --
 *                           must give identical outputs per request. */
#include "workload.h"

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static wl_cfg base_cfg(int n) {
    wl_cfg c = {0};
    c.n = n;
    c.B = 48;           /* 192 token slots < max_model_len: some requests are too big */
    c.P = 4;
    c.max_num_seqs = 16;
    c.budget = 64;
    c.max_model_len = 256;
    c.vocab = 32;
    c.eos_every = 40;
    c.prefix = true;
    c.seed = 1234;
    return c;
}

static void print_stats(const char *name, const wl_cfg *c, const wl_stats *st, double secs) {
    printf("%-26s n=%d steps=%lld tokens=%lld preemptions=%lld finished stop/length/abort=%d/%d/%d "
           "rejected ctx/kv=%d/%d max_usage=%.2f prefix hit rate=%.3f (%lld/%lld tokens) evictions=%lld "
           "%.2fs\n",
           name, c->n, (long long)st->steps, (long long)st->tokens, (long long)st->preemptions,
           st->finished[CLLM_SEQ_FINISHED_STOPPED], st->finished[CLLM_SEQ_FINISHED_LENGTH],
           st->finished[CLLM_SEQ_FINISHED_ABORTED], st->rejected_ctx, st->rejected_kv, st->max_usage,
           st->kv.prefix_hit_rate, (long long)st->kv.prefix_hit_tokens, (long long)st->kv.prefix_query_tokens,
           (long long)st->kv.num_evictions, secs);
}

static int soak(int n) {
    wl_cfg c = base_cfg(n);
    c.abort_prob = 0.03;
    c.stopstr_prob = 0.01;
    wl_req *r = wl_make(n, c.vocab, c.seed);
    wl_stats st;
    double t0 = now_s();
    int64_t err = wl_run(&c, r, &st);
    print_stats("soak", &c, &st, now_s() - t0);
    /* sanity of the run itself: the interesting paths were exercised */
    if (n >= 1000) {
        if (st.preemptions == 0) { fprintf(stderr, "soak: no preemption happened\n"); err++; }
        if (st.finished[CLLM_SEQ_FINISHED_ABORTED] == 0 || st.finished[CLLM_SEQ_FINISHED_STOPPED] == 0 ||
            st.finished[CLLM_SEQ_FINISHED_LENGTH] == 0 || st.rejected_kv == 0 || st.rejected_ctx == 0) {
            fprintf(stderr, "soak: some finish reason never occurred\n");
            err++;
        }
        /* one counted lookup per admission (first or after a preemption) */
        if (!(st.kv.prefix_hit_tokens > 0 && st.kv.prefix_hit_rate < 1.0 &&
              st.kv.prefix_hit_tokens <= st.kv.prefix_query_tokens &&
              st.kv.prefix_queries <= (int64_t)n + st.preemptions)) {
            fprintf(stderr, "soak: prefix cache stats not sane\n");
            err++;
        }
    }
    int total = st.finished[3] + st.finished[4] + st.finished[5] + st.rejected_ctx + st.rejected_kv;
    if (total != n) {
        fprintf(stderr, "soak: %d of %d requests accounted for\n", total, n);
        err++;
    }
    wl_free(r, n);
    return err != 0;
}

static int property(int n) {
    wl_cfg cfgs[4];
    const char *names[4] = {"prefix on, large pool", "prefix off, large pool", "prefix on, small pool",
                            "prefix off, small pool"};
    wl_req *runs[4];
    wl_stats st[4];
    int64_t err = 0;
    for (int k = 0; k < 4; k++) {
        cfgs[k] = base_cfg(n);
        cfgs[k].prefix = k % 2 == 0;
        cfgs[k].B = k < 2 ? 1024 : 48;
        cfgs[k].P = 4;
        /* make the large pool reject exactly what the small one does */
        runs[k] = wl_make(n, cfgs[k].vocab, cfgs[k].seed);
        for (int i = 0; i < n; i++) {
            wl_req *q = &runs[k][i];
            if (q->n_prompt > 180) q->n_prompt = 180;
            int fin = q->params.max_tokens < 0 ? 256 : q->n_prompt + q->params.max_tokens;
            if (fin > 256) fin = 256;
            if (fin - 1 > 48 * 4) q->params.max_tokens = 48 * 4 + 1 - q->n_prompt; /* fits both pools */
            if (q->params.max_tokens < 1) q->params.max_tokens = 1;
            if (q->params.min_tokens > q->params.max_tokens) q->params.min_tokens = q->params.max_tokens;
        }
        double t0 = now_s();
        err += wl_run(&cfgs[k], runs[k], &st[k]);
        print_stats(names[k], &cfgs[k], &st[k], now_s() - t0);
    }
    if (st[0].preemptions != 0 || st[2].preemptions == 0 || st[3].preemptions == 0) {
        fprintf(stderr, "property: expected preemption only with the small pool\n");
        err++;
    }
    if (st[0].kv.prefix_hit_tokens == 0 || st[1].kv.prefix_hit_tokens != 0) {
        fprintf(stderr, "property: expected prefix hits only with caching on\n");
        err++;
    }
    int64_t preempted_reqs = 0;
    for (int i = 0; i < n; i++) {
        preempted_reqs += runs[2][i].preemptions > 0;
        for (int k = 1; k < 4; k++) {
            const wl_req *a = &runs[0][i], *b = &runs[k][i];
            if (a->rejected != b->rejected || a->status != b->status || a->n_out != b->n_out ||
                (a->n_out && memcmp(a->out, b->out, (size_t)a->n_out * sizeof(int32_t)))) {
                if (err++ < 10)
                    fprintf(stderr, "property: request %d differs between '%s' and '%s' (%d vs %d outputs)\n", i,
                            names[0], names[k], a->n_out, b->n_out);
            }
        }
    }
    printf("property: %lld requests were preempted and resumed in the small pool, outputs identical: %s\n",
           (long long)preempted_reqs, err ? "NO" : "yes");
    if (preempted_reqs == 0) err++;
    for (int k = 0; k < 4; k++) wl_free(runs[k], n);
    return err != 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "soak";
    int n = argc > 2 ? atoi(argv[2]) : 10000;
    if (n < 1) {
        fprintf(stderr, "usage: test_soak soak|property [N >= 1]\n");
        return 2;
    }
    int rc = !strcmp(mode, "property") ? property(n) : soak(n);
    printf("test_soak %s: %s\n", mode, rc ? "FAILED" : "passed");
    return rc;
}
