/* Greedy decoding with llama.cpp's C API, for checking a parity rule against a reference:
   free greedy ids with top1-top2 margins, and the same with the reference tokens fed back. */
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>

static void top2(const float *l, int n, int *arg, float *margin) {
    int a = 0; float b1 = l[0], b2 = -1e30f;
    for (int i = 1; i < n; i++) {
        if (l[i] > b1) { b2 = b1; b1 = l[i]; a = i; } else if (l[i] > b2) { b2 = l[i]; }
    }
    *arg = a; *margin = b1 - b2;
}

int main(int argc, char **argv) {
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    int threads = atoi(argv[2]);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int nv = llama_vocab_n_tokens(vocab);
    int np, nr;
    while (scanf("%d", &np) == 1) {
        llama_token *p = malloc(sizeof(llama_token) * np);
        for (int i = 0; i < np; i++) scanf("%d", &p[i]);
        scanf("%d", &nr);
        llama_token *ref = malloc(sizeof(llama_token) * nr);
        for (int i = 0; i < nr; i++) scanf("%d", &ref[i]);
        for (int mode = 0; mode < 2; mode++) {
            struct llama_context_params cp = llama_context_default_params();
            cp.n_ctx = 2048; cp.n_batch = 512; cp.n_ubatch = 512;
            cp.n_threads = threads; cp.n_threads_batch = threads;
            cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
            struct llama_context *ctx = llama_init_from_model(model, cp);
            if (llama_decode(ctx, llama_batch_get_one(p, np))) return 2;
            printf(mode ? "forced" : "free");
            for (int i = 0; i < (mode ? nr : 64); i++) {
                int a; float m;
                top2(llama_get_logits_ith(ctx, -1), nv, &a, &m);
                printf(" %d:%.4f", a, m);
                llama_token next = mode ? ref[i] : a;
                if (!mode && a == 2) break;
                if (mode && i + 1 == nr) break;
                if (llama_decode(ctx, llama_batch_get_one(&next, 1))) return 3;
            }
            printf("\n");
            fflush(stdout);
            llama_free(ctx);
        }
        free(p); free(ref);
    }
    return 0;
}
