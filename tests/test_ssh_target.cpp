// SshTarget against a REAL OpenSSH server: a throwaway sshd on 127.0.0.1 (free port) with its own
// host key, user key and config in a TempDir. If sshd cannot start, the tests fail with its
// stderr: they never skip.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/process.hpp"
#include "meltrig/targets/ssh_target.hpp"
#include "ssh_fixture.hpp"
#include "test_support.hpp"

namespace mt = meltrig::targets;
using meltrig::Errc;
using meltrig::test::TempDir;
using std::chrono::milliseconds;

namespace meltrig::test_targets {
std::vector<std::string> hostile_args();
std::string printed(const std::vector<std::string>& args);
void make_fake_sysfs(const std::filesystem::path& root);
void check_fake_sysfs_snapshot(const mt::TelemetrySnapshot& s);
bool process_gone(const std::vector<std::string>& argv);
}  // namespace meltrig::test_targets
using namespace meltrig::test_targets;

using meltrig::test_ssh::free_port;
using meltrig::test_ssh::Sshd;

TEST_CASE("ssh target: hostile plan values reach the runner through a real sshd literally") {
  std::filesystem::remove("/tmp/x");
  Sshd sshd;
  mt::SshTarget t(sshd.config());
  auto prep = t.prepare();
  REQUIRE_MESSAGE(prep.ok(), (prep.ok() ? "" : prep.error().describe())
                                 << "\nsshd: " << sshd.sshd_log());
  std::vector<std::string> argv = {MELTRIG_TOY_RUNNER_PATH, "--print-args"};
  auto args = hostile_args();
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = t.run(argv, milliseconds(30000));
  REQUIRE(r.ok());
  CHECK_MESSAGE(r.value().exit_code == 0, r.value().err);
  CHECK(r.value().out == printed({argv.begin() + 1, argv.end()}));  // it echoes --print-args too
  CHECK(r.value().err.empty());
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
  CHECK(t.name() == "ssh:root@127.0.0.1:" + std::to_string(sshd.port));
  REQUIRE(t.teardown().ok());
}

TEST_CASE("ssh target: the example runner's marker file arrives and parses with every token") {
  Sshd sshd;
  mt::SshTarget t(sshd.config());
  REQUIRE(t.prepare().ok());
  const std::string markers = sshd.config().work_dir + "/run 1 markers.txt";
  const int tokens = 24;
  auto h = t.launch(
      {MELTRIG_TOY_RUNNER_PATH, "--markers", markers, "--prompt",
       "why is the sky blue; $(touch /tmp/x)", "--tokens", std::to_string(tokens), "--no-sync"},
      {"MELTRIG_RUN_NOTE=ssh test"});
  REQUIRE(h.ok());
  // Stream the marker file while the runner writes it.
  mt::MarkerTail tail(t, markers);
  std::vector<std::string> streamed;
  for (int i = 0; i < 6000; ++i) {
    auto lines = tail.poll();
    if (lines.ok()) streamed.insert(streamed.end(), lines.value().begin(), lines.value().end());
    if (!h.value()->running()) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto done = h.value()->wait(milliseconds(60000));
  REQUIRE(done.ok());
  CHECK_MESSAGE(done.value().exit_code == 0, done.value().err);
  auto rest = tail.poll();
  REQUIRE(rest.ok());
  streamed.insert(streamed.end(), rest.value().begin(), rest.value().end());
  CHECK(tail.pending().empty());

  TempDir local;
  REQUIRE(t.pull(markers, local / "markers.txt").ok());
  auto log = mt::read_marker_file(local / "markers.txt");
  REQUIRE_MESSAGE(log.ok(), (log.ok() ? "" : log.error().describe()));
  CHECK(log.value().issues.empty());
  CHECK_FALSE(log.value().incomplete_tail);
  std::vector<std::int64_t> indices;
  for (const auto& e : log.value().events)
    if (e.kind == mt::MarkerKind::token) indices.push_back(e.index);
  REQUIRE(indices.size() == tokens);
  for (int i = 0; i < tokens; ++i)
    CHECK(indices[static_cast<std::size_t>(i)] == i);

  // What was streamed during the run is the file, line for line.
  std::string joined;
  for (const auto& l : streamed)
    joined += l + "\n";
  CHECK(joined == meltrig::test::read_file(local / "markers.txt"));
  auto reparsed = mt::parse_markers(joined, "streamed");
  REQUIRE(reparsed.ok());
  CHECK(reparsed.value().events.size() == log.value().events.size());
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
}

TEST_CASE("ssh target: a remote sleep 30 with a 1 s timeout is timed out and gone") {
  Sshd sshd;
  mt::SshTarget t(sshd.config());
  REQUIRE(t.prepare().ok());
  const std::vector<std::string> sleeper = {"sleep", "30.4242"};
  auto r = t.run(sleeper, milliseconds(1000));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  CHECK(r.value().timed_out);
  CHECK(r.value().exit_code == -1);
  CHECK(process_gone(sleeper));  // sshd runs it on this machine: it must not be in /proc

  // launch + terminate: SIGTERM to the remote process group.
  const std::vector<std::string> second = {"sleep", "30.4343"};
  auto h = t.launch(second);
  REQUIRE(h.ok());
  CHECK(h.value()->running());
  auto term = h.value()->terminate(milliseconds(3000));
  REQUIRE_MESSAGE(term.ok(), (term.ok() ? "" : term.error().describe()));
  CHECK_FALSE(h.value()->running());
  CHECK(process_gone(second));

  // Exit codes come back through ssh.
  auto code = t.run({"/bin/sh", "-c", "exit 7"}, milliseconds(10000));
  REQUIRE(code.ok());
  CHECK(code.value().exit_code == 7);
}

TEST_CASE("ssh target: clock probe through sshd brackets the device monotonic clock") {
  Sshd sshd;
  mt::SshTarget t(sshd.config());
  REQUIRE(t.prepare().ok());
  auto p = t.probe_clock_burst(8);
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().describe()));
  CHECK(p.value().rtt_ns() > 0);
  // Same machine: the device's CLOCK_MONOTONIC is the host's steady clock.
  CHECK(p.value().device_mono_ns >= p.value().host_t0_ns);
  CHECK(p.value().device_mono_ns <= p.value().host_t3_ns);
  CHECK(std::llabs(p.value().offset_ns()) <= p.value().rtt_ns() / 2 + 1);
  CHECK(p.value().device_boot_ns >= p.value().device_mono_ns);
  CHECK(t.probe_session_active());  // answered by one persistent `meltrig_probe --serve`
  MESSAGE("ssh probe (persistent session) best rtt of 8: " << p.value().rtt_ns() / 1000 << " us");

  // One ssh call per probe (an old probe without --serve): slower, same bracket.
  auto cfg = sshd.config();
  cfg.remote.persistent_probe = false;
  mt::SshTarget once(cfg);
  REQUIRE(once.prepare().ok());
  auto q = once.probe_clock_burst(3);
  REQUIRE(q.ok());
  CHECK_FALSE(once.probe_session_active());
  CHECK(q.value().device_mono_ns >= q.value().host_t0_ns);
  CHECK(q.value().device_mono_ns <= q.value().host_t3_ns);
  MESSAGE("ssh probe (one ssh call each, ControlMaster) best rtt of 3: "
          << q.value().rtt_ns() / 1000 << " us");
  REQUIRE(t.teardown().ok());
  CHECK_FALSE(t.probe_session_active());
}

