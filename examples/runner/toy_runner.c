/* meltrig_toy_runner: a stand-in LLM runner that does real per-token compute (a small
 * transformer with random weights) and writes marker format v1 through the C99 SDK.
 * Usage and marker sequence: examples/README.md. */
#define _POSIX_C_SOURCE 200809L
#define MELTRIG_SDK_PTHREADS 1
#include "meltrig_sdk/meltrig_markers.h"

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Model shape: about 3.4 M multiply-adds per token (a few ms on one core). */
enum { VOCAB = 1024, DIM = 256, LAYERS = 4, HEADS = 4, FF = 1024, MAX_CONTEXT = 16384 };
#define HEAD_DIM (DIM / HEADS)

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) {
  g_signal = sig;
}

/* ---- random weights ---------------------------------------------------------------------- */

static uint64_t g_rng;

static uint64_t splitmix64(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static float uniform(float scale) {
  double u = (double)(splitmix64() >> 11) * (1.0 / 9007199254740992.0);
  return (float)((2.0 * u - 1.0) * (double)scale);
}

typedef struct layer {
  float *wq, *wk, *wv, *wo; /* DIM x DIM */
  float* w1;                /* FF x DIM */
  float* w2;                /* DIM x FF */
  float *kcache, *vcache;   /* context x DIM */
} layer;

typedef struct model {
  float* embed; /* VOCAB x DIM, also the output projection (tied) */
  layer layers[LAYERS];
  int context;
  float x[DIM], h[DIM], q[DIM], att[DIM], o[DIM], u[FF], logits[VOCAB];
  float* scores; /* context */
} model;

static float* random_matrix(size_t rows, size_t cols) {
  float* m = (float*)malloc(rows * cols * sizeof(float));
  float scale = 1.0f / sqrtf((float)cols);
  size_t i;
  if (m == NULL) return NULL;
  for (i = 0; i < rows * cols; ++i)
    m[i] = uniform(scale);
  return m;
}

/* Allocates and fills the weights ("loading"); 0 on success. */
static int model_load(model* m, int context) {
  int l;
  memset(m, 0, sizeof *m);
  m->context = context;
  m->embed = random_matrix(VOCAB, DIM);
  m->scores = (float*)calloc((size_t)context, sizeof(float));
  if (m->embed == NULL || m->scores == NULL) return -1;
  for (l = 0; l < LAYERS; ++l) {
    layer* y = &m->layers[l];
    y->wq = random_matrix(DIM, DIM);
    y->wk = random_matrix(DIM, DIM);
    y->wv = random_matrix(DIM, DIM);
    y->wo = random_matrix(DIM, DIM);
    y->w1 = random_matrix(FF, DIM);
    y->w2 = random_matrix(DIM, FF);
    y->kcache = (float*)calloc((size_t)context * DIM, sizeof(float));
    y->vcache = (float*)calloc((size_t)context * DIM, sizeof(float));
    if (!y->wq || !y->wk || !y->wv || !y->wo || !y->w1 || !y->w2 || !y->kcache || !y->vcache)
      return -1;
  }
  return 0;
}

static void model_free(model* m) {
  int l;
  for (l = 0; l < LAYERS; ++l) {
    layer* y = &m->layers[l];
    free(y->wq);
    free(y->wk);
    free(y->wv);
    free(y->wo);
    free(y->w1);
    free(y->w2);
    free(y->kcache);
    free(y->vcache);
  }
  free(m->embed);
  free(m->scores);
}

/* ---- compute ----------------------------------------------------------------------------- */

static void matvec(const float* w, const float* x, float* y, int rows, int cols) {
  int r, c;
  for (r = 0; r < rows; ++r) {
    const float* row = w + (size_t)r * (size_t)cols;
    float s = 0.0f;
    for (c = 0; c < cols; ++c)
      s += row[c] * x[c];
    y[r] = s;
  }
}

static void rmsnorm(const float* x, float* y, int n) {
  float ss = 0.0f;
  int i;
  for (i = 0; i < n; ++i)
    ss += x[i] * x[i];
  ss = 1.0f / sqrtf(ss / (float)n + 1e-5f);
  for (i = 0; i < n; ++i)
    y[i] = x[i] * ss;
}

/* Runs token `tok` at position `pos` through the model (filling the KV cache); returns the
 * greedy next token. */
static int model_step(model* m, int tok, int pos) {
  int l, hd, t, i, best = 0;
  const float inv_sqrt = 1.0f / sqrtf((float)HEAD_DIM);
  memcpy(m->x, m->embed + (size_t)tok * DIM, sizeof m->x);
  for (l = 0; l < LAYERS; ++l) {
    layer* y = &m->layers[l];
    float* k = y->kcache + (size_t)pos * DIM;
    float* v = y->vcache + (size_t)pos * DIM;
    rmsnorm(m->x, m->h, DIM);
    matvec(y->wq, m->h, m->q, DIM, DIM);
    matvec(y->wk, m->h, k, DIM, DIM);
    matvec(y->wv, m->h, v, DIM, DIM);
    for (hd = 0; hd < HEADS; ++hd) {
      const float* q = m->q + hd * HEAD_DIM;
      float mx = -INFINITY, sum = 0.0f;
      for (t = 0; t <= pos; ++t) {
        const float* kt = y->kcache + (size_t)t * DIM + hd * HEAD_DIM;
        float s = 0.0f;
        for (i = 0; i < HEAD_DIM; ++i)
          s += q[i] * kt[i];
        s *= inv_sqrt;
        m->scores[t] = s;
        if (s > mx) mx = s;
      }
      for (t = 0; t <= pos; ++t) {
        m->scores[t] = expf(m->scores[t] - mx);
        sum += m->scores[t];
      }
      for (i = 0; i < HEAD_DIM; ++i)
        m->att[hd * HEAD_DIM + i] = 0.0f;
      for (t = 0; t <= pos; ++t) {
        const float* vt = y->vcache + (size_t)t * DIM + hd * HEAD_DIM;
        float p = m->scores[t] / sum;
        for (i = 0; i < HEAD_DIM; ++i)
          m->att[hd * HEAD_DIM + i] += p * vt[i];
      }
    }
    matvec(y->wo, m->att, m->o, DIM, DIM);
    for (i = 0; i < DIM; ++i)
      m->x[i] += m->o[i];
    rmsnorm(m->x, m->h, DIM);
    matvec(y->w1, m->h, m->u, FF, DIM);
    for (i = 0; i < FF; ++i)
      if (m->u[i] < 0.0f) m->u[i] = 0.0f;
    matvec(y->w2, m->u, m->o, DIM, FF);
    for (i = 0; i < DIM; ++i)
      m->x[i] += m->o[i];
  }
  rmsnorm(m->x, m->h, DIM);
  matvec(m->embed, m->h, m->logits, VOCAB, DIM);
  for (i = 1; i < VOCAB; ++i)
    if (m->logits[i] > m->logits[best]) best = i;
  return best;
}

/* ---- prompt ------------------------------------------------------------------------------ */

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* One token per whitespace-separated word: FNV-1a of the word's bytes modulo the vocabulary.
 * Writes at most `cap` ids; returns the word count. */
static int tokenize(const char* s, int* ids, int cap) {
  int n = 0;
  while (*s != 0) {
    uint32_t h = 2166136261u;
    while (*s != 0 && is_space(*s))
      ++s;
    if (*s == 0) break;
    while (*s != 0 && !is_space(*s)) {
      h = (h ^ (uint32_t)(unsigned char)*s) * 16777619u;
      ++s;
    }
    if (n < cap) ids[n] = (int)(h % VOCAB);
    ++n;
  }
  return n;
}

/* ---- arguments --------------------------------------------------------------------------- */

typedef struct options {
  const char* markers;
  const char* prompt;
  const char* model;
  const char* run_id;
  long long tokens;
  unsigned long long seed;
  unsigned long long sync_code;
  long long sync_bits;
  long long sync_chip_ms;
  long long sync_threads;
  int sync;
  long long clock_period_ms;
  long long token_delay_ms;
  int fsync_each;
  int stream;
} options;

static int usage(const char* msg, const char* arg) {
  fprintf(stderr, "meltrig_toy_runner: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  fprintf(stderr,
          "usage: meltrig_toy_runner --markers PATH --prompt TEXT --tokens N [--model NAME]\n"
          "       [--seed S] [--run-id ID] [--sync-code 0x1F35 --sync-bits 13 --sync-chip-ms 20]\n"
          "       [--sync-threads N] [--no-sync] [--clock-period-ms 1000] [--token-delay-ms D]\n"
          "       [--fsync] [--stream] | --print-args ARGS...\n");
  return 2;
}

static int parse_ll(const char* s, long long lo, long long hi, long long* out) {
  char* end = NULL;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != 0 || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_ull(const char* s, unsigned long long* out) {
  char* end = NULL;
  unsigned long long v;
  if (*s == '-' || *s == '+') return -1;
  errno = 0;
  v = strtoull(s, &end, 0);
  if (errno != 0 || end == s || *end != 0) return -1;
  *out = v;
  return 0;
}

/* Returns 0, or the exit code of a usage error. */
static int parse_args(int argc, char** argv, options* o) {
  int i;
  long long ncpu = (long long)sysconf(_SC_NPROCESSORS_ONLN);
  memset(o, 0, sizeof *o);
  o->model = "toy-transformer";
  o->tokens = -1;
  o->seed = 1;
  o->sync_code = 0x1F35;
  o->sync_bits = 13;
  o->sync_chip_ms = 20;
  o->sync_threads = ncpu > 1 ? ncpu - 1 : 0;
  o->sync = 1;
  o->clock_period_ms = 1000;
  for (i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1;
    if (strcmp(a, "--no-sync") == 0) {
      o->sync = 0;
      takes = 0;
    } else if (strcmp(a, "--fsync") == 0) {
      o->fsync_each = 1;
      takes = 0;
    } else if (strcmp(a, "--stream") == 0) {
      o->stream = 1;
      takes = 0;
    } else if (v == NULL) {
      return usage(strncmp(a, "--", 2) == 0 ? "missing value for" : "unknown argument", a);
    } else if (strcmp(a, "--markers") == 0) {
      o->markers = v;
    } else if (strcmp(a, "--prompt") == 0) {
      o->prompt = v;
    } else if (strcmp(a, "--model") == 0) {
      o->model = v;
    } else if (strcmp(a, "--run-id") == 0) {
      o->run_id = v;
    } else if (strcmp(a, "--tokens") == 0) {
      if (parse_ll(v, 0, MAX_CONTEXT, &o->tokens) != 0) return usage("bad --tokens", v);
    } else if (strcmp(a, "--seed") == 0) {
      if (parse_ull(v, &o->seed) != 0) return usage("bad --seed", v);
    } else if (strcmp(a, "--sync-code") == 0) {
      if (parse_ull(v, &o->sync_code) != 0) return usage("bad --sync-code", v);
    } else if (strcmp(a, "--sync-bits") == 0) {
      if (parse_ll(v, 1, 64, &o->sync_bits) != 0) return usage("bad --sync-bits", v);
    } else if (strcmp(a, "--sync-chip-ms") == 0) {
      if (parse_ll(v, 1, 10000, &o->sync_chip_ms) != 0) return usage("bad --sync-chip-ms", v);
    } else if (strcmp(a, "--sync-threads") == 0) {
      if (parse_ll(v, 0, MM_MAX_BUSY_THREADS, &o->sync_threads) != 0)
        return usage("bad --sync-threads", v);
    } else if (strcmp(a, "--clock-period-ms") == 0) {
      if (parse_ll(v, 0, 3600000, &o->clock_period_ms) != 0)
        return usage("bad --clock-period-ms", v);
    } else if (strcmp(a, "--token-delay-ms") == 0) {
      if (parse_ll(v, 0, 3600000, &o->token_delay_ms) != 0) return usage("bad --token-delay-ms", v);
    } else {
      return usage("unknown argument", a);
    }
    i += takes;
  }
  if (o->markers == NULL) return usage("missing --markers", NULL);
  if (o->prompt == NULL) return usage("missing --prompt", NULL);
  if (o->tokens < 0) return usage("missing --tokens", NULL);
  if (o->sync_bits < 64 && (o->sync_code >> o->sync_bits) != 0)
    return usage("--sync-code has more bits than --sync-bits", NULL);
  return 0;
}

/* ---- run --------------------------------------------------------------------------------- */

static int fail(const char* what, int rc) {
  fprintf(stderr, "meltrig_toy_runner: %s: %s\n", what, strerror(-rc));
  return 1;
}

/* Sleeps `ms`, returning early on a signal. */
static void delay_ms(long long ms) {
  struct timespec ts;
  if (ms <= 0) return;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (g_signal == 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- streaming mode (--stream) ----------------------------------------------------------------
 */

static void write_out(const char* s, size_t n) {
  while (n > 0) {
    ssize_t r = write(STDOUT_FILENO, s, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    s += r;
    n -= (size_t)r;
  }
}

/* Prints token `i` (id `tok`) as " wID" in one write() and marks it with the time taken right
 * before that write: the true emission time a stamper reading stdout is measured against. */
static int stream_token(mm_writer* w, int i, int tok) {
  char piece[32];
  int n = snprintf(piece, sizeof piece, " w%d", tok);
  int64_t t = mm_now_ns();
  write_out(piece, (size_t)n);
  return mm_token_at(w, t, i, n, 0);
}

/* The llama.cpp end-of-run summary (current llama_perf_* format) on stderr, with this run's
 * counts and times, so a stamped run can be checked against the runner's own figures. */
static void print_perf(int n_prompt, long long tokens, int64_t t_prefill, int64_t t_decode,
                       int64_t t_total) {
  double prompt_ms = (double)t_prefill / 1e6, eval_ms = (double)t_decode / 1e6;
  long long runs = tokens > 0 ? tokens - 1 : 0;
  fprintf(stderr, "llama_perf_sampler_print:    sampling time = %10.2f ms / %5lld runs\n", 0.0,
          tokens);
  fprintf(stderr, "llama_perf_context_print:        load time = %10.2f ms\n", 0.0);
  fprintf(stderr, "llama_perf_context_print: prompt eval time = %10.2f ms / %5d tokens\n",
          prompt_ms, n_prompt);
  fprintf(stderr, "llama_perf_context_print:        eval time = %10.2f ms / %5lld runs\n", eval_ms,
          runs);
  fprintf(stderr, "llama_perf_context_print:       total time = %10.2f ms / %5lld tokens\n",
          (double)t_total / 1e6, (long long)n_prompt + runs);
}

/* Writes run.end status=interrupted, frees what the run holds and returns the exit code for the
 * signal (128 + signal). */
static int interrupted(mm_writer* w, model* m, int* prompt_ids) {
  int sig = (int)g_signal;
  mm_run_end(w, "interrupted");
  mm_close(w);
  model_free(m);
  free(prompt_ids);
  return 128 + sig;
}

/* --print-args anywhere: each argument on its own line (quoting tests); 1 if it was there. */
static int print_args(int argc, char** argv) {
  int i;
  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--print-args") == 0) {
      for (i = 1; i < argc; ++i) {
        fputs(argv[i], stdout);
        fputc('\n', stdout);
      }
      return 1;
    }
  }
  return 0;
}

static void install_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: sleeps return early */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int open_markers(mm_writer* w, const options* o) {
  char header[256];
  int rc;
  snprintf(header, sizeof header, "runner=meltrig_toy_runner seed=%llu", o->seed);
  if ((rc = mm_open(w, o->markers, header)) != 0) return rc;
  mm_set_fsync(w, o->fsync_each);
  mm_set_clock_period_ns(w, (int64_t)o->clock_period_ms * 1000000LL);
  if (o->sync) mm_set_busy_threads(w, (int)o->sync_threads);
  return 0;
}

/* The summary line: stdout, or stderr in --stream mode (stdout holds only the tokens). */
static void report(const options* o, int n_prompt, int tok, int64_t decode_ns) {
  fprintf(o->stream ? stderr : stdout,
          "prompt_tokens=%d tokens=%lld last_token_id=%d decode_ms_per_token=%.3f\n", n_prompt,
          o->tokens, tok,
          o->tokens > 1
              ? (double)decode_ns / 1e6 / (double)(o->tokens - 1) - (double)o->token_delay_ms
              : 0.0);
}

/* The coded sync pulse, when asked for (--sync); 0 or a negative errno. */
static int sync_pulse(mm_writer* w, const options* o) {
  if (!o->sync) return 0;
  return mm_sync_pulse(w, o->sync_code, (unsigned)o->sync_bits, o->sync_chip_ms * 1000000LL);
}

int main(int argc, char** argv) {
  options o;
  mm_writer w;
  model m;
  char run_id[64];
  int* prompt_ids;
  int n_prompt, rc, i, tok, pos = 0;
  int64_t t_first = 0, t_last = 0, t_start = mm_now_ns(), t_prefill = 0;

  if (print_args(argc, argv)) return 0;
  if ((rc = parse_args(argc, argv, &o)) != 0) return rc;

  n_prompt = tokenize(o.prompt, NULL, 0);
  if (n_prompt == 0) return usage("the prompt has no words", NULL);
  if ((long long)n_prompt + o.tokens > MAX_CONTEXT)
    return usage("prompt + tokens exceed 16384", NULL);
  prompt_ids = (int*)malloc((size_t)n_prompt * sizeof(int));
  if (prompt_ids == NULL) return fail("prompt", -ENOMEM);
  tokenize(o.prompt, prompt_ids, n_prompt);

  install_handlers();
  if ((rc = open_markers(&w, &o)) != 0) return fail(o.markers, rc);
  memset(&m, 0, sizeof m);

  if (o.run_id == NULL) {
    snprintf(run_id, sizeof run_id, "toy-%ld", (long)getpid());
    o.run_id = run_id;
  }
  if ((rc = mm_run_start(&w, o.run_id)) != 0) return fail("run.start", rc);
  if ((rc = sync_pulse(&w, &o)) != 0) return fail("sync pulse", rc);
  if (g_signal) return interrupted(&w, &m, prompt_ids);

  if ((rc = mm_load_start(&w, o.model)) != 0) return fail("load.start", rc);
  g_rng = o.seed;
  if (model_load(&m, n_prompt + (int)o.tokens) != 0) {
    model_free(&m);
    mm_run_end(&w, "error");
    mm_close(&w);
    return fail("load", -ENOMEM);
  }
  if ((rc = mm_load_end(&w)) != 0) return fail("load.end", rc);

  if (o.stream) write_out(o.prompt, strlen(o.prompt)); /* the echo, as llama-cli prints it */
  if ((rc = mm_prefill_start(&w, n_prompt)) != 0) return fail("prefill.start", rc);
  t_prefill = mm_now_ns();
  tok = 0;
  for (i = 0; i < n_prompt; ++i) {
    if (g_signal) return interrupted(&w, &m, prompt_ids);
    tok = model_step(&m, prompt_ids[i], pos++);
  }
  if ((rc = mm_prefill_end(&w, n_prompt)) != 0) return fail("prefill.end", rc);
  t_prefill = mm_now_ns() - t_prefill;

  /* Token 0 is the one the prefill produced; each further token costs one step. */
  for (i = 0; i < (int)o.tokens; ++i) {
    if (i > 0) tok = model_step(&m, tok, pos++);
    rc = o.stream ? stream_token(&w, i, tok) : mm_token(&w, i);
    if (rc != 0) return fail("token", rc);
    if (i == 0) t_first = mm_now_ns();
    t_last = mm_now_ns();
    delay_ms(o.token_delay_ms);
    if (g_signal) return interrupted(&w, &m, prompt_ids);
  }

  if ((rc = sync_pulse(&w, &o)) != 0) return fail("sync pulse", rc);
  if (g_signal) return interrupted(&w, &m, prompt_ids);
  if ((rc = mm_run_end(&w, "ok")) != 0) return fail("run.end", rc);
  if ((rc = mm_close(&w)) != 0) return fail("close", rc);
  if (o.stream) {
    write_out("\n", 1);
    print_perf(n_prompt, o.tokens, t_prefill, t_last - t_first, mm_now_ns() - t_start);
  }
  report(&o, n_prompt, tok, t_last - t_first);
  model_free(&m);
  free(prompt_ids);
  return 0;
}
