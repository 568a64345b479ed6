/* CPU reference ops vs naive, independent formulations written here (double
 * precision, dense layouts, HF's formulas), over many shapes; sampler
 * properties and its distribution against softmax. */
#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0;
static uint64_t g_rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, [0,1) */
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void) { return (float)((urand() + urand() + urand() - 1.5) * 2.0); }
static float *randv(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = nrand();
    return p;
}

/* |a-b| <= atol + rtol*|ref| for all; prints the first mismatches. */
static void check(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5) fprintf(stderr, "  %s: [%zu] got %.7g want %.7g\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    if (bad) { fprintf(stderr, "FAIL %s: %d/%zu mismatches\n", what, bad, n); g_fail++; }
}

static void test_rmsnorm(int rows, int E) {
    float *x = randv((size_t)rows * E), *w = randv((size_t)E), *res = randv((size_t)rows * E);
    float *out = malloc(sizeof(float) * rows * E), *res2 = malloc(sizeof(float) * rows * E);
    double *ref = malloc(sizeof(double) * rows * E), *rref = malloc(sizeof(double) * rows * E);
    memcpy(res2, res, sizeof(float) * rows * E);
    for (int pass = 0; pass < 2; pass++) { /* 0: plain, 1: fused residual add */
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < E; i++) {
                double v = x[r * E + i] + (pass ? res2[r * E + i] : 0.0);
                rref[r * E + i] = v;
                ss += v * v;
            }
            double inv = 1.0 / sqrt(ss / E + 1e-5);
            for (int i = 0; i < E; i++) ref[r * E + i] = rref[r * E + i] * inv * w[i];
        }
        cllm_status st = cllm_cpu_rmsnorm(x, pass ? res : NULL, w, rows, E, 1e-5f, out);
        if (st) { g_fail++; fprintf(stderr, "FAIL rmsnorm status\n"); }
        check(pass ? "rmsnorm+residual" : "rmsnorm", out, ref, (size_t)rows * E, 1e-5, 1e-5);
        if (pass) check("rmsnorm residual", res, rref, (size_t)rows * E, 1e-6, 1e-6);
    }
    /* head_rmsnorm: stride > nheads*D, in place */
    int H = 3, D = E, stride = H * D + 5;
    float *hx = randv((size_t)rows * stride);
    double *href = malloc(sizeof(double) * rows * stride);
    for (int i = 0; i < rows * stride; i++) href[i] = hx[i];
    for (int t = 0; t < rows; t++)
        for (int h = 0; h < H; h++) {
            double ss = 0;
            for (int d = 0; d < D; d++) ss += (double)hx[t * stride + h * D + d] * hx[t * stride + h * D + d];
            double inv = 1.0 / sqrt(ss / D + 1e-6);
            for (int d = 0; d < D; d++) href[t * stride + h * D + d] = hx[t * stride + h * D + d] * inv * w[d];
        }
    cllm_cpu_head_rmsnorm(hx, rows, H, D, stride, w, 1e-6f);
    check("head_rmsnorm", hx, href, (size_t)rows * stride, 1e-5, 1e-5);
    free(hx); free(href);
    free(x); free(w); free(res); free(out); free(res2); free(ref); free(rref);
}

static void test_linear(int T, int N, int K, int bias) {
    float *x = randv((size_t)T * K), *W = randv((size_t)N * K), *b = randv((size_t)N);
    float *out = malloc(sizeof(float) * ((size_t)T * N + 1));
    double *ref = malloc(sizeof(double) * ((size_t)T * N + 1));
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = bias ? b[n] : 0;
            for (int k = 0; k < K; k++) s += (double)x[t * K + k] * W[(size_t)n * K + k];
            ref[(size_t)t * N + n] = s;
        }
    cllm_weight w = {.data = W, .bias = bias ? b : NULL, .n = N, .k = K};
    cllm_cpu_linear(x, T, &w, out);
    check("linear", out, ref, (size_t)T * N, 1e-4 * sqrt(K), 1e-4);
    free(x); free(W); free(b); free(out); free(ref);
}

