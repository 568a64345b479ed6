/* Scheduler unit tests: chunked prefill, decode-first ordering,
 * max_num_seqs, preemption + resume, abort, rejection of requests that can
 * never fit, stop rules, flattening, bad calls. */
#include "fake_model.h"

static int g_fail;
#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);  \
            g_fail++;                                                              \
        }                                                                          \
    } while (0)
#define OK(x) CHECK((x) == CLLM_OK)

typedef struct env {
    cllm_kv *bm;
    cllm_scheduler *sc;
    fake_model fm;
    cllm_seq *done[32];
    int n_done;
} env;

static void setup(env *e, int B, int P, int max_seqs, int budget, int mml) {
    memset(e, 0, sizeof *e);
    cllm_kv_params kp = cllm_kv_default_params();
    kp.num_blocks = B;
    kp.block_size = P;
    cllm_scheduler_params sp = cllm_scheduler_default_params();
    sp.max_num_seqs = max_seqs;
    sp.max_num_batched_tokens = budget;
    sp.max_model_len = mml;
    if (cllm_kv_create(&kp, &e->bm) != CLLM_OK || cllm_scheduler_create(&sp, e->bm, &e->sc) != CLLM_OK) {
        fprintf(stderr, "setup: %s\n", cllm_last_error());
        exit(1);
    }
    fm_init(&e->fm, B, P, 32, 0); /* no eos from the fake model */
}

static void teardown(env *e) {
    for (int i = 0; i < e->n_done; i++) cllm_seq_destroy(e->done[i]);
    cllm_scheduler_destroy(e->sc);
    cllm_kv_destroy(e->bm);
    CHECK(e->fm.errors == 0);
    fm_free(&e->fm);
}

static cllm_seq *add(env *e, int64_t id, int n_prompt, int max_tokens, cllm_status want) {
    int32_t prompt[256];
    for (int j = 0; j < n_prompt; j++) prompt[j] = (int32_t)((id * 7 + j) % 31 + 1);
    cllm_request_params p = cllm_request_default_params();
    p.max_tokens = max_tokens;
    cllm_seq *q = NULL;
    OK(cllm_seq_create(id, prompt, n_prompt, &p, FM_EOS, &q));
    cllm_status st = cllm_scheduler_add(e->sc, q);
    CHECK(st == want);
    if (st != CLLM_OK) {
        cllm_seq_destroy(q);
        return NULL;
    }
    return q;
}

/* One step with the fake model; returns the plan (valid until the next step). */
static const cllm_sched_plan *step(env *e) {
    const cllm_sched_plan *pl = NULL;
    OK(cllm_scheduler_schedule(e->sc, &pl));
    int ns = pl->num_seqs ? fm_execute(&e->fm, pl) : 0;
    OK(cllm_scheduler_update(e->sc, pl, e->fm.sampled, ns));
    cllm_status st = cllm_scheduler_check(e->sc);
    if (st != CLLM_OK) fprintf(stderr, "check: %s\n", cllm_last_error());
    CHECK(st == CLLM_OK);
    e->n_done += cllm_scheduler_take_finished(e->sc, e->done + e->n_done, 32 - e->n_done);
    return pl;
}

static void check_reference(env *e, const cllm_seq *q) {
    for (int L = q->num_prompt_tokens; L < q->num_tokens; L++)
        CHECK(q->token_ids[L] == fm_reference_next(&e->fm, q->id, q->token_ids, L));
}

static void test_chunked_prefill(void) {
    env e;
    setup(&e, 16, 4, 4, 8, 64);
    cllm_seq *a = add(&e, 1, 20, 3, CLLM_OK);
    const int want[] = {8, 8, 4, 1, 1};
    for (int s = 0; s < 5; s++) {
        const cllm_sched_plan *pl = NULL;
        OK(cllm_scheduler_schedule(e.sc, &pl));
        CHECK(pl->num_seqs == 1 && pl->entries[0].num_tokens == want[s] && pl->num_tokens == want[s]);
        CHECK(pl->entries[0].sample == (s >= 2));
        CHECK(pl->entries[0].start_pos == (s < 3 ? 8 * s : 20 + s - 3));
        int ns = fm_execute(&e.fm, pl);
        if (s == 1) { /* flattened chunk: positions 8..15 in blocks 2 and 3 */
            const cllm_batch_host *b = &e.fm.batch;
            CHECK(b->num_seqs == 1 && b->num_tokens == 8 && b->query_start_loc[1] == 8 && b->seq_lens[0] == 16);
            CHECK(b->num_logits == 0 && b->max_query_len == 8 && b->max_blocks_per_seq == 4);
            for (int t = 0; t < 8; t++) {
                CHECK(b->positions[t] == 8 + t && b->token_ids[t] == a->token_ids[8 + t]);
                CHECK(b->slot_mapping[t] == a->kv.blocks[(8 + t) / 4] * 4 + t % 4);
            }
            cllm_attn_meta m = cllm_batch_host_attn_meta(b);
            CHECK(m.num_tokens == 8 && m.block_tables == b->block_tables && m.block_size == 4);
        }
        OK(cllm_scheduler_update(e.sc, pl, e.fm.sampled, ns));
        OK(cllm_scheduler_check(e.sc));
    }
    CHECK(e.n_done == 0);
    e.n_done = cllm_scheduler_take_finished(e.sc, e.done, 32);
    CHECK(e.n_done == 1 && e.done[0] == a && a->status == CLLM_SEQ_FINISHED_LENGTH);
    CHECK(cllm_seq_num_output_tokens(a) == 3 && !strcmp(cllm_seq_finish_reason(a), "length"));
    check_reference(&e, a);
    teardown(&e);
}

