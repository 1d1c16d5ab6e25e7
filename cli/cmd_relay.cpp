// meltrig relay: switch a relay board or a switchable USB hub (ports are channels) from the
// command line. A hub's safe state is every port powered unless its spec says safe=off.
//   meltrig relay SPEC CH on|off      one-shot: set one channel and exit (the state stays)
//   meltrig relay SPEC route CH       one-shot: all channels off, then CH on, and exit
//   meltrig relay SPEC status         hubs: every port's power as the device reports it
//   meltrig relay SPEC hold CH [--safe-on CH,...] [--seconds S] [--run 'COMMAND']
//       route exclusively and hold until Ctrl-C/SIGTERM, the time is up, or COMMAND exits;
//       then restore the safe state on every exit path (exit 0 on a normal end or a signal,
//       1 on an error, and 1 whenever the safe state could not be restored).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "cli_common.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"
#include "meltrig/rig/usb_hubs.hpp"

extern char** environ;

namespace meltrig::cli {
namespace {

struct RelayArgs {
  std::string spec;
  std::vector<std::string> words;
  std::vector<int> safe_on;
  double seconds = 0;
  std::string run;  ///< hold: a shell command run while the channel is held
};

std::optional<int> parse_channel(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string not_verified(const rig::RelayInfo& info) {
  return info.read_back ? ""
                        : " (not verified: " + info.driver + " boards cannot report their state)";
}

std::string seconds_text(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g s have passed", s);
  return b;
}

Result<std::unique_ptr<rig::Relay>> open_relay(const rig::DeviceSpec& spec, rig::RelayInfo& info) {
  auto relay = rig::make_relay(spec);
  if (!relay) return relay.error();
  auto i = (*relay)->open();
  if (!i) return i.error();
  info = *i;
  return std::move(relay.value());
}

int run_set(const rig::DeviceSpec& spec, int channel, bool on) {
  rig::RelayInfo info;
  auto relay = open_relay(spec, info);
  if (!relay) return fail(relay.error().describe());
  auto r = (*relay)->set(channel, on);
  (*relay)->close();
  if (!r) return fail(r.error().describe());
  std::printf("%s: channel %d %s%s\n", spec.str().c_str(), channel, on ? "on" : "off",
              not_verified(info).c_str());
  return kOk;
}

int run_route(const rig::DeviceSpec& spec, int channel) {
  rig::RelayInfo info;
  auto relay = open_relay(spec, info);
  if (!relay) return fail(relay.error().describe());
  auto r = rig::route_exclusive(**relay, channel);
  (*relay)->close();
  if (!r) return fail(r.error().describe());
  std::printf("%s: channel %d on, all others off%s\n", spec.str().c_str(), channel,
              not_verified(info).c_str());
  return kOk;
}

int run_status(const rig::DeviceSpec& spec) {
  rig::RelayInfo info;
  auto relay = open_relay(spec, info);
  if (!relay) return fail(relay.error().describe());
  auto* rb = dynamic_cast<rig::PortPowerReadBack*>(relay->get());
  auto power = rb ? rb->read_power()
                  : Result<std::vector<bool>>(make_error(
                        Errc::unsupported, info.driver + " boards cannot report their state"));
  (*relay)->close();
  if (!power) return fail(spec.str() + ": " + power.error().describe());
  for (std::size_t i = 0; i < power->size(); ++i)
    std::printf("%s: port %zu %s\n", spec.str().c_str(), i + 1, (*power)[i] ? "on" : "off");
  return kOk;
}

/// Runs `command` through /bin/sh while the relay is held, in a process group of its own so a
/// stop request reaches everything it started, with SIGPIPE back to default (we ignore it, and
/// exec keeps ignored signals ignored).
Result<pid_t> spawn(const std::string& command) {
  std::string sh = "/bin/sh", c = "-c";
  char* args[] = {sh.data(), c.data(), const_cast<char*>(command.c_str()), nullptr};
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], nullptr, &attr, args, environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return make_error(Errc::io_error,
                      "cannot run /bin/sh for --run: " + std::string(std::strerror(rc)));
  }
  return pid;
}

/// Asks the command's process group to stop (SIGTERM), waits up to 10 s, then kills it.
void terminate_child(pid_t pid) {
  ::kill(-pid, SIGTERM);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int st = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, &st, 0);
}

