/* meltrig runner SDK: writes marker format v1 (docs/markers.md) from an LLM runner on the device.
 *
 * Header-only C99 for Linux and Android (bionic); needs only libc/POSIX. Include it before any
 * other header, or build with _POSIX_C_SOURCE >= 200809L (or _GNU_SOURCE).
 *
 *   mm_writer w;
 *   if (mm_open(&w, "/data/local/tmp/run.markers", "device=pixel8") != 0) ...   header + clock
 *   mm_run_start(&w, "run-17");
 *   mm_sync_pulse(&w, 0x1F35, 13, 20000000);     13-bit Barker code, 20 ms chips
 *   mm_load_start(&w, "llama-3.2-1b-q4");  ...  mm_load_end(&w);
 *   mm_prefill_start(&w, n_prompt);  ...  mm_prefill_end(&w, n_prompt);
 *   mm_token(&w, i);                             as soon as token i is available
 *   mm_run_end(&w, "ok");
 *   mm_close(&w);                                final clock triple
 *
 * Every call builds one complete line in a stack buffer and hands it to the kernel with one
 * write() on a file opened O_APPEND: nothing is buffered in the process, so a crash (even
 * SIGKILL) loses at most the line being written. write() lands in the page cache, which survives
 * a process crash; only a power loss or kernel crash can lose it. mm_set_fsync(w, 1) adds an
 * fsync() per line for that case, at a cost of milliseconds per line on flash.
 *
 * Every line is stamped with CLOCK_MONOTONIC in int64 ns. A clock triple (monotonic, boottime,
 * realtime read back to back) is written at mm_open, at mm_close, by mm_clock, and after any
 * event once the clock period (default 1 s, mm_set_clock_period_ns) has passed since the last.
 *
 * Return values: 0 on success, -errno on failure (-EINVAL bad argument, -E2BIG line longer than
 * MM_MAX_LINE, -EBADF writer not open, or the errno of open/write/fsync/close).
 *
 * A writer is not thread-safe: use it from one thread at a time (lock around it otherwise).
 *
 * Sync pulses: with MELTRIG_SDK_PTHREADS defined to 1 (link with -pthread), mm_set_busy_threads
 * adds helper threads that spin during busy chips, so the pulse loads more cores. */
#ifndef MELTRIG_SDK_MELTRIG_MARKERS_H
#define MELTRIG_SDK_MELTRIG_MARKERS_H

#if !defined(__cplusplus) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_XOPEN_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MELTRIG_SDK_PTHREADS
#define MELTRIG_SDK_PTHREADS 0
#endif
#if MELTRIG_SDK_PTHREADS
#include <pthread.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Format version written in the header line. */
#define MM_FORMAT_VERSION 1
/** Longest line (with '\n') the SDK writes; longer ones are refused with -E2BIG. */
#define MM_MAX_LINE 4096
/** Default period of automatic clock triples. */
#define MM_DEFAULT_CLOCK_PERIOD_NS 1000000000LL
/** Idle lead before the first chip of a sync pulse, so helper threads are ready in time. */
#define MM_SYNC_LEAD_NS 2000000LL
/** Most helper threads a sync pulse starts. */
#define MM_MAX_BUSY_THREADS 64

/** An open marker file. Fields are private; set options through the mm_set_* functions. */
typedef struct mm_writer {
  int fd;                  /* -1 when closed */
  int fsync_each;          /* nonzero: fsync() after every line */
  int busy_threads;        /* helper threads spinning during busy sync chips */
  int error;               /* first write error (negative errno), 0 if none */
  int64_t clock_period_ns; /* automatic clock triples; 0 = only at open, close and mm_clock */
  int64_t last_clock_ns;   /* monotonic time of the last clock triple */
} mm_writer;

/* ---- internals: line building ---------------------------------------------------------------- */

typedef struct mm__line {
  char buf[MM_MAX_LINE];
  size_t len;
  int overflow;
} mm__line;

static inline int64_t mm__read_clock(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) return -1;
  return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}

/** CLOCK_MONOTONIC now, in ns: the time base of every marker. */
static inline int64_t mm_now_ns(void) {
  return mm__read_clock(CLOCK_MONOTONIC);
}

