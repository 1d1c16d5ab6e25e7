/* meltrig_stamp: per-token markers for an unmodified streaming runner (llama-cli, MLC's chat CLI,
 * any program that prints its output as it generates it).
 *
 *   meltrig_stamp --markers FILE [--prompt-file F] [--run-id ID] -- PROGRAM [ARGS...]
 *
 * Runs PROGRAM (argv only, looked up in PATH, never through a shell) with its stdout on a pseudo
 * terminal, so its stdio line-buffers (or flushes) exactly as on a console, and its stderr on a
 * pipe. Both are passed through to this program's stdout and stderr unchanged. Every read() of the
 * terminal is one chunk, stamped with CLOCK_MONOTONIC right after the read returns; the chunks
 * after the prompt echo become `token index=I bytes=B [blank=1]` lines of a marker file in format
 * v1 (docs/markers.md), written through the C99 SDK: header, clock triples, run.start,
 * prefill.end at the first generated chunk (tokens=0 tokens_known=0: the prompt's token count is
 * the runner's), and run.end with the status (ok, error, interrupted) and exit= or signal=.
 *
 * The prompt echo: the prompt is the value of the program's -p/--prompt argument, or the contents
 * of --prompt-file. Output that repeats it from the start (compared ignoring whitespace) is the
 * echo, not a token; the first byte that differs, or the first byte after it, starts the
 * generated text. Without a prompt every chunk is a token.
 *
 * SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the program's process
 * group (it runs in its own session). The program gets SIGKILL if this process dies. Exit code:
 * the program's, 128 + signal if a signal ended it, 127 if it could not be started, 2 on a usage
 * error (no marker file written).
 *
 * Plain C99 + POSIX (XSI pseudo terminals), so it cross-compiles for any device. */
#define _GNU_SOURCE
#include "meltrig_sdk/meltrig_markers.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

enum { CHUNK = 4096, MAX_PROMPT = 1 << 20, MAX_DRAIN = 1024 };

static int g_sig_pipe[2] = {-1, -1};
static const int k_forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  ssize_t r = write(g_sig_pipe[1], &b, 1);
  (void)r;
  errno = saved;
}

/* ---- prompt echo -------------------------------------------------------------------------- */

typedef struct echo {
  const char* prompt; /* NULL: no prompt, every byte is generated */
  size_t len, pos;
  int done;
} echo;

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void echo_skip_ws(echo* e) {
  while (e->pos < e->len && is_ws(e->prompt[e->pos]))
    ++e->pos;
  if (e->pos == e->len) e->done = 1;
}

/* Consumes the prompt echo at the start of `buf`; returns the offset where generated text
 * starts (n when the whole chunk is echo). */
static size_t echo_feed(echo* e, const char* buf, size_t n) {
  size_t i;
  if (e->prompt == NULL || e->done) return 0;
  for (i = 0; i < n; ++i) {
    if (is_ws(buf[i])) continue;
    echo_skip_ws(e);
    if (e->done || buf[i] != e->prompt[e->pos]) {
      e->done = 1;
      return i;
    }
    ++e->pos;
    echo_skip_ws(e);
    if (e->done) return i + 1;
  }
  return n;
}

static int all_blank(const char* s, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (!is_ws(s[i])) return 0;
  return 1;
}

/* ---- arguments ---------------------------------------------------------------------------- */

typedef struct options {
  const char* markers;
  const char* prompt_file;
  const char* run_id;
  int realtime; /* --realtime: SCHED_FIFO for the stamper alone */
  int pipe;     /* --pipe: the program's stdout is a pipe, not a pseudo terminal */
  char** argv;  /* the program's argv, NULL-terminated */
} options;

static int usage(const char* msg, const char* arg) {
  fprintf(stderr, "meltrig_stamp: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  fprintf(
      stderr,
      "usage: meltrig_stamp --markers FILE [--prompt-file F] [--run-id ID] [--realtime] [--pipe] "
      "-- PROGRAM [ARGS...]\n");
  return 2;
}

static int parse_args(int argc, char** argv, options* o) {
  int i;
  memset(o, 0, sizeof *o);
  for (i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (strcmp(a, "--") == 0) {
      o->argv = argv + i + 1;
      break;
    }
    if (strcmp(a, "--realtime") == 0) {
      o->realtime = 1;
      continue;
    }
    if (strcmp(a, "--pipe") == 0) {
      o->pipe = 1;
      continue;
    }
    if (i + 1 >= argc) return usage("missing value or `--` after", a);
    if (strcmp(a, "--markers") == 0) {
      o->markers = argv[++i];
    } else if (strcmp(a, "--prompt-file") == 0) {
      o->prompt_file = argv[++i];
    } else if (strcmp(a, "--run-id") == 0) {
      o->run_id = argv[++i];
    } else {
      return usage("unknown argument", a);
    }
  }
  if (o->markers == NULL) return usage("missing --markers", NULL);
  if (o->argv == NULL || o->argv[0] == NULL) return usage("no program after `--`", NULL);
  return 0;
}

