#include "meltrig/targets/remote_shell_target.hpp"

#include <charconv>
#include <thread>

#include "meltrig/targets/shell_quote.hpp"

namespace meltrig::targets {
namespace {

constexpr std::string_view kPidPrefix = "meltrig-pid ";

std::int64_t host_steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The local client (ssh / adb) of a program running under the wrapper on the device.
class RemoteRunHandle final : public RunHandle {
 public:
  RemoteRunHandle(RemoteShellTarget& target, std::unique_ptr<Subprocess> client)
      : target_(target), client_(std::move(client)) {}
  ~RemoteRunHandle() override {
    if (client_->running()) (void)terminate(milliseconds(1000));
  }

  Result<RunOutput> wait(milliseconds timeout) override {
    auto st = client_->wait(timeout);
    if (!st) return st.error();
    return output(st.value().exit_code);
  }

  Result<RunOutput> terminate(milliseconds grace) override {
    if (!client_->running()) return output(client_->wait(milliseconds(0)).value().exit_code);
    // The pid line is the first thing the wrapper prints; give it a moment if the program was
    // only just launched.
    long long pid = find_remote_pid(client_->stderr_text());
    const auto until = std::chrono::steady_clock::now() + target_.settings().call_timeout;
    while (pid < 0 && client_->running() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
      pid = find_remote_pid(client_->stderr_text());
    }
    std::optional<Error> kill_error;
    if (pid > 0 && client_->running()) {
      auto k = target_.kill_remote(pid, "TERM");
      if (!k) kill_error = k.error();
      if (client_->wait(grace).ok())
        return output(client_->wait(milliseconds(0)).value().exit_code);
      k = target_.kill_remote(pid, "KILL");
      if (!k) kill_error = k.error();
      (void)client_->wait(target_.settings().call_timeout);
    }
    // Whatever happened on the device, the local client goes.
    auto st = client_->terminate(milliseconds(500));
    if (pid < 0)
      return Error{Errc::io_error,
                   "terminate: the device never reported the program's pid; only "
                   "the local client was stopped"};
    if (kill_error && st.signal != 0) return *kill_error;
    return output(st.exit_code);
  }

  bool running() override { return client_->running(); }

 private:
  RunOutput output(int exit_code) const {
    RunOutput r;
    r.exit_code = exit_code;
    r.out = client_->stdout_text();
    r.err = strip_pid_line(client_->stderr_text());
    return r;
  }