static void test_rope(int T, int H, int Hkv, int D) {
    int qs = H * D + 3, ks = Hkv * D + 7;
    float *q = randv((size_t)T * qs), *k = randv((size_t)T * ks), *inv = malloc(sizeof(float) * D / 2);
    int32_t *pos = malloc(sizeof(int32_t) * T);
    for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / D);
    for (int t = 0; t < T; t++) pos[t] = (int32_t)(urand() * 4000);
    double *qr = malloc(sizeof(double) * T * qs), *kr = malloc(sizeof(double) * T * ks);
    /* HF: emb = cat(freqs, freqs); x*cos(emb) + rotate_half(x)*sin(emb) */
    for (int pass = 0; pass < 2; pass++) {
        float *x = pass ? k : q;
        double *r = pass ? kr : qr;
        int nh = pass ? Hkv : H, st = pass ? ks : qs;
        for (int i = 0; i < T * st; i++) r[i] = x[i];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                float *v = x + t * st + h * D;
                for (int d = 0; d < D; d++) {
                    double ang = (double)(float)((float)pos[t] * inv[d % (D / 2)]);
                    double rot = d < D / 2 ? -v[d + D / 2] : v[d - D / 2];
                    r[t * st + h * D + d] = v[d] * cos(ang) + rot * sin(ang);
                }
            }
    }
    cllm_cpu_rope(q, k, pos, T, H, Hkv, D, qs, ks, inv);
    check("rope q", q, qr, (size_t)T * qs, 2e-4, 1e-4);
    check("rope k", k, kr, (size_t)T * ks, 2e-4, 1e-4);
    free(q); free(k); free(inv); free(pos); free(qr); free(kr);
}

static void test_silu_embed_gather(int T, int I) {
    float *gu = randv((size_t)T * 2 * I), *out = malloc(sizeof(float) * T * I);
    double *ref = malloc(sizeof(double) * T * I);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
            double g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
            ref[t * I + i] = g / (1 + exp(-g)) * u;
        }
    cllm_cpu_silu_mul(gu, T, I, out);
    check("silu_mul", out, ref, (size_t)T * I, 1e-6, 1e-5);
    /* embedding + gather_rows: exact copies */
    int V = 7;
    float *table = randv((size_t)V * I), *emb = malloc(sizeof(float) * T * I), *g = malloc(sizeof(float) * T * I);
    int32_t *ids = malloc(sizeof(int32_t) * T), *idx = malloc(sizeof(int32_t) * T);
    double *eref = malloc(sizeof(double) * T * I), *gref = malloc(sizeof(double) * T * I);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)(urand() * V), idx[t] = (int32_t)(urand() * T);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) eref[t * I + i] = table[ids[t] * I + i];
    cllm_cpu_embedding(ids, T, table, 0, V, I, emb);
    check("embedding", emb, eref, (size_t)T * I, 0, 0);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) gref[t * I + i] = emb[idx[t] * I + i];
    cllm_cpu_gather_rows(emb, idx, T, I, g);
    check("gather_rows", g, gref, (size_t)T * I, 0, 0);
    /* a vocabulary shard: rows [vs, vs + V) of a larger vocabulary; other ids give zero rows */
    int vs = 5;
    for (int t = 0; t < T; t++) ids[t] = (int32_t)(urand() * (V + 10)) - 1; /* -1 .. V+8 */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++)
            eref[t * I + i] = ids[t] >= vs && ids[t] < vs + V ? table[(ids[t] - vs) * I + i] : 0.0;
    cllm_cpu_embedding(ids, T, table, vs, V, I, emb);
    check("embedding (vocabulary shard)", emb, eref, (size_t)T * I, 0, 0);
    if (cllm_cpu_embedding(ids, T, table, -1, V, I, emb) != CLLM_ERR_INVALID_ARG) {
        fprintf(stderr, "FAIL embedding accepted a negative vocab_start\n");
        g_fail++;
    }
    free(gu); free(out); free(ref); free(table); free(emb); free(g); free(ids); free(idx); free(eref); free(gref);
}

