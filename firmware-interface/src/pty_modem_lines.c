/* Modem-control lines for pseudo-terminals.
 *
 * Linux ptys implement no modem-control lines: TIOCMGET/TIOCMSET/TIOCMBIS/TIOCMBIC fail with
 * ENOTTY. libserialport 0.1.1 reads them in sp_open and gives up, so it cannot open a pty at all.
 * Our emulators speak the real wire protocols on ptys, and the tests must go through libserialport,
 * so every program linking this library defines ioctl(): it passes each request to the kernel
 * unchanged and, only when a modem-line request fails with ENOTTY on a Unix98 pty slave (character
 * major 136..143), answers it as a port whose lines are all low. Real serial ports never take that
 * branch. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int is_unix98_pty_slave(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode)) return 0;
  unsigned m = major(st.st_rdev);
  return m >= 136 && m <= 143;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  long r = syscall(SYS_ioctl, fd, request, arg);
  if (r < 0 && errno == ENOTTY &&
      (request == TIOCMGET || request == TIOCMSET || request == TIOCMBIS || request == TIOCMBIC) &&
      is_unix98_pty_slave(fd)) {
    if (request == TIOCMGET) *(int*)arg = 0;
    return 0;
  }
  return (int)r;
}

/* Referenced by the serial transport so the linker always pulls this object in. */
int meltrig_pty_modem_lines_linked(void) {
  return 1;
}
