// A throwaway OpenSSH server for tests: sshd on 127.0.0.1 (free port) with its own host key,
// user key and config in a TempDir. If sshd cannot start, the test fails with its stderr (never
// skips). Shared by test_ssh_target.cpp and test_run_command.cpp.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "meltrig/targets/process.hpp"
#include "meltrig/targets/ssh_target.hpp"
#include "test_support.hpp"

namespace meltrig::test_ssh {

namespace mt = meltrig::targets;
using meltrig::test::TempDir;
using std::chrono::milliseconds;

/// A port nobody listens on right now (bind to 0, read it back, close).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline void keygen(const std::filesystem::path& key) {
  auto r = mt::run_process(
      {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meltrig-test", "-f", key.string()},
      milliseconds(30000));
  REQUIRE_MESSAGE(r.ok(), "ssh-keygen: " << (r.ok() ? "" : r.error().describe()));
  REQUIRE_MESSAGE(r.value().exit_code == 0, "ssh-keygen: " << r.value().err);
}

/// sshd -D -e -f CONFIG on 127.0.0.1:port, stopped (SIGTERM) on destruction.
struct Sshd {
  TempDir dir;
  int port = 0;
  std::unique_ptr<mt::Subprocess> proc;

  Sshd() {
    REQUIRE_MESSAGE(std::filesystem::exists("/usr/sbin/sshd"),
                    "/usr/sbin/sshd is missing: run scripts/setup.sh (openssh-server)");
    std::filesystem::create_directories("/run/sshd");  // privilege separation directory
    keygen(dir / "host_key");
    keygen(dir / "user_key");
    std::filesystem::copy_file(dir / "user_key.pub", dir / "authorized_keys");
    for (int attempt = 0; attempt < 3 && !proc; ++attempt) {
      port = free_port();
      std::ofstream(dir / "sshd_config")
          << "Port " << port << "\nListenAddress 127.0.0.1\n"
          << "HostKey " << (dir / "host_key").string() << "\n"
          << "PidFile " << (dir / "sshd.pid").string() << "\n"
          << "AuthorizedKeysFile " << (dir / "authorized_keys").string() << "\n"
          << "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
          << "PasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxSessions 50\n";
      auto p = mt::Subprocess::spawn(
          {"/usr/sbin/sshd", "-D", "-e", "-f", (dir / "sshd_config").string()});
      REQUIRE_MESSAGE(p.ok(), "cannot start sshd: " << (p.ok() ? "" : p.error().describe()));
      // Ready when it says it listens; a port taken in the meantime: try another.
      for (int i = 0; i < 1000; ++i) {
        auto err = p.value()->stderr_text();
        if (err.find("Server listening") != std::string::npos) {
          proc = std::move(p.value());
          break;
        }
        if (!p.value()->running()) break;
        std::this_thread::sleep_for(milliseconds(10));
      }
      if (!proc && attempt == 2) {
        auto err = p.value()->stderr_text();
        FAIL("sshd did not start (port " << port << "): " << err);
      }
    }
    // known_hosts with the throwaway host key, so StrictHostKeyChecking stays "yes".
    std::string pub = meltrig::test::read_file(dir / "host_key.pub");
    std::ofstream(dir / "known_hosts") << "[127.0.0.1]:" << port << " " << pub;
  }
  ~Sshd() {
    if (proc) (void)proc->terminate(milliseconds(2000));
  }

  mt::SshConfig config() const {
    mt::SshConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.user = "root";
    c.identity_file = dir / "user_key";
    c.known_hosts_file = dir / "known_hosts";
    c.strict_host_key_checking = "yes";
    c.connect_timeout_s = 10;
    c.work_dir = (dir / "remote work").string();  // a space: every path must be quoted
    c.local_probe = MELTRIG_PROBE_PATH;
    return c;
  }
  std::string sshd_log() const { return proc ? proc->stderr_text() : std::string(); }
};

}  // namespace meltrig::test_ssh