/* Several sequences: ctx[s] cached tokens + q[s] new ones, paged with a
 * shuffled block assignment and block size P; GQA H/Hkv. K/V of every
 * position live in a dense (pos, Hkv, D) array per sequence; new tokens go
 * through kv_write (checked against that array), attention against a dense
 * masked softmax in double. */
static void test_attention(int S, const int *ctx, const int *qn, int H, int Hkv, int D, int P) {
    int T = 0, maxb = 0, total_blocks = 0;
    for (int s = 0; s < S; s++) {
        T += qn[s];
        int nb = (ctx[s] + qn[s] + P - 1) / P;
        if (nb > maxb) maxb = nb;
        total_blocks += nb;
    }
    int B = total_blocks + 3, row = Hkv * D, qs = H * D + 2 * row; /* q inside a fused qkv row */
    int32_t *perm = malloc(sizeof(int32_t) * B);
    for (int i = 0; i < B; i++) perm[i] = i;
    for (int i = B - 1; i > 0; i--) { int j = (int)(urand() * (i + 1)); int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    int32_t *bt = malloc(sizeof(int32_t) * S * maxb), *qsl = malloc(sizeof(int32_t) * (S + 1));
    int32_t *lens = malloc(sizeof(int32_t) * S), *slots = malloc(sizeof(int32_t) * (T + 1));
    float *kc = calloc((size_t)B * P * row, sizeof(float)), *vc = calloc((size_t)B * P * row, sizeof(float));
    float **Kd = malloc(sizeof(float *) * S), **Vd = malloc(sizeof(float *) * S);
    float *qkv = randv((size_t)T * qs), *out = malloc(sizeof(float) * T * H * D);
    double *ref = malloc(sizeof(double) * T * H * D);
    int used = 0, t0 = 0;
    qsl[0] = 0;
    for (int s = 0; s < S; s++) {
        int L = ctx[s] + qn[s], nb = (L + P - 1) / P;
        lens[s] = L;
        qsl[s + 1] = qsl[s] + qn[s];
        for (int j = 0; j < maxb; j++) bt[s * maxb + j] = j < nb ? perm[used + j] : -1;
        used += nb;
        Kd[s] = randv((size_t)L * row);
        Vd[s] = randv((size_t)L * row);
        for (int p = 0; p < L; p++) {
            int slot = bt[s * maxb + p / P] * P + p % P;
            if (p < ctx[s]) { /* cached prefix: place directly */
                memcpy(kc + (size_t)slot * row, Kd[s] + (size_t)p * row, sizeof(float) * row);
                memcpy(vc + (size_t)slot * row, Vd[s] + (size_t)p * row, sizeof(float) * row);
            } else { /* new token: its k, v sit in the fused row after q */
                int t = t0 + p - ctx[s];
                memcpy(qkv + (size_t)t * qs + H * D, Kd[s] + (size_t)p * row, sizeof(float) * row);
                memcpy(qkv + (size_t)t * qs + H * D + row, Vd[s] + (size_t)p * row, sizeof(float) * row);
                slots[t] = slot;
            }
        }
        t0 += qn[s];
    }
    /* one padding token (slot -1) that must be skipped */
    cllm_attn_meta meta = {S, T, 0, 0, P, maxb, qsl, lens, bt, slots};
    float *kc_before = malloc(sizeof(float) * (size_t)B * P * row);
    memcpy(kc_before, kc, sizeof(float) * (size_t)B * P * row);
    cllm_cpu_kv_write(qkv + H * D, qkv + H * D + row, qs, qs, &meta, Hkv, D, kc, vc, NULL);
    /* check cache against the dense arrays */
    double *cref = malloc(sizeof(double) * row);
    for (int s = 0; s < S; s++)
        for (int p = 0; p < lens[s]; p++) {
            int slot = bt[s * maxb + p / P] * P + p % P;
            for (int i = 0; i < row; i++) cref[i] = Kd[s][(size_t)p * row + i];
            check("kv_write k", kc + (size_t)slot * row, cref, row, 0, 0);
            for (int i = 0; i < row; i++) cref[i] = Vd[s][(size_t)p * row + i];
            check("kv_write v", vc + (size_t)slot * row, cref, row, 0, 0);
        }
    /* slot -1 skipped: rewriting token 0 with slot -1 changes nothing */
    if (T > 0) {
        int32_t keep = slots[0];
        slots[0] = -1;
        memcpy(kc_before, kc, sizeof(float) * (size_t)B * P * row);
        float *junk = randv((size_t)qs);
        cllm_attn_meta m1 = meta;
        m1.num_tokens = 1;
        cllm_cpu_kv_write(junk, junk, qs, qs, &m1, Hkv, D, kc, vc, NULL);
        if (memcmp(kc_before, kc, sizeof(float) * (size_t)B * P * row)) { fprintf(stderr, "FAIL kv_write slot -1\n"); g_fail++; }
        slots[0] = keep;
        free(junk);
    }
    double scale = 1.0 / sqrt(D);
    double *sc = malloc(sizeof(double) * (ctx[0] + qn[0] + 1000));
    t0 = 0;
    for (int s = 0; s < S; s++) {
        int L = lens[s];
        sc = realloc(sc, sizeof(double) * (L + 1));
        for (int i = 0; i < qn[s]; i++) {
            int t = t0 + i, mypos = ctx[s] + i;
            for (int h = 0; h < H; h++) {
                int kvh = h / (H / Hkv);
                double mx = -1e300, sum = 0;
                for (int p = 0; p < L; p++) { /* dense scores, masked above the diagonal */
                    double d = 0;
                    for (int e = 0; e < D; e++) d += (double)qkv[(size_t)t * qs + h * D + e] * Kd[s][(size_t)p * row + kvh * D + e];
                    sc[p] = p <= mypos ? d * scale : -INFINITY;
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = 0; p < L; p++) sum += (sc[p] = exp(sc[p] - mx));
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int p = 0; p < L; p++) o += sc[p] / sum * Vd[s][(size_t)p * row + kvh * D + e];
                    ref[((size_t)t * H + h) * D + e] = o;
                }
            }
        }
        t0 += qn[s];
    }
    meta.max_query_len = 1; /* not read by the reference op */
    cllm_cpu_attention(qkv, qs, kc, vc, &meta, H, Hkv, D, (float)scale, out, NULL);
    char what[96];
    snprintf(what, sizeof what, "attention S=%d H=%d Hkv=%d D=%d P=%d", S, H, Hkv, D, P);
    check(what, out, ref, (size_t)T * H * D, 2e-5, 1e-4);
    for (int s = 0; s < S; s++) { free(Kd[s]); free(Vd[s]); }
    free(Kd); free(Vd); free(perm); free(bt); free(qsl); free(lens); free(slots); free(kc); free(vc);
    free(qkv); free(out); free(ref); free(kc_before); free(cref); free(sc);
}

