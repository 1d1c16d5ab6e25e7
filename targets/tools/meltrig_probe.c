/* meltrig_probe: the device-side half of a clock probe. Reads CLOCK_MONOTONIC, CLOCK_BOOTTIME
 * and CLOCK_REALTIME back to back and prints "MONO BOOT REAL\n" in decimal nanoseconds.
 *
 *   meltrig_probe                      one clock line
 *   meltrig_probe --serve              one clock line per line read on stdin, until EOF (a
 *                                      persistent session: no process start inside the rtt)
 *   meltrig_probe --telemetry ROOT     the clock line, then "PATH\tVALUE" for every telemetry file
 *                                      under the sysfs root ROOT (PATH relative to ROOT, VALUE its
 *                                      first line); unreadable files are left out
 *
 * Plain C99 + POSIX so it cross-compiles for any device (NDK for Android, gcc on a Jetson). */
#define _GNU_SOURCE /* CLOCK_BOOTTIME */
#include <glob.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "meltrig/targets/sysfs_patterns.h"

static long long ns_of(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) return -1;
  return (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
}

static void print_clocks(void) {
  long long mono = ns_of(CLOCK_MONOTONIC);
  long long boot = ns_of(CLOCK_BOOTTIME);
  long long real = ns_of(CLOCK_REALTIME);
  printf("%lld %lld %lld\n", mono, boot, real);
}

static void dump_file(const char* path, size_t root_len) {
  char line[512];
  FILE* f = fopen(path, "r");
  size_t n;
  if (!f) return;
  if (!fgets(line, (int)sizeof line, f)) {
    fclose(f);
    return;
  }
  fclose(f);
  n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  printf("%s\t%s\n", path + root_len, line);
}

static int dump_telemetry(const char* root) {
  char pattern[4096];
  size_t i, k, root_len;
  root_len = strlen(root);
  while (root_len > 1 && root[root_len - 1] == '/')
    --root_len;
  for (i = 0; i < sizeof meltrig_sysfs_patterns / sizeof meltrig_sysfs_patterns[0]; ++i) {
    glob_t g;
    int n = snprintf(pattern, sizeof pattern, "%.*s/%s", (int)root_len, root,
                     meltrig_sysfs_patterns[i]);
    if (n < 0 || (size_t)n >= sizeof pattern) return 2;
    if (glob(pattern, 0, NULL, &g) != 0) continue;
    for (k = 0; k < g.gl_pathc; ++k)
      dump_file(g.gl_pathv[k], root_len + 1);
    globfree(&g);
  }
  return 0;
}

int main(int argc, char** argv) {
  int rc = 0;
  if (argc == 1) {
    print_clocks();
  } else if (argc == 2 && strcmp(argv[1], "--serve") == 0) {
    char request[64];
    while (fgets(request, (int)sizeof request, stdin)) {
      print_clocks();
      if (fflush(stdout) != 0) return 1;
    }
    return 0;
  } else if (argc == 3 && strcmp(argv[1], "--telemetry") == 0) {
    print_clocks();
    rc = dump_telemetry(argv[2]);
  } else {
    fprintf(stderr, "usage: meltrig_probe [--serve | --telemetry SYSFS_ROOT]\n");
    return 2;
  }
  if (fflush(stdout) != 0) return 1;
  return rc;
}