static void test_decode_first(void) {
    env e;
    setup(&e, 32, 4, 4, 8, 64);
    cllm_seq *a = add(&e, 1, 4, 5, CLLM_OK);
    const cllm_sched_plan *pl = step(&e);
    CHECK(pl->num_seqs == 1 && pl->entries[0].num_tokens == 4 && pl->entries[0].sample);
    cllm_seq *b = add(&e, 2, 20, 2, CLLM_OK);
    pl = step(&e);
    CHECK(pl->num_seqs == 2 && pl->entries[0].seq == a && pl->entries[0].num_tokens == 1);
    CHECK(pl->entries[1].seq == b && pl->entries[1].num_tokens == 7 && !pl->entries[1].sample);
    CHECK(pl->num_decode_seqs == 1 && pl->num_tokens == 8);
    pl = step(&e);
    CHECK(pl->entries[0].seq == a && pl->entries[0].num_tokens == 1 && pl->entries[1].num_tokens == 7);
    while (cllm_scheduler_num_unfinished(e.sc) > 0) step(&e);
    CHECK(e.n_done == 2);
    check_reference(&e, a);
    check_reference(&e, b);
    teardown(&e);
}

static void test_max_num_seqs(void) {
    env e;
    setup(&e, 32, 4, 2, 64, 64);
    add(&e, 1, 3, 2, CLLM_OK);
    add(&e, 2, 3, 4, CLLM_OK);
    cllm_seq *c = add(&e, 3, 3, 2, CLLM_OK);
    const cllm_sched_plan *pl = step(&e);
    CHECK(pl->num_seqs == 2 && cllm_scheduler_num_running(e.sc) == 2 && cllm_scheduler_num_waiting(e.sc) == 1);
    pl = step(&e); /* request 1 finishes (2 outputs) */
    CHECK(pl->num_seqs == 2 && e.n_done == 1 && e.done[0]->id == 1);
    pl = step(&e); /* now 3 is admitted after the running decode */
    CHECK(pl->num_seqs == 2 && pl->entries[1].seq == c && pl->entries[1].num_tokens == 3);
    while (cllm_scheduler_num_unfinished(e.sc) > 0) step(&e);
    CHECK(e.n_done == 3);
    teardown(&e);
}

/* outputs of one request (id 2, prompt 4, 8 tokens) run alone in a big pool */
static void run_alone(int32_t *out) {
    env e;
    setup(&e, 64, 4, 4, 64, 64);
    cllm_seq *q = add(&e, 2, 4, 8, CLLM_OK);
    while (cllm_scheduler_num_unfinished(e.sc) > 0) step(&e);
    CHECK(q->num_preemptions == 0 && cllm_seq_num_output_tokens(q) == 8);
    memcpy(out, cllm_seq_output_tokens(q), 8 * sizeof(int32_t));
    teardown(&e);
}