/* fp8 (float8_e4m3fn) KV cache: the same paged layout as test_attention,
 * with a prefix already cached (codes placed directly, as prefix-cached
 * blocks hold them) and new tokens through kv_write with scales (ks, vs).
 * kv_write must store cllm_f32_to_fp8_e4m3(x / scale) (amp scales the
 * inputs so that some saturate at +-448 * scale); attention over the fp8
 * cache must equal, bit for bit, the f32 attention over the dequantized
 * cache (code -> f32 * scale). */
static void test_attention_fp8(int S, const int *ctx, const int *qn, int H, int Hkv, int D, int P, float ks, float vs,
                               float amp) {
    int T = 0, maxb = 0, total = 0;
    for (int s = 0; s < S; s++) {
        T += qn[s];
        int nb = (ctx[s] + qn[s] + P - 1) / P;
        if (nb > maxb) maxb = nb;
        total += nb;
    }
    int B = total + 2, row = Hkv * D, qs = H * D + 2 * row;
    size_t csz = (size_t)B * P * row;
    int32_t *bt = malloc(sizeof(int32_t) * S * maxb), *qsl = malloc(sizeof(int32_t) * (S + 1));
    int32_t *lens = malloc(sizeof(int32_t) * S), *slots = malloc(sizeof(int32_t) * (T + 1));
    uint8_t *kc = calloc(csz, 1), *vc = calloc(csz, 1);
    float *kd = calloc(csz, sizeof(float)), *vd = calloc(csz, sizeof(float)); /* dequantized copies */
    float *qkv = randv((size_t)T * qs), *out = malloc(sizeof(float) * T * H * D), *ref = malloc(sizeof(float) * T * H * D);
    for (size_t i = 0; i < (size_t)T * qs; i++) qkv[i] *= amp;
    int used = B - 1, t0 = 0; /* blocks handed out from the top down: not in order */
    qsl[0] = 0;
    for (int s = 0; s < S; s++) {
        int L = ctx[s] + qn[s], nb = (L + P - 1) / P;
        lens[s] = L;
        qsl[s + 1] = qsl[s] + qn[s];
        for (int j = 0; j < maxb; j++) bt[s * maxb + j] = j < nb ? used-- : -1;
        for (int p = 0; p < L; p++) {
            int slot = bt[s * maxb + p / P] * P + p % P;
            if (p < ctx[s]) { /* cached prefix: codes of random values */
                for (int i = 0; i < row; i++) {
                    kc[(size_t)slot * row + i] = cllm_f32_to_fp8_e4m3(nrand() * amp / ks);
                    vc[(size_t)slot * row + i] = cllm_f32_to_fp8_e4m3(nrand() * amp / vs);
                }
            } else {
                slots[t0 + p - ctx[s]] = slot;
            }
        }
        t0 += qn[s];
    }
    cllm_kv_quant f8 = {CLLM_DTYPE_F8_E4M3, ks, vs};
    cllm_attn_meta meta = {S, T, 1, 0, P, maxb, qsl, lens, bt, slots};
    if (cllm_cpu_kv_write(qkv + H * D, qkv + H * D + row, qs, qs, &meta, Hkv, D, kc, vc, &f8) != CLLM_OK) {
        fprintf(stderr, "FAIL fp8 kv_write: %s\n", cllm_last_error());
        g_fail++;
    }
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < row; i++) {
            uint8_t wk = cllm_f32_to_fp8_e4m3(qkv[(size_t)t * qs + H * D + i] / ks);
            uint8_t wv = cllm_f32_to_fp8_e4m3(qkv[(size_t)t * qs + H * D + row + i] / vs);
            bad += kc[(size_t)slots[t] * row + i] != wk || vc[(size_t)slots[t] * row + i] != wv;
        }
    int sat = 0;
    for (size_t i = 0; i < csz; i++) {
        kd[i] = cllm_fp8_e4m3_to_f32(kc[i]) * ks;
        vd[i] = cllm_fp8_e4m3_to_f32(vc[i]) * vs;
        sat += (kc[i] & 0x7f) == 0x7e;
    }
    double scale = 1.0 / sqrt(D);
    cllm_cpu_attention(qkv, qs, kd, vd, &meta, H, Hkv, D, (float)scale, ref, NULL);
    cllm_cpu_attention(qkv, qs, kc, vc, &meta, H, Hkv, D, (float)scale, out, &f8);
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)T * H * D; i++) diff += memcmp(&out[i], &ref[i], sizeof(float)) != 0;
    if (bad || diff) {
        fprintf(stderr, "FAIL fp8 S=%d H=%d Hkv=%d D=%d P=%d scales %g/%g: %d codes written wrong, %zu outputs differ\n",
                S, H, Hkv, D, P, (double)ks, (double)vs, bad, diff);
        g_fail++;
    }
    if (amp > 100 && !sat) { fprintf(stderr, "FAIL fp8: amp %g saturated nothing\n", (double)amp); g_fail++; }
    free(bt); free(qsl); free(lens); free(slots); free(kc); free(vc); free(kd); free(vd); free(qkv); free(out); free(ref);
}