  RemoteShellTarget& target_;
  std::unique_ptr<Subprocess> client_;
};

}  // namespace

std::vector<std::string> wrapped_argv(const std::vector<std::string>& argv,
                                      const std::vector<std::string>& env) {
  std::vector<std::string> w = {"sh", "-c", kRunWrapperScript, kScriptName};
  if (!env.empty()) {
    w.push_back("env");
    w.insert(w.end(), env.begin(), env.end());
  }
  w.insert(w.end(), argv.begin(), argv.end());
  return w;
}

long long find_remote_pid(const std::string& err) {
  std::size_t pos = 0;
  while (pos < err.size()) {
    auto nl = err.find('\n', pos);
    if (nl == std::string::npos) break;  // only complete lines
    std::string_view line(err.data() + pos, nl - pos);
    if (line.starts_with(kPidPrefix)) {
      long long pid = -1;
      auto digits = line.substr(kPidPrefix.size());
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
      if (ec == std::errc{} && p == digits.data() + digits.size() && pid > 0) return pid;
    }
    pos = nl + 1;
  }
  return -1;
}

std::string strip_pid_line(const std::string& err) {
  std::size_t pos = 0;
  while (pos < err.size()) {
    auto nl = err.find('\n', pos);
    std::string_view line(err.data() + pos, (nl == std::string::npos ? err.size() : nl) - pos);
    if (line.starts_with(kPidPrefix) && nl != std::string::npos)
      return err.substr(0, pos) + err.substr(nl + 1);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return err;
}

RemoteShellTarget::RemoteShellTarget(RemoteSettings s) : rs_(std::move(s)) {
  current_unit_.setting = rs_.battery_current_unit;
}

CurrentUnitState RemoteShellTarget::current_unit() const {
  std::lock_guard lock(unit_mu_);
  return current_unit_;
}

Result<RunOutput> RemoteShellTarget::checked(Result<RunOutput> r, const std::string& what) const {
  if (!r) return r;
  if (r.value().timed_out)
    return Error{Errc::timeout, name() + ": " + what + ": no answer within " +
                                    std::to_string(rs_.call_timeout.count()) + " ms"};
  if (r.value().exit_code != 0)
    return Error{Errc::io_error, name() + ": " + what + ": exit " +
                                     std::to_string(r.value().exit_code) + ": " + r.value().err};
  return r;
}

Result<RunOutput> RemoteShellTarget::shell(const std::vector<std::string>& argv,
                                           milliseconds timeout, const SpawnOptions& options) {
  return run_process(transport_argv(sh_join(argv)), timeout, options);
}

Result<void> RemoteShellTarget::kill_remote(long long pid, const std::string& signal) {
  auto r = checked(
      shell({"sh", "-c", kKillScript, kScriptName, signal, std::to_string(pid)}, rs_.call_timeout),
      "kill -" + signal + " " + std::to_string(pid));
  if (!r) return r.error();
  return {};
}

Result<std::unique_ptr<RunHandle>> RemoteShellTarget::launch(const std::vector<std::string>& argv,
                                                             const std::vector<std::string>& env) {
  if (argv.empty()) return Error{Errc::invalid_argument, name() + ": launch: empty argv"};
  for (const auto& e : env)
    if (e.find('=') == std::string::npos || e.front() == '=')
      return Error{Errc::invalid_argument,
                   name() + ": launch: environment entry '" + e + "' is not NAME=value"};
  auto p = Subprocess::spawn(transport_argv(sh_join(wrapped_argv(argv, env))));
  if (!p) return p.error();
  return std::unique_ptr<RunHandle>(new RemoteRunHandle(*this, std::move(p.value())));
}

Result<RunOutput> RemoteShellTarget::run(const std::vector<std::string>& argv,
                                         milliseconds timeout) {
  auto h = launch(argv);
  if (!h) return h.error();
  auto r = h.value()->wait(timeout);
  if (r) return r;
  if (r.error().code != Errc::timeout) return r.error();
  auto t = h.value()->terminate(milliseconds(200));
  if (!t) return t.error();
  RunOutput out = t.value();
  out.timed_out = true;
  out.exit_code = -1;
  return out;
}

Result<std::string> RemoteShellTarget::read_file(const std::string& remote, std::uint64_t offset) {
  auto r = shell({"tail", "-c", "+" + std::to_string(offset + 1), remote}, rs_.call_timeout);
  if (!r) return r.error();
  if (r.value().timed_out)
    return Error{Errc::timeout, name() + ": read " + remote + ": no answer within " +
                                    std::to_string(rs_.call_timeout.count()) + " ms"};
  if (r.value().exit_code != 0) {
    const bool missing = r.value().err.find("No such file") != std::string::npos;
    return Error{missing ? Errc::not_found : Errc::io_error,
                 name() + ": read " + remote + ": " + r.value().err};
  }
  return std::move(r.value().out);
}

Result<ClockProbe> RemoteShellTarget::probe_clock() {
  if (rs_.probe_path.empty())
    return Error{Errc::unsupported, name() + ": no device probe (meltrig_probe) configured"};
  std::lock_guard lock(probe_mu_);
  if (rs_.persistent_probe && !probe_session_failed_) {
    auto p = probe_via_session();
    if (p) return p;
    // The session did not answer (an old probe without --serve, a stand-in, a lost channel):
    // one call per probe from now on.
    probe_session_.reset();
    probe_session_failed_ = true;
  }
  return probe_once();
}

Result<ClockProbe> RemoteShellTarget::probe_once() {
  const std::int64_t t0 = host_steady_ns();
  auto r = shell({rs_.probe_path}, rs_.call_timeout);
  const std::int64_t t3 = host_steady_ns();
  auto c = checked(std::move(r), rs_.probe_path);
  if (!c) return c.error();
  auto p = parse_probe_line(c.value().out, name() + ":" + rs_.probe_path);
  if (!p) return p.error();
  p.value().host_t0_ns = t0;
  p.value().host_t3_ns = t3;
  return p;
}

Result<ClockProbe> RemoteShellTarget::probe_via_session() {
  if (!probe_session_ || !probe_session_->running()) {
    SpawnOptions opt;
    opt.stdin_pipe = true;
    auto s = Subprocess::spawn(transport_argv(sh_join({rs_.probe_path, "--serve"})), opt);
    if (!s) return s.error();
    probe_session_ = std::move(s.value());
    probe_consumed_ = 0;
  }
  const std::int64_t t0 = host_steady_ns();
  auto w = probe_session_->write_stdin("p\n");
  if (!w) return w.error();
  const auto until = std::chrono::steady_clock::now() + rs_.call_timeout;
  std::string answer;
  while (true) {
    if (probe_session_->stdout_size() > probe_consumed_) {
      answer = probe_session_->stdout_from(probe_consumed_);
      if (answer.find('\n') != std::string::npos) break;
    }
    if (!probe_session_->running() && probe_session_->stdout_size() == probe_consumed_)
      return Error{Errc::io_error,
                   name() + ": probe session ended: " + probe_session_->stderr_text()};
    if (std::chrono::steady_clock::now() >= until)
      return Error{Errc::timeout, name() + ": probe session did not answer within " +
                                      std::to_string(rs_.call_timeout.count()) + " ms"};
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  const std::int64_t t3 = host_steady_ns();
  auto nl = answer.find('\n');
  probe_consumed_ += nl + 1;
  auto p = parse_probe_line(answer.substr(0, nl + 1), name() + ":" + rs_.probe_path + " --serve");
  if (!p) return p.error();
  p.value().host_t0_ns = t0;
  p.value().host_t3_ns = t3;
  return p;
}

Result<void> RemoteShellTarget::prepare_device(const std::string& work_dir,
                                               const std::filesystem::path& local_probe) {
  auto mk = checked(shell({"mkdir", "-p", work_dir}, rs_.call_timeout), "mkdir -p " + work_dir);
  if (!mk) return mk.error();
  if (local_probe.empty()) return {};
  return install_probe(local_probe);
}

Result<void> RemoteShellTarget::install_probe(const std::filesystem::path& local) {
  const std::string tmp = rs_.probe_path + ".new";
  auto p = push(local, tmp);
  if (!p) return p;
  auto ch = checked(shell({"chmod", "755", tmp}, rs_.call_timeout), "chmod 755 " + tmp);
  if (!ch) return ch.error();
  auto mv = checked(shell({"mv", "-f", tmp, rs_.probe_path}, rs_.call_timeout),
                    "mv -f " + tmp + " " + rs_.probe_path);
  if (!mv) return mv.error();
  return {};
}

void RemoteShellTarget::stop_probe_session() {
  std::lock_guard lock(probe_mu_);
  probe_session_.reset();
}

bool RemoteShellTarget::probe_session_active() const {
  std::lock_guard lock(probe_mu_);
  return probe_session_ != nullptr && !probe_session_failed_;
}

Result<TelemetrySnapshot> RemoteShellTarget::read_telemetry() {
  if (rs_.probe_path.empty())
    return Error{Errc::unsupported, name() + ": no device probe (meltrig_probe) configured"};
  auto r = checked(shell({rs_.probe_path, "--telemetry", rs_.sysfs_root}, rs_.call_timeout),
                   rs_.probe_path + " --telemetry");
  if (!r) return r.error();
  auto dump = parse_telemetry_dump(r.value().out, name() + ":" + rs_.probe_path);
  if (!dump) return dump.error();
  TelemetrySnapshot snap;
  snap.device_mono_ns = dump.value().first.device_mono_ns;
  std::lock_guard lock(unit_mu_);
  snap.readings = readings_from_sysfs(dump.value().second, current_unit_);
  return snap;
}

}  // namespace meltrig::targets