static void test_preemption(void) {
    int32_t alone[8];
    run_alone(alone);
    env e;
    setup(&e, 4, 4, 4, 64, 64); /* 16 slots; each request needs 11 */
    cllm_seq *a = add(&e, 1, 4, 8, CLLM_OK);
    cllm_seq *b = add(&e, 2, 4, 8, CLLM_OK);
    int preempted = 0;
    for (int s = 0; s < 100 && cllm_scheduler_num_unfinished(e.sc) > 0; s++) {
        const cllm_sched_plan *pl = step(&e);
        if (pl->num_preempted && !preempted) {
            preempted = 1;
            CHECK(pl->num_preempted == 1 && pl->preempted[0] == b); /* most recently admitted */
            CHECK(b->status == CLLM_SEQ_PREEMPTED && b->kv.num_computed_tokens == 0 && b->kv.num_blocks == 0);
            CHECK(cllm_scheduler_num_waiting(e.sc) == 1 && pl->num_seqs == 1 && pl->entries[0].seq == a);
        }
    }
    CHECK(preempted && b->num_preemptions >= 1 && a->num_preemptions == 0);
    CHECK(e.n_done == 2 && a->status == CLLM_SEQ_FINISHED_LENGTH && b->status == CLLM_SEQ_FINISHED_LENGTH);
    CHECK(cllm_seq_num_output_tokens(a) == 8 && cllm_seq_num_output_tokens(b) == 8);
    CHECK(!memcmp(cllm_seq_output_tokens(b), alone, sizeof alone)); /* same as never preempted */
    check_reference(&e, a);
    check_reference(&e, b);
    cllm_kv_stats st;
    cllm_kv_get_stats(e.bm, &st);
    CHECK(st.num_used_blocks == 0);
    teardown(&e);
}

static void test_abort(void) {
    env e;
    setup(&e, 32, 4, 2, 64, 128);
    add(&e, 1, 10, 50, CLLM_OK);
    add(&e, 2, 10, 50, CLLM_OK);
    add(&e, 3, 10, 50, CLLM_OK);
    step(&e);
    step(&e);
    cllm_kv_stats st;
    cllm_kv_get_stats(e.bm, &st);
    CHECK(st.num_used_blocks > 0);
    CHECK(cllm_scheduler_abort(e.sc, 3));  /* waiting */
    CHECK(!cllm_scheduler_abort(e.sc, 3)); /* already finished */
    CHECK(!cllm_scheduler_abort(e.sc, 99));
    /* abort a running request between schedule and update */
    const cllm_sched_plan *pl = NULL;
    OK(cllm_scheduler_schedule(e.sc, &pl));
    CHECK(pl->num_seqs == 2);
    int ns = fm_execute(&e.fm, pl);
    CHECK(cllm_scheduler_abort(e.sc, 1));
    cllm_seq *tmp[4];
    CHECK(cllm_scheduler_take_finished(e.sc, tmp, 4) == 0); /* plan pending */
    OK(cllm_scheduler_update(e.sc, pl, e.fm.sampled, ns));
    OK(cllm_scheduler_check(e.sc));
    CHECK(cllm_scheduler_abort(e.sc, 2));
    e.n_done = cllm_scheduler_take_finished(e.sc, e.done, 32);
    CHECK(e.n_done == 3);
    for (int i = 0; i < e.n_done; i++) {
        CHECK(e.done[i]->status == CLLM_SEQ_FINISHED_ABORTED && !strcmp(cllm_seq_finish_reason(e.done[i]), "abort"));
        CHECK(e.done[i]->kv.num_blocks == 0);
    }
    cllm_kv_get_stats(e.bm, &st);
    CHECK(st.num_used_blocks == 0 && cllm_kv_num_free_blocks(e.bm) == 32);
    OK(cllm_scheduler_check(e.sc));
    pl = step(&e);
    CHECK(pl->num_seqs == 0);
    teardown(&e);
}

static void test_reject(void) {
    env e;
    setup(&e, 4, 4, 4, 64, 64); /* 16 token slots */
    add(&e, 1, 10, 100, CLLM_ERR_NO_KV_BLOCKS);
    CHECK(strstr(cllm_last_error(), "KV blocks") != NULL);
    add(&e, 2, 70, 1, CLLM_ERR_CONTEXT_LENGTH);
    add(&e, 3, 10, -1, CLLM_ERR_NO_KV_BLOCKS); /* up to max_model_len 64 */
    add(&e, 4, 16, 1, CLLM_OK);                /* 16 tokens of KV: exactly the cache */
    cllm_seq *ok = add(&e, 5, 10, 7, CLLM_OK); /* 16 tokens, 15 of KV */
    for (int s = 0; s < 50 && cllm_scheduler_num_unfinished(e.sc) > 0; s++) step(&e);
    CHECK(cllm_scheduler_num_unfinished(e.sc) == 0 && e.n_done == 2);
    CHECK(ok->status == CLLM_SEQ_FINISHED_LENGTH && cllm_seq_num_output_tokens(ok) == 7);
    /* bad calls */
    const cllm_sched_plan *pl = NULL;
    OK(cllm_scheduler_schedule(e.sc, &pl));
    const cllm_sched_plan *pl2 = NULL;
    CHECK(cllm_scheduler_schedule(e.sc, &pl2) == CLLM_ERR_INVALID_ARG);
    int32_t tok = 1;
    CHECK(cllm_scheduler_update(e.sc, pl, &tok, 1) == CLLM_ERR_INVALID_ARG);
    OK(cllm_scheduler_update(e.sc, pl, NULL, 0));
    CHECK(cllm_scheduler_update(e.sc, pl, NULL, 0) == CLLM_ERR_INVALID_ARG);
    cllm_seq *q = NULL;
    CHECK(cllm_seq_create(9, &tok, 0, NULL, 0, &q) == CLLM_ERR_INVALID_ARG && q == NULL);
    cllm_request_params p = cllm_request_default_params();
    p.top_p = 0;
    CHECK(cllm_seq_create(9, &tok, 1, &p, 0, &q) == CLLM_ERR_INVALID_ARG && strstr(cllm_last_error(), "top_p"));
    p = cllm_request_default_params();
    p.min_tokens = 20;
    CHECK(cllm_seq_create(9, &tok, 1, &p, 0, &q) == CLLM_ERR_INVALID_ARG);
    cllm_scheduler_params sp = cllm_scheduler_default_params();
    cllm_scheduler *bad = NULL;
    CHECK(cllm_scheduler_create(&sp, e.bm, &bad) == CLLM_ERR_INVALID_ARG); /* max_model_len unset */
    teardown(&e);
}