static inline void mm__put(mm__line* l, const char* s, size_t n) {
  if (l->overflow || n > MM_MAX_LINE - l->len) {
    l->overflow = 1;
    return;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static inline void mm__puts(mm__line* l, const char* s) {
  mm__put(l, s, strlen(s));
}

static inline void mm__put_i64(mm__line* l, int64_t v) {
  char tmp[24];
  size_t n = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[sizeof tmp - 1 - n] = (char)('0' + (int)(u % 10u));
    u /= 10u;
    ++n;
  } while (u != 0);
  if (v < 0) {
    tmp[sizeof tmp - 1 - n] = '-';
    ++n;
  }
  mm__put(l, tmp + sizeof tmp - n, n);
}

static inline void mm__put_code(mm__line* l, uint64_t code) {
  static const char hex[] = "0123456789ABCDEF";
  char tmp[18];
  size_t n = 0;
  do {
    tmp[sizeof tmp - 1 - n] = hex[code & 0xFu];
    code >>= 4;
    ++n;
  } while (code != 0);
  tmp[sizeof tmp - 1 - n] = 'x';
  tmp[sizeof tmp - 2 - n] = '0';
  n += 2;
  mm__put(l, tmp + sizeof tmp - n, n);
}

/** Percent-encodes `s` exactly like meltrig::targets::encode_value(): every byte <= 0x20, '%',
 * '=' and >= 0x7F becomes %XX (upper-case hex); all other bytes are copied. */
static inline void mm__put_encoded(mm__line* l, const char* s) {
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char* p = (const unsigned char*)s;
  for (; *p != 0; ++p) {
    unsigned c = *p;
    if (c <= 0x20u || c == '%' || c == '=' || c >= 0x7Fu) {
      char e[3];
      e[0] = '%';
      e[1] = hex[c >> 4];
      e[2] = hex[c & 0xFu];
      mm__put(l, e, 3);
    } else {
      char ch = (char)c;
      mm__put(l, &ch, 1);
    }
  }
}

/** Shortest of %.15g..%.17g that reads back as `v`, always with '.' as decimal point. */
static inline void mm__put_double(mm__line* l, double v) {
  char tmp[40];
  int prec;
  size_t i, n = 0;
  for (prec = 15; prec <= 17; ++prec) {
    int r = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (r <= 0 || (size_t)r >= sizeof tmp) {
      l->overflow = 1;
      return;
    }
    n = (size_t)r;
    if (strtod(tmp, NULL) == v) break;
  }
  for (i = 0; i < n; ++i)
    if (tmp[i] == ',') tmp[i] = '.'; /* a caller's setlocale(LC_NUMERIC, ...) */
  mm__put(l, tmp, n);
}

static inline void mm__begin(mm__line* l, int64_t t, const char* event) {
  l->len = 0;
  l->overflow = 0;
  mm__put_i64(l, t);
  mm__put(l, " ", 1);
  mm__puts(l, event);
}

static inline void mm__key(mm__line* l, const char* key) {
  mm__put(l, " ", 1);
  mm__puts(l, key);
  mm__put(l, "=", 1);
}

static inline void mm__kv_i64(mm__line* l, const char* key, int64_t v) {
  mm__key(l, key);
  mm__put_i64(l, v);
}

static inline void mm__kv_str(mm__line* l, const char* key, const char* v) {
  mm__key(l, key);
  mm__put_encoded(l, v);
}

/** Hands the whole line to the kernel in one write(). A short write (disk full) is followed by
 * writes of the rest, so the file never holds a line merged with the next. */
static inline int mm__write_all(mm_writer* w, const char* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = write(w->fd, buf + done, len - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EIO;
    done += (size_t)r;
  }
  if (w->fsync_each && fsync(w->fd) != 0) return -errno;
  return 0;
}

static inline int mm_clock(mm_writer* w);

/** Terminates and writes `l`; then writes a clock triple if the period has passed since the last
 * (never after a line stamped in the future, such as sync.start). */
static inline int mm__finish(mm_writer* w, mm__line* l, int64_t t, int auto_clock) {
  int rc;
  if (w == NULL || w->fd < 0) return -EBADF;
  if (t < 0) return -errno;
  mm__put(l, "\n", 1);
  if (l->overflow) return -E2BIG;
  rc = mm__write_all(w, l->buf, l->len);
  if (rc != 0) {
    if (w->error == 0) w->error = rc;
    return rc;
  }
  if (auto_clock && w->clock_period_ns > 0 && t - w->last_clock_ns >= w->clock_period_ns)
    return mm_clock(w);
  return 0;
}

/** A header key=value list must already be encoded: printable ASCII words split by one space. */
static inline int mm__valid_header_kv(const char* kv) {
  const unsigned char* p = (const unsigned char*)kv;
  int prev_space = 1, in_value = 0;
  if (*p == 0) return 1;
  for (; *p != 0; ++p) {
    if (*p == ' ') {
      if (prev_space || !in_value) return 0;
      prev_space = 1;
      in_value = 0;
    } else if (*p < 0x21u || *p > 0x7Eu) {
      return 0;
    } else {
      if (*p == '=') {
        if (in_value || prev_space) return 0;
        in_value = 1;
      } else if (!in_value && !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                                *p == '.' || *p == '-')) {
        return 0;
      }
      prev_space = 0;
    }
  }
  return !prev_space && in_value;
}