/* The program's own -p/--prompt/--prompt=TEXT argument (the last one), or NULL. */
static const char* prompt_from_argv(char** argv) {
  const char* found = NULL;
  int i;
  for (i = 1; argv[i] != NULL; ++i) {
    if ((strcmp(argv[i], "-p") == 0 || strcmp(argv[i], "--prompt") == 0) && argv[i + 1] != NULL)
      found = argv[++i];
    else if (strncmp(argv[i], "--prompt=", 9) == 0)
      found = argv[i] + 9;
  }
  return found;
}

/* Reads at most MAX_PROMPT bytes of `path` into a NUL-terminated heap string; NULL on error. */
static char* read_prompt_file(const char* path) {
  char* buf = (char*)malloc(MAX_PROMPT + 1);
  size_t n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (buf == NULL || fd < 0) {
    free(buf);
    if (fd >= 0) close(fd);
    return NULL;
  }
  while (n < MAX_PROMPT) {
    ssize_t r = read(fd, buf + n, MAX_PROMPT - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  return buf;
}

/* ---- process ------------------------------------------------------------------------------ */

/* --realtime: the stamper (not the program: reset on fork) runs SCHED_FIFO at a low real-time
 * priority, so a busy CPU delays its wake-up less. Returns "yes", or why not. */
static const char* go_realtime(void) {
#if defined(SCHED_RESET_ON_FORK)
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  sp.sched_priority = 10;
  if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) return "yes";
  return errno == EPERM ? "no-permission" : "failed";
#else
  return "unsupported";
#endif
}

static int write_all(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t r = write(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    buf += r;
    n -= (size_t)r;
  }
  return 0;
}

static int set_flags(int fd, int fd_flags, int fl_flags) {
  return fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | fd_flags) != 0 ||
         fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | fl_flags) != 0;
}

static int install_signals(void) {
  struct sigaction sa;
  size_t i;
  if (pipe(g_sig_pipe) != 0 || set_flags(g_sig_pipe[0], FD_CLOEXEC, O_NONBLOCK) ||
      set_flags(g_sig_pipe[1], FD_CLOEXEC, O_NONBLOCK))
    return -1;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL); /* a closed stdout must not kill the stamper */
  sa.sa_handler = on_signal;     /* no SA_RESTART: poll() returns EINTR */
  sigaction(SIGCHLD, &sa, NULL);
  for (i = 0; i < sizeof k_forwarded / sizeof k_forwarded[0]; ++i)
    sigaction(k_forwarded[i], &sa, NULL);
  return 0;
}

/* Opens a pseudo terminal; returns the master and stores the slave in *slave. Output processing
 * (\n -> \r\n) and echo are off, so bytes pass through unchanged. */
static int open_pty(int* slave) {
  struct termios t;
  char* name;
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return -1;
  if (grantpt(master) != 0 || unlockpt(master) != 0 || (name = ptsname(master)) == NULL ||
      (*slave = open(name, O_RDWR | O_NOCTTY)) < 0) {
    close(master);
    return -1;
  }
  if (tcgetattr(*slave, &t) == 0) {
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    tcsetattr(*slave, TCSANOW, &t);
  }
  set_flags(master, FD_CLOEXEC, 0);
  return master;
}

/* In the child: default signals, own session, stdout on the terminal, stderr on the pipe; then
 * exec. Reports an exec failure's errno on `status_fd` and exits 127. */
static void exec_child(char** argv, int slave, int err_w, int status_fd) {
  struct sigaction sa;
  sigset_t none;
  size_t i;
  int e;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &sa, NULL);
  sigaction(SIGCHLD, &sa, NULL);
  for (i = 0; i < sizeof k_forwarded / sizeof k_forwarded[0]; ++i)
    sigaction(k_forwarded[i], &sa, NULL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
#if defined(__linux__)
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  if (dup2(slave, STDOUT_FILENO) < 0 || dup2(err_w, STDERR_FILENO) < 0) _exit(127);
  if (slave > STDERR_FILENO) close(slave);
  if (err_w > STDERR_FILENO) close(err_w);
  execvp(argv[0], argv);
  e = errno;
  {
    ssize_t r = write(status_fd, &e, sizeof e);
    (void)r;
  }
  _exit(127);
}

/* ---- the run ------------------------------------------------------------------------------ */

typedef struct run {
  mm_writer w;
  echo e;
  pid_t child;
  int master, err_r;
  int reaped, wstatus, forwarded, marker_error;
  int stdout_ok, stderr_ok;
  int64_t tokens, chunks, bytes;
} run;