TEST_CASE("ssh target: telemetry from a fake sysfs tree via meltrig_probe on the device") {
  Sshd sshd;
  TempDir tree;
  make_fake_sysfs(tree / "sys");
  auto cfg = sshd.config();
  cfg.remote.sysfs_root = (tree / "sys").string();
  mt::SshTarget t(cfg);
  REQUIRE(t.prepare().ok());
  const auto before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  auto s = t.read_telemetry();
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  check_fake_sysfs_snapshot(s.value());
  CHECK(s.value().device_mono_ns >= before);
}

TEST_CASE("ssh target: push and pull keep bytes and odd file names intact") {
  Sshd sshd;
  auto cfg = sshd.config();
  mt::SshTarget t(cfg);
  REQUIRE(t.prepare().ok());
  TempDir local;
  std::string bytes;
  for (int i = 0; i < 70000; ++i)
    bytes.push_back(static_cast<char>(i * 7 % 256));
  std::ofstream(local / "in.bin", std::ios::binary) << bytes;
  const std::string remote = cfg.work_dir + "/it's $(a) `b` *.bin";
  REQUIRE(t.push(local / "in.bin", remote).ok());
  CHECK(meltrig::test::read_file(remote) == bytes);  // same machine: look at the far side
  REQUIRE(t.pull(remote, local / "out.bin").ok());
  CHECK(meltrig::test::read_file(local / "out.bin") == bytes);
  auto tail = t.read_file(remote, 69990);
  REQUIRE(tail.ok());
  CHECK(tail.value() == bytes.substr(69990));

  auto missing = t.pull(cfg.work_dir + "/nope", local / "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::io_error);
  CHECK_FALSE(std::filesystem::exists(local / "nope"));
  auto gone = t.read_file(cfg.work_dir + "/nope");
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
}

TEST_CASE("ssh target: a refused connection fails prepare() with ssh's message") {
  Sshd sshd;  // for its keys; the target points at a port nobody listens on
  auto cfg = sshd.config();
  cfg.port = free_port();
  mt::SshTarget t(cfg);
  auto r = t.prepare();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("refused") != std::string::npos);

  auto bad = sshd.config();
  bad.host = "-oProxyCommand=touch /tmp/x";
  mt::SshTarget evil(bad);
  auto e = evil.prepare();
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::invalid_argument);
}