/* ---- public API -------------------------------------------------------------------------------
 */

/** Percent-encodes `s` into `out` (size `cap`, NUL-terminated), for header values.
 * Returns the encoded length, or -E2BIG if it does not fit. */
static inline int mm_encode(const char* s, char* out, size_t cap) {
  mm__line l;
  l.len = 0;
  l.overflow = 0;
  mm__put_encoded(&l, s);
  if (l.overflow || l.len >= cap) return -E2BIG;
  memcpy(out, l.buf, l.len);
  out[l.len] = 0;
  return (int)l.len;
}

/** Creates (or truncates) `path` and writes the header line and the first clock triple.
 * `header_kv` (may be NULL) is appended to the header: space-separated key=value words with
 * keys of [a-z0-9_.-] and values already encoded (mm_encode); "clock" is reserved. */
static inline int mm_open(mm_writer* w, const char* path, const char* header_kv) {
  mm__line l;
  int rc;
  if (w == NULL) return -EINVAL;
  w->fd = -1;
  w->fsync_each = 0;
  w->busy_threads = 0;
  w->error = 0;
  w->clock_period_ns = MM_DEFAULT_CLOCK_PERIOD_NS;
  w->last_clock_ns = 0;
  if (path == NULL) return -EINVAL;
  if (header_kv != NULL &&
      (!mm__valid_header_kv(header_kv) || strncmp(header_kv, "clock=", 6) == 0 ||
       strstr(header_kv, " clock=") != NULL))
    return -EINVAL;
  l.len = 0;
  l.overflow = 0;
  mm__puts(&l, "meltrig-markers 1 clock=monotonic writer=meltrig_sdk_c99");
  if (header_kv != NULL && header_kv[0] != 0) {
    mm__put(&l, " ", 1);
    mm__puts(&l, header_kv);
  }
  mm__put(&l, "\n", 1);
  if (l.overflow) return -E2BIG;
  w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (w->fd < 0) return -errno;
  rc = mm__write_all(w, l.buf, l.len);
  if (rc == 0) rc = mm_clock(w);
  if (rc != 0) {
    close(w->fd);
    w->fd = -1;
  }
  return rc;
}

/** fsync() after every line (off by default): protects against power loss, costs ms per line. */
static inline void mm_set_fsync(mm_writer* w, int on) {
  w->fsync_each = on != 0;
}

/** Period of automatic clock triples in ns (default 1 s); 0 turns them off. */
static inline int mm_set_clock_period_ns(mm_writer* w, int64_t period_ns) {
  if (period_ns < 0) return -EINVAL;
  w->clock_period_ns = period_ns;
  return 0;
}

/** Helper threads that spin during busy sync chips, besides the calling thread (default 0).
 * Needs MELTRIG_SDK_PTHREADS=1, else -ENOTSUP for n > 0. */
static inline int mm_set_busy_threads(mm_writer* w, int n) {
  if (n < 0 || n > MM_MAX_BUSY_THREADS) return -EINVAL;
  if (!MELTRIG_SDK_PTHREADS && n > 0) return -ENOTSUP;
  w->busy_threads = n;
  return 0;
}

/** Writes a clock triple: CLOCK_MONOTONIC, CLOCK_BOOTTIME and CLOCK_REALTIME read back to back. */
static inline int mm_clock(mm_writer* w) {
  mm__line l;
  int64_t mono = mm__read_clock(CLOCK_MONOTONIC);
  int64_t boot = mm__read_clock(CLOCK_BOOTTIME);
  int64_t real = mm__read_clock(CLOCK_REALTIME);
  if (mono < 0 || boot < 0 || real < 0) return -EINVAL;
  mm__begin(&l, mono, "clock");
  mm__kv_i64(&l, "boot", boot);
  mm__kv_i64(&l, "real", real);
  if (w != NULL) w->last_clock_ns = mono;
  return mm__finish(w, &l, mono, 0);
}

/** run.start id=ID: a run's identity (any string; encoded). */
static inline int mm_run_start(mm_writer* w, const char* id) {
  mm__line l;
  int64_t t = mm_now_ns();
  if (id == NULL) return -EINVAL;
  mm__begin(&l, t, "run.start");
  mm__kv_str(&l, "id", id);
  return mm__finish(w, &l, t, 1);
}