static void note_marker(run* r, int rc) {
  if (rc != 0 && r->marker_error == 0) r->marker_error = rc;
}

static void on_chunk(run* r, const char* buf, size_t n, int64_t t) {
  size_t gen = echo_feed(&r->e, buf, n);
  ++r->chunks;
  r->bytes += (int64_t)n;
  if (gen < n) {
    if (r->tokens == 0) note_marker(r, mm_prefill_end_at(&r->w, t, -1));
    note_marker(
        r, mm_token_at(&r->w, t, r->tokens, (int64_t)(n - gen), all_blank(buf + gen, n - gen)));
    ++r->tokens;
  }
  if (r->stdout_ok && write_all(STDOUT_FILENO, buf, n) != 0) r->stdout_ok = 0;
}

/* Reads once from the terminal (stamping the chunk) or the stderr pipe; closes the fd at its end.
 * Returns 1 if data was read, 0 at the end, -1 if nothing is there now. */
static int read_once(run* r, int* fd, int is_terminal) {
  char buf[CHUNK];
  ssize_t n = read(*fd, buf, sizeof buf);
  int64_t t = mm_now_ns();
  if (n > 0) {
    if (is_terminal)
      on_chunk(r, buf, (size_t)n, t);
    else if (r->stderr_ok && write_all(STDERR_FILENO, buf, (size_t)n) != 0)
      r->stderr_ok = 0;
    return 1;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
  close(*fd); /* 0: end of the pipe; EIO: every terminal slave is closed */
  *fd = -1;
  return 0;
}

/* After the program ended: whatever is still buffered, without waiting for other holders and
 * without following a grandchild that keeps writing (at most MAX_DRAIN reads of each). */
static void drain(run* r) {
  int n;
  if (r->master >= 0) set_flags(r->master, 0, O_NONBLOCK);
  if (r->err_r >= 0) set_flags(r->err_r, 0, O_NONBLOCK);
  for (n = 0; n < MAX_DRAIN && r->master >= 0 && read_once(r, &r->master, 1) == 1; ++n) {
  }
  for (n = 0; n < MAX_DRAIN && r->err_r >= 0 && read_once(r, &r->err_r, 0) == 1; ++n) {
  }
}

static void on_signals(run* r) {
  unsigned char sigs[64];
  ssize_t n, i;
  while ((n = read(g_sig_pipe[0], sigs, sizeof sigs)) > 0) {
    for (i = 0; i < n; ++i) {
      if (sigs[i] == SIGCHLD) {
        if (!r->reaped && waitpid(r->child, &r->wstatus, WNOHANG) == r->child) r->reaped = 1;
      } else if (!r->reaped) {
        if (kill(-r->child, sigs[i]) != 0) kill(r->child, sigs[i]);
        r->forwarded = 1;
      }
    }
  }
}

static void pump(run* r) {
  while (!r->reaped) {
    struct pollfd p[3];
    p[0].fd = r->master;
    p[1].fd = r->err_r;
    p[2].fd = g_sig_pipe[0];
    p[0].events = p[1].events = p[2].events = POLLIN;
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    /* Output first: what arrived with SIGCHLD is stamped before the end is recorded. */
    if (r->master >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
      read_once(r, &r->master, 1);
    if (r->err_r >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) read_once(r, &r->err_r, 0);
    if (p[2].revents & POLLIN) on_signals(r);
  }
  if (!r->reaped && waitpid(r->child, &r->wstatus, 0) == r->child) r->reaped = 1;
  drain(r);
}

/* Writes run.end and the closing clock triple; returns this program's exit code. */
static int finish(run* r, const char* program) {
  int code = 1, sig = 0;
  const char* status = "error";
  if (WIFEXITED(r->wstatus)) {
    code = WEXITSTATUS(r->wstatus);
    /* a program that catches a forwarded signal and exits non-zero was interrupted too */
    status = code == 0 ? "ok" : (r->forwarded ? "interrupted" : "error");
  } else if (WIFSIGNALED(r->wstatus)) {
    sig = WTERMSIG(r->wstatus);
    code = 128 + sig;
    if (r->forwarded || sig == SIGINT || sig == SIGTERM || sig == SIGHUP) status = "interrupted";
  }
  note_marker(r, mm_run_end_exit(&r->w, status, sig > 0 ? -1 : code, sig));
  note_marker(r, mm_close(&r->w));
  if (sig > 0)
    fprintf(stderr, "meltrig_stamp: %s ended by signal %d (%s): run.end status=%s\n", program, sig,
            strsignal(sig), status);
  else if (code != 0)
    fprintf(stderr, "meltrig_stamp: %s exited with code %d: run.end status=%s\n", program, code,
            status);
  if (r->marker_error != 0)
    fprintf(stderr, "meltrig_stamp: marker file: %s (markers may be incomplete)\n",
            strerror(-r->marker_error));
  return code;
}

/* The marker header: who wrote it and which program it stamped. */
static void make_header(char* out, size_t cap, const options* o, const char* prompt_source,
                        const char* realtime) {
  char prog[512];
  if (mm_encode(o->argv[0], prog, sizeof prog) < 0) strcpy(prog, "%3F");
  snprintf(out, cap, "stamper=meltrig_stamp program=%s prompt=%s realtime=%s stdout=%s", prog,
           prompt_source, realtime, o->pipe ? "pipe" : "pty");
}

/* --pipe: the program's stdout is the write end of a pipe. A write to a pipe wakes the reader
 * from within the writer's system call; a pty hands the bytes to the kernel's tty buffer work
 * first, a worker that must itself be scheduled. Only for programs that flush per token on a pipe
 * (llama.cpp does; most stdio programs block-buffer). */
static int open_pipe(int* write_end) {
  int p[2];
  if (pipe(p) != 0) return -1;
  set_flags(p[0], FD_CLOEXEC, 0);
  *write_end = p[1];
  return p[0];
}

/* Starts the program; 0, or the exit code when it could not be started. */
static int start(run* r, const options* o) {
  int slave = -1, err_p[2], st[2], e = 0;
  ssize_t n;
  r->master = o->pipe ? open_pipe(&slave) : open_pty(&slave);
  if (r->master < 0 || pipe(err_p) != 0 || pipe(st) != 0) {
    e = errno;
    fprintf(stderr, "meltrig_stamp: pseudo terminal or pipe: %s\n", strerror(e));
    note_marker(r, mm_user(&r->w, "stamp.setup_failed", NAN, strerror(e)));
    note_marker(r, mm_run_end_exit(&r->w, "error", 1, 0));
    mm_close(&r->w);
    return 1;
  }
  set_flags(err_p[0], FD_CLOEXEC, 0);
  set_flags(st[0], FD_CLOEXEC, 0);
  set_flags(st[1], FD_CLOEXEC, 0);
  r->child = fork();
  if (r->child == 0) exec_child(o->argv, slave, err_p[1], st[1]);
  close(slave);
  close(err_p[1]);
  close(st[1]);
  r->err_r = err_p[0];
  if (r->child < 0) e = errno;
  while (r->child > 0 && (n = read(st[0], &e, sizeof e)) < 0 && errno == EINTR) {
  }
  close(st[0]);
  if (e == 0) return 0;
  fprintf(stderr, "meltrig_stamp: %s: %s\n", o->argv[0], strerror(e));
  if (r->child > 0) waitpid(r->child, &r->wstatus, 0);
  note_marker(r, mm_user(&r->w, "stamp.exec_failed", NAN, strerror(e)));
  note_marker(r, mm_run_end_exit(&r->w, "error", 127, 0));
  mm_close(&r->w);
  return 127;
}

int main(int argc, char** argv) {
  options o;
  run r;
  char header[1024], id[64];
  char* file_prompt = NULL;
  const char* rt;
  int rc = parse_args(argc, argv, &o);
  if (rc != 0) return rc;
  memset(&r, 0, sizeof r);
  r.stdout_ok = r.stderr_ok = 1;
  r.e.prompt = prompt_from_argv(o.argv);
  if (o.prompt_file != NULL) {
    if ((file_prompt = read_prompt_file(o.prompt_file)) == NULL)
      return usage("cannot read --prompt-file", o.prompt_file);
    r.e.prompt = file_prompt;
  }
  if (r.e.prompt != NULL) r.e.len = strlen(r.e.prompt);
  if (install_signals() != 0) return usage("cannot install signal handlers", strerror(errno));
  rt = o.realtime ? go_realtime() : "off";
  if (o.realtime && strcmp(rt, "yes") != 0)
    fprintf(stderr, "meltrig_stamp: --realtime: %s (stamping at normal priority)\n", rt);
  make_header(header, sizeof header, &o, o.prompt_file ? "file" : (r.e.prompt ? "argv" : "none"),
              rt);
  if ((rc = mm_open(&r.w, o.markers, header)) != 0) {
    fprintf(stderr, "meltrig_stamp: %s: %s\n", o.markers, strerror(-rc));
    free(file_prompt);
    return 1;
  }
  snprintf(id, sizeof id, "stamp-%ld", (long)getpid());
  note_marker(&r, mm_run_start(&r.w, o.run_id ? o.run_id : id));
  rc = start(&r, &o);
  if (rc == 0) {
    pump(&r);
    rc = finish(&r, o.argv[0]);
  }
  free(file_prompt);
  return rc;
}