/* Drive one request with chosen sampled tokens. */
static cllm_seq *drive(const int32_t *toks, int n, int n_prompt, int mml, cllm_request_params p) {
    env e;
    setup(&e, 64, 4, 4, 64, mml);
    int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cllm_seq *q = NULL, *out = NULL;
    OK(cllm_seq_create(1, prompt, n_prompt, &p, FM_EOS, &q));
    OK(cllm_scheduler_add(e.sc, q));
    for (int i = 0; i < n && cllm_scheduler_num_unfinished(e.sc) > 0; i++) {
        const cllm_sched_plan *pl = NULL;
        OK(cllm_scheduler_schedule(e.sc, &pl));
        if (cllm_scheduler_update(e.sc, pl, &toks[i], pl->num_sample) != CLLM_OK) {
            fprintf(stderr, "drive: %s\n", cllm_last_error());
            g_fail++;
        }
    }
    if (cllm_scheduler_take_finished(e.sc, &out, 1) != 1) out = NULL;
    cllm_scheduler_destroy(e.sc); /* frees an unfinished q */
    cllm_kv_destroy(e.bm);
    fm_free(&e.fm);
    return out;
}

static void test_stop_rules(void) {
    cllm_request_params p = cllm_request_default_params();
    int32_t stop_ids[1] = {7};
    p.max_tokens = 10;
    p.min_tokens = 2;
    p.stop_token_ids = stop_ids;
    p.num_stop_token_ids = 1;
    const int32_t t1[] = {FM_EOS, 7, 9, 9};
    cllm_seq *q = drive(t1, 4, 2, 64, p); /* eos before min_tokens ignored; 7 stops */
    CHECK(q && q->status == CLLM_SEQ_FINISHED_STOPPED && cllm_seq_num_output_tokens(q) == 2 && q->stop_reason == 7);
    cllm_seq_destroy(q);
    p.min_tokens = 0;
    const int32_t t2[] = {5, FM_EOS, 9};
    q = drive(t2, 3, 2, 64, p);
    CHECK(q && q->status == CLLM_SEQ_FINISHED_STOPPED && cllm_seq_num_output_tokens(q) == 2 && q->stop_reason == -1);
    cllm_seq_destroy(q);
    p.ignore_eos = true;
    p.max_tokens = 3;
    const int32_t t3[] = {FM_EOS, FM_EOS, FM_EOS, 9};
    q = drive(t3, 4, 2, 64, p);
    CHECK(q && q->status == CLLM_SEQ_FINISHED_LENGTH && cllm_seq_num_output_tokens(q) == 3);
    cllm_seq_destroy(q);
    p.max_tokens = -1; /* up to max_model_len 7 */
    const int32_t t4[] = {9, 9, 9, 9};
    q = drive(t4, 4, 5, 7, p);
    CHECK(q && q->status == CLLM_SEQ_FINISHED_LENGTH && q->num_tokens == 7);
    cllm_seq_destroy(q);
}

int main(void) {
    test_chunked_prefill();
    test_decode_first();
    test_max_num_seqs();
    test_preemption();
    test_abort();
    test_reject();
    test_stop_rules();
    if (g_fail) {
        fprintf(stderr, "test_scheduler: %d checks failed\n", g_fail);
        return 1;
    }
    printf("test_scheduler: all passed\n");
    return 0;
}