int run_hold(const rig::DeviceSpec& spec, int channel, const RelayArgs& a) {
  const std::string& command = a.run;
  auto relay = rig::make_relay(spec);
  if (!relay) return usage(relay.error().message);
  // From here the safe state is armed before anything is switched; every return below goes
  // through routed's restore (explicitly, to report its outcome, or by its destructor).
  auto routed = rig::RoutedRelay::open(std::move(relay.value()), channel, a.safe_on);
  if (!routed) return fail(routed.error().describe());
  auto& rr = **routed;
  std::printf("%s: channel %d on, all others off%s; holding until %s\n", spec.str().c_str(),
              channel, not_verified(rr.info()).c_str(),
              !command.empty() ? "the command exits"
              : a.seconds > 0  ? seconds_text(a.seconds).c_str()
                               : "Ctrl-C/SIGTERM");
  std::fflush(stdout);

  // No --seconds: hold until a signal (time_point::max() never comes).
  const auto deadline = a.seconds > 0 ? std::chrono::steady_clock::now() +
                                            std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::duration<double>(a.seconds))
                                      : std::chrono::steady_clock::time_point::max();
  auto time_up = [&] { return std::chrono::steady_clock::now() >= deadline; };
  std::string error, ended = "time up";

  if (command.empty()) {
    while (!g_interrupted.load() && !time_up())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } else if (auto pid = spawn(command); !pid) {
    error = pid.error().describe();
  } else {
    ended = "command exited";
    for (;;) {
      int st = 0;
      if (::waitpid(*pid, &st, WNOHANG) == *pid) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
          error = "--run command " +
                  (WIFEXITED(st) ? "exited with " + std::to_string(WEXITSTATUS(st))
                                 : "was killed by signal " + std::to_string(WTERMSIG(st))) +
                  " while channel " + std::to_string(channel) + " was held";
        }
        break;
      }
      if (g_interrupted.load() || time_up()) {
        ended = g_interrupted.load() ? "interrupted" : "time up";
        terminate_child(*pid);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (g_interrupted.load()) ended = "interrupted";

  auto restored = rr.restore();
  if (!restored) {
    if (!error.empty()) (void)fail(error);
    return fail("SAFE STATE NOT RESTORED (" + rr.safe_state_text() +
                " wanted): " + restored.error().describe() +
                ". The relays may still be as routed: check the board.");
  }
  std::printf("%s: %s; safe state restored (%s)%s\n", spec.str().c_str(),
              error.empty() ? ended.c_str() : "error", rr.safe_state_text().c_str(),
              not_verified(rr.info()).c_str());
  std::fflush(stdout);
  if (!error.empty()) return fail(error);
  return kOk;
}

int run(const RelayArgs& a) {
  auto spec = rig::DeviceSpec::parse(a.spec);
  if (!spec) return usage(spec.error().message);
  const auto& w = a.words;
  const bool hold = !w.empty() && w[0] == "hold";
  if (!hold && (!a.safe_on.empty() || a.seconds != 0 || !a.run.empty()))
    return usage("--safe-on, --seconds and --run apply to \"hold\" only");
  if (a.seconds < 0) return usage("--seconds must not be negative");
  if (!w.empty() && (w[0] == "route" || hold)) {
    if (w.size() < 2) return usage("\"" + w[0] + "\" needs a channel: " + w[0] + " CH");
    auto ch = parse_channel(w[1]);
    if (!ch) return usage("channel \"" + w[1] + "\" is not a number");
    if (w.size() > 2) return usage("unexpected \"" + w[2] + "\" after " + w[0] + " " + w[1]);
    return hold ? run_hold(*spec, *ch, a) : run_route(*spec, *ch);
  }
  if (w.size() == 1 && w[0] == "status") return run_status(*spec);
  if (w.size() != 2 || (w[1] != "on" && w[1] != "off"))
    return usage("expected CH on|off, route CH, hold CH or status");
  auto ch = parse_channel(w[0]);
  if (!ch) return usage("channel \"" + w[0] + "\" is not a number");
  return run_set(*spec, *ch, w[1] == "on");
}

}  // namespace

void add_relay(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<RelayArgs>();
  auto* s = app.add_subcommand(
      "relay",
      "switch a relay board or USB hub: SPEC CH on|off, SPEC route CH, SPEC hold CH, SPEC status");
  s->add_option("spec", a->spec,
                "DRIVER:PORT[:key=value,...], e.g. lcus:/dev/ttyUSB0:channels=4, ykush:usb, "
                "uhub:usb:1-1.4")
      ->required();
  s->add_option("action", a->words, "CH on|off | route CH | hold CH | status")->required();
  s->add_option("--safe-on", a->safe_on,
                "hold: channels on in the safe state restored at the end (default: the driver's: "
                "relays all off, hubs all ports on)")
      ->delimiter(',');
  s->add_option("--seconds", a->seconds, "hold: release after this long (default: until signal)");
  s->add_option("--run", a->run,
                "hold: run this shell command while the channel is held, release when it exits "
                "(a failure is an error exit, after the safe state is restored)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