static inline int mm_run_end_exit(mm_writer* w, const char* status, int code, int sig);

/** run.end status=ok|error|interrupted. */
static inline int mm_run_end(mm_writer* w, const char* status) {
  return mm_run_end_exit(w, status, -1, 0);
}

/** load.start model=NAME: the model starts loading. */
static inline int mm_load_start(mm_writer* w, const char* model) {
  mm__line l;
  int64_t t = mm_now_ns();
  if (model == NULL) return -EINVAL;
  mm__begin(&l, t, "load.start");
  mm__kv_str(&l, "model", model);
  return mm__finish(w, &l, t, 1);
}

/** load.end: the model is ready. */
static inline int mm_load_end(mm_writer* w) {
  mm__line l;
  int64_t t = mm_now_ns();
  mm__begin(&l, t, "load.end");
  return mm__finish(w, &l, t, 1);
}

static inline int mm__count_event(mm_writer* w, const char* event, const char* key, int64_t n) {
  mm__line l;
  int64_t t = mm_now_ns();
  if (n < 0) return -EINVAL;
  mm__begin(&l, t, event);
  mm__kv_i64(&l, key, n);
  return mm__finish(w, &l, t, 1);
}

/** prefill.start tokens=N: the prompt of N tokens starts being evaluated. */
static inline int mm_prefill_start(mm_writer* w, int64_t tokens) {
  return mm__count_event(w, "prefill.start", "tokens", tokens);
}

/** prefill.end tokens=N: the prompt is evaluated (the first output token is not yet sampled). */
static inline int mm_prefill_end(mm_writer* w, int64_t tokens) {
  return mm__count_event(w, "prefill.end", "tokens", tokens);
}

/** token index=I: output token I (0-based) is available. Call it as soon as it is. */
static inline int mm_token(mm_writer* w, int64_t index) {
  return mm__count_event(w, "token", "index", index);
}

/** token index=I bytes=B [blank=1], stamped `t_ns` (CLOCK_MONOTONIC, ns) instead of now: for a
 * writer that observes the token elsewhere (meltrig_stamp reads it from a runner's output and
 * stamps the read). `bytes` < 0 leaves bytes= out; `blank` nonzero adds blank=1 (whitespace
 * only). */
static inline int mm_token_at(mm_writer* w, int64_t t_ns, int64_t index, int64_t bytes, int blank) {
  mm__line l;
  if (index < 0 || t_ns < 0) return -EINVAL;
  mm__begin(&l, t_ns, "token");
  mm__kv_i64(&l, "index", index);
  if (bytes >= 0) mm__kv_i64(&l, "bytes", bytes);
  if (blank) mm__kv_i64(&l, "blank", 1);
  return mm__finish(w, &l, t_ns, 1);
}

/** prefill.end tokens=N stamped `t_ns`; N < 0 (unknown to the writer) is written as tokens=0
 * tokens_known=0, for a reader to fill in from another source. */
static inline int mm_prefill_end_at(mm_writer* w, int64_t t_ns, int64_t tokens) {
  mm__line l;
  if (t_ns < 0) return -EINVAL;
  mm__begin(&l, t_ns, "prefill.end");
  mm__kv_i64(&l, "tokens", tokens < 0 ? 0 : tokens);
  if (tokens < 0) mm__kv_i64(&l, "tokens_known", 0);
  return mm__finish(w, &l, t_ns, 1);
}

/** run.end status=S plus `exit=CODE` (code >= 0) or `signal=SIG` (sig > 0): how a program a
 * wrapper ran ended. */
static inline int mm_run_end_exit(mm_writer* w, const char* status, int code, int sig) {
  mm__line l;
  int64_t t = mm_now_ns();
  if (status == NULL || (strcmp(status, "ok") != 0 && strcmp(status, "error") != 0 &&
                         strcmp(status, "interrupted") != 0))
    return -EINVAL;
  mm__begin(&l, t, "run.end");
  mm__kv_str(&l, "status", status);
  if (code >= 0) mm__kv_i64(&l, "exit", code);
  if (sig > 0) mm__kv_i64(&l, "signal", sig);
  return mm__finish(w, &l, t, 1);
}

/** user name=NAME [value=V] [text=TEXT]: anything else. value NaN and text NULL or "" are left
 * out; an infinite value is refused. */