static int32_t sample1(const float *logits, int V, cllm_sample_params p) {
    void *ws = malloc(cllm_cpu_sample_workspace_bytes(1, V));
    int32_t tok = -1;
    if (cllm_cpu_sample(logits, 1, V, &p, ws, &tok) != CLLM_OK) tok = -2;
    free(ws);
    return tok;
}

static void expect_tok(const char *what, int32_t got, int32_t want) {
    if (got != want) { fprintf(stderr, "FAIL %s: got %d want %d\n", what, got, want); g_fail++; }
}

static void test_sampler(void) {
    int V = 1000;
    float *lg = randv((size_t)V);
    int am = 0;
    for (int i = 1; i < V; i++) if (lg[i] > lg[am]) am = i;
    cllm_sample_params g = {0.0f, 1.0f, 0.0f, -1, 5, 0};
    expect_tok("greedy", sample1(lg, V, g), am);
    float tie[4] = {1, 3, 3, 0};
    expect_tok("greedy tie -> lowest id", sample1(tie, 4, g), 1);
    cllm_sample_params t = {0.8f, 1.0f, 0.0f, -1, 1234, 7};
    expect_tok("seeded reproducible", sample1(lg, V, t), sample1(lg, V, t));
    int differ = 0;
    for (int s = 0; s < 20; s++) { t.seed = (uint64_t)s; if (sample1(lg, V, t) != sample1(lg, V, (cllm_sample_params){0.8f, 1, 0, -1, 999, 7})) differ++; }
    if (differ == 0) { fprintf(stderr, "FAIL different seeds never differ\n"); g_fail++; }
    for (int s = 0; s < 50; s++) {
        expect_tok("top_k=1 == greedy", sample1(lg, V, (cllm_sample_params){1.5f, 1.0f, 0.0f, 1, (uint64_t)s, 0}), am);
        expect_tok("tiny top_p == greedy", sample1(lg, V, (cllm_sample_params){1.5f, 1e-6f, 0.0f, -1, (uint64_t)s, 3}), am);
        expect_tok("min_p=1 == greedy", sample1(lg, V, (cllm_sample_params){1.5f, 1.0f, 1.0f, -1, (uint64_t)s, 1}), am);
    }
    /* min_p: drawn tokens have prob >= min_p * max_prob */
    double pmax = 0, z = 0;
    for (int i = 0; i < V; i++) z += exp(lg[i]);
    pmax = exp(lg[am]) / z;
    for (int s = 0; s < 200; s++) {
        int32_t k = sample1(lg, V, (cllm_sample_params){1.0f, 1.0f, 0.3f, -1, (uint64_t)s, 0});
        if (k < 0 || exp(lg[k]) / z < 0.3 * pmax * (1 - 1e-5)) { fprintf(stderr, "FAIL min_p kept %d\n", k); g_fail++; break; }
    }
    /* distribution vs softmax (temperature 0.7), and top-k=3 vs renormalized top 3 */
    enum { SV = 6, N = 40000 };
    float small[SV] = {0.5f, -1.0f, 1.2f, 0.0f, 0.9f, -0.3f};
    for (int mode = 0; mode < 2; mode++) {
        double p[SV], zz = 0;
        int cnt[SV] = {0};
        for (int i = 0; i < SV; i++) zz += (p[i] = exp(small[i] / 0.7));
        if (mode == 1) { /* top 3 are ids 2, 4, 0 */
            zz = p[2] + p[4] + p[0];
            for (int i = 0; i < SV; i++) if (i != 2 && i != 4 && i != 0) p[i] = 0;
        }
        cllm_sample_params sp = {0.7f, 1.0f, 0.0f, mode ? 3 : -1, 42, 0};
        for (int n = 0; n < N; n++) { sp.step = (uint64_t)n; sp.seed = (uint64_t)n * 7919u; cnt[sample1(small, SV, sp)]++; }
        for (int i = 0; i < SV; i++) {
            double want = p[i] / zz, got = (double)cnt[i] / N, sd = sqrt(want * (1 - want) / N);
            if (fabs(got - want) > 5 * sd + 1e-9) {
                fprintf(stderr, "FAIL sampler distribution mode %d token %d: %.4f vs softmax %.4f\n", mode, i, got, want);
                g_fail++;
            }
        }
    }
    /* top_p 0.5 on a known distribution: probs (sorted) .4 .3 .2 .1 -> keep ids of .4 and .3 */
    float q4[4] = {(float)log(0.1), (float)log(0.4), (float)log(0.2), (float)log(0.3)};
    for (int s = 0; s < 300; s++) {
        int32_t k = sample1(q4, 4, (cllm_sample_params){1.0f, 0.5f, 0.0f, -1, (uint64_t)s, 0});
        if (k != 1 && k != 3) { fprintf(stderr, "FAIL top_p 0.5 drew %d\n", k); g_fail++; break; }
    }
    free(lg);
}

