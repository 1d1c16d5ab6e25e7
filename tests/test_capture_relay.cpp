// A capture that routes the monitor through a relay leaves the relay in its safe state however it
// ends: checked in the relay emulator's own log, with every program a real child process.
#include <doctest/doctest.h>
#include <sys/mount.h>

#include <algorithm>

#include <fstream>

#include "test_support.hpp"

using meltrig::test::Process;
using meltrig::test::TempDir;

namespace {

std::vector<std::string> log_states(const std::filesystem::path& log) {
  std::vector<std::string> states;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find("channels=");
    if (at != std::string::npos) states.push_back(line.substr(at + 9, line.find(' ', at) - at - 9));
  }
  return states;
}

bool wait_for_state(const std::filesystem::path& log, const std::string& state) {
  for (int i = 0; i < 500; ++i) {
    auto s = log_states(log);
    if (!s.empty() && s.back() == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST_CASE("capture relay: SIGTERM during a routed capture restores the safe state") {
  TempDir dir;
  Process relay({meltrig::test::cli(), "emulate", "lcus", "--link", (dir / "relay").string(),
                 "--channels", "4", "--log", (dir / "relay.log").string()},
                dir.path(), "relay");
  Process lvpm({meltrig::test::cli(), "emulate", "lvpm", "--link", (dir / "lvpm").string()},
               dir.path(), "lvpm");
  REQUIRE(meltrig::test::wait_for_path(dir / "relay"));
  REQUIRE(meltrig::test::wait_for_path(dir / "lvpm"));
  Process cap({meltrig::test::cli(), "capture", "--monitor", "lvpm:" + (dir / "lvpm").string(),
               "--relay", "lcus:" + (dir / "relay").string() + ":channels=4", "--route", "2",
               "--duration", "60", "-q", "-o", (dir / "out.h5").string()},
              dir.path(), "cap");
  REQUIRE(wait_for_state(dir / "relay.log", "0100"));  // channel 2 on, the others off
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  cap.signal(SIGTERM);
  CHECK(cap.wait() == 0);
  INFO(cap.err());
  CHECK(wait_for_state(dir / "relay.log", "0000"));
  auto states = log_states(dir / "relay.log");
  // Exclusive routing: never two channels on at once.
  for (const auto& s : states)
    CHECK(std::count(s.begin(), s.end(), '1') <= 1);
  CHECK(cap.err().find("safe state restored") != std::string::npos);
  CHECK(cap.out().find("capture interrupted") != std::string::npos);
  relay.signal(SIGTERM);
  lvpm.signal(SIGTERM);
}

TEST_CASE("capture relay: a full disk ends the capture with a clear error and the safe state") {
  TempDir dir;
  auto small = dir / "small";
  std::filesystem::create_directories(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=2m") != 0) {
    MESSAGE("cannot mount a tmpfs here (not root?): skipped");
    return;
  }
  Process relay({meltrig::test::cli(), "emulate", "lcus", "--link", (dir / "relay").string(),
                 "--channels", "4", "--log", (dir / "relay.log").string()},
                dir.path(), "relay");
  REQUIRE(meltrig::test::wait_for_path(dir / "relay"));
  // 1 MHz of synthetic samples fills 2 MB within a second or two.
  Process cap({meltrig::test::cli(), "capture", "--monitor", "synthetic:1000000", "--relay",
               "lcus:" + (dir / "relay").string() + ":channels=4", "--route", "3", "--safe-on", "1",
               "--duration", "60", "-q", "-o", (small / "out.h5").string()},
              dir.path(), "cap");
  int rc = cap.wait(std::chrono::seconds(60));
  INFO(cap.err());
  CHECK(rc == 1);
  CHECK(cap.err().find("No space left on device") != std::string::npos);
  CHECK(cap.err().find((small / "out.h5").string()) != std::string::npos);
  CHECK(wait_for_state(dir / "relay.log", "1000"));  // the safe state: channel 1 on
  auto states = log_states(dir / "relay.log");
  CHECK(std::find(states.begin(), states.end(), "0010") != states.end());  // it was routed
  relay.signal(SIGTERM);
  CHECK(relay.wait() == 0);
  ::umount2(small.c_str(), MNT_DETACH);
}