static inline int mm_user(mm_writer* w, const char* name, double value, const char* text) {
  mm__line l;
  int64_t t = mm_now_ns();
  if (name == NULL || isinf(value)) return -EINVAL;
  mm__begin(&l, t, "user");
  mm__kv_str(&l, "name", name);
  if (!isnan(value)) {
    mm__key(&l, "value");
    mm__put_double(&l, value);
  }
  if (text != NULL && text[0] != 0) mm__kv_str(&l, "text", text);
  return mm__finish(w, &l, t, 1);
}

/* ---- sync pulse ----------------------------------------------------------------------------- */

typedef struct mm__pulse {
  int64_t t0_ns;
  int64_t chip_ns;
  uint64_t code;
  unsigned bits;
} mm__pulse;

static inline void mm__sleep_until(int64_t t_ns) {
  struct timespec ts;
  ts.tv_sec = (time_t)(t_ns / 1000000000LL);
  ts.tv_nsec = (long)(t_ns % 1000000000LL);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/** Runs the chips against absolute deadlines t0 + (k+1) * chip_ns, MSB first: a 1 spins on
 * clock_gettime (busy), a 0 sleeps (idle). Lateness in one chip never shifts the next. */
static inline void mm__run_pulse(const mm__pulse* p) {
  unsigned k;
  mm__sleep_until(p->t0_ns);
  for (k = 0; k < p->bits; ++k) {
    int64_t deadline = p->t0_ns + (int64_t)(k + 1u) * p->chip_ns;
    if ((p->code >> (p->bits - 1u - k)) & 1u) {
      while (mm_now_ns() < deadline) {
      }
    } else {
      mm__sleep_until(deadline);
    }
  }
}

#if MELTRIG_SDK_PTHREADS
static inline void* mm__pulse_thread(void* arg) {
  mm__run_pulse((const mm__pulse*)arg);
  return NULL;
}
#endif

/** Emits a coded busy/idle pattern the power monitor sees: sync.start code= bits= chip_ns= is
 * stamped with the start of the first chip (MM_SYNC_LEAD_NS after the call), then `bits` chips of
 * `chip_ns` each, MSB of `code` first, 1 = all configured threads spinning, 0 = sleeping; then
 * sync.end code= once the last chip is over. Blocks for about bits * chip_ns. The pattern and
 * a good code (13-bit Barker 0x1F35) are described in docs/markers.md. */
static inline int mm_sync_pulse(mm_writer* w, uint64_t code, unsigned bits, int64_t chip_ns) {
  mm__line l;
  mm__pulse p;
  int rc;
  int64_t t;
#if MELTRIG_SDK_PTHREADS
  pthread_t threads[MM_MAX_BUSY_THREADS];
  int started = 0, i;
#endif
  if (w == NULL || w->fd < 0) return -EBADF;
  if (bits < 1u || bits > 64u || (bits < 64u && (code >> bits) != 0) || chip_ns <= 0 ||
      chip_ns > 3600000000000LL / (int64_t)bits)
    return -EINVAL;
  p.t0_ns = mm_now_ns() + MM_SYNC_LEAD_NS;
  p.chip_ns = chip_ns;
  p.code = code;
  p.bits = bits;
#if MELTRIG_SDK_PTHREADS
  for (i = 0; i < w->busy_threads; ++i) {
    if (pthread_create(&threads[started], NULL, mm__pulse_thread, &p) != 0) break;
    ++started;
  }
#endif
  mm__begin(&l, p.t0_ns, "sync.start");
  mm__key(&l, "code");
  mm__put_code(&l, code);
  mm__kv_i64(&l, "bits", (int64_t)bits);
  mm__kv_i64(&l, "chip_ns", chip_ns);
  rc = mm__finish(w, &l, p.t0_ns, 0);
  mm__run_pulse(&p);
#if MELTRIG_SDK_PTHREADS
  for (i = 0; i < started; ++i)
    pthread_join(threads[i], NULL);
#endif
  if (rc != 0) return rc;
  t = mm_now_ns();
  mm__begin(&l, t, "sync.end");
  mm__key(&l, "code");
  mm__put_code(&l, code);
  return mm__finish(w, &l, t, 1);
}

/** Writes the final clock triple and closes the file. Returns the first error of the writer's
 * life (a failed line earlier) or of the close, else 0. */
static inline int mm_close(mm_writer* w) {
  int rc, first;
  if (w == NULL || w->fd < 0) return -EBADF;
  rc = mm_clock(w);
  first = w->error != 0 ? w->error : rc;
  if (close(w->fd) != 0 && first == 0) first = -errno;
  w->fd = -1;
  return first;
}

#ifdef __cplusplus
}
#endif

#endif /* MELTRIG_SDK_MELTRIG_MARKERS_H */