int main(void) {
    int shapes[][2] = {{1, 1}, {1, 64}, {3, 17}, {7, 128}, {33, 255}, {2, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_rmsnorm(shapes[i][0], shapes[i][1]);
    int lin[][3] = {{1, 1, 1}, {1, 7, 13}, {5, 33, 65}, {17, 128, 64}, {64, 257, 129}, {3, 1000, 512}};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        test_linear(lin[i][0], lin[i][1], lin[i][2], 0);
        test_linear(lin[i][0], lin[i][1], lin[i][2], 1);
    }
    int rp[][4] = {{1, 1, 1, 2}, {3, 8, 4, 8}, {5, 4, 1, 64}, {9, 16, 2, 128}, {2, 2, 2, 256}};
    for (size_t i = 0; i < sizeof rp / sizeof rp[0]; i++) test_rope(rp[i][0], rp[i][1], rp[i][2], rp[i][3]);
    test_silu_embed_gather(1, 1);
    test_silu_embed_gather(13, 172);
    test_silu_embed_gather(64, 1031);
    /* attention: decode, prefill, prefix + chunk, partial blocks, GQA 1/2/4, D 64/128/256 */
    int c1[] = {0}, q1[] = {1};
    test_attention(1, c1, q1, 2, 2, 64, 16);
    int c2[] = {0, 5, 40}, q2[] = {9, 1, 1};
    test_attention(3, c2, q2, 8, 4, 64, 16);
    int c3[] = {17, 0, 3, 31}, q3[] = {5, 20, 1, 7};
    test_attention(4, c3, q3, 8, 2, 128, 16);
    test_attention(4, c3, q3, 4, 4, 256, 8);
    int c4[] = {100, 2}, q4[] = {3, 37};
    test_attention(2, c4, q4, 8, 2, 64, 32);
    test_attention(2, c4, q4, 6, 3, 8, 1);
    /* fp8 KV cache: decode, prefill, prefix + chunk, GQA, scales 1 and calibrated, saturation */
    test_attention_fp8(1, c1, q1, 2, 2, 64, 16, 1.0f, 1.0f, 1.0f);
    test_attention_fp8(3, c2, q2, 8, 4, 64, 16, 0.0125f, 0.02f, 1.0f);
    test_attention_fp8(4, c3, q3, 8, 2, 128, 16, 1.0f, 1.0f, 3.0f);
    test_attention_fp8(2, c4, q4, 6, 3, 8, 1, 0.5f, 2.0f, 1.0f);
    test_attention_fp8(2, c4, q4, 8, 2, 64, 32, 1.0f, 1.0f, 600.0f);
    {   /* a cache dtype the CPU op does not know, and bad scales, are errors */
        cllm_kv_quant e5 = {CLLM_DTYPE_F8_E5M2, 1, 1}, z = {CLLM_DTYPE_F8_E4M3, 0, 1};
        int32_t qsl0[2] = {0, 1}, len1 = 1, bt0 = 0, slot0 = 0;
        cllm_attn_meta m = {1, 1, 1, 1, 16, 1, qsl0, &len1, &bt0, &slot0};
        float buf[64] = {0};
        uint8_t c8[64];
        if (cllm_cpu_kv_write(buf, buf, 8, 8, &m, 1, 8, c8, c8, &e5) != CLLM_ERR_UNSUPPORTED ||
            cllm_cpu_attention(buf, 8, c8, c8, &m, 1, 1, 8, 1.f, buf + 8, &z) != CLLM_ERR_INVALID_ARG) {
            fprintf(stderr, "FAIL fp8: unsupported dtype / zero scale not refused\n");
            g_fail++;
        }
    }
    test_sampler();
    if (g_fail) { fprintf(stderr, "%d check(s) failed\n", g_fail); return 1; }
    printf("all CPU op checks passed\n");
    return 0;
}
