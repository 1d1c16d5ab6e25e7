#include "meltrig/targets/ssh_target.hpp"

#include <stdlib.h>

#include <fstream>
#include <sstream>

namespace meltrig::targets {
namespace {

RemoteSettings with_work_dir(const SshConfig& c) {
  RemoteSettings s = c.remote;
  s.work_dir = c.work_dir;
  if (s.probe_path.empty() && !c.local_probe.empty()) s.probe_path = c.work_dir + "/meltrig_probe";
  return s;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A host or user name that ssh could take for an option, or that holds whitespace or '@'.
bool bad_name(const std::string& s) {
  if (!s.empty() && s.front() == '-') return true;
  for (char c : s)
    if (c == ' ' || c == '\t' || c == '\n' || c == '@' || c == '\0') return true;
  return false;
}

}  // namespace

SshTarget::SshTarget(SshConfig config)
    : RemoteShellTarget(with_work_dir(config)), cfg_(std::move(config)) {}

SshTarget::~SshTarget() {
  if (master_up_) (void)teardown();
}

std::string SshTarget::destination() const {
  return cfg_.user.empty() ? cfg_.host : cfg_.user + "@" + cfg_.host;
}

std::string SshTarget::name() const {
  return "ssh:" + destination() + ":" + std::to_string(cfg_.port);
}

std::string SshTarget::describe() const {
  return name() + " work_dir=" + cfg_.work_dir +
         " probe=" + (rs_.probe_path.empty() ? std::string("none") : rs_.probe_path) +
         (cfg_.control_master ? " (ControlMaster)" : "");
}

std::vector<std::string> SshTarget::ssh_base_argv() const {
  std::vector<std::string> a = {cfg_.ssh_program,
                                "-o",
                                "BatchMode=yes",
                                "-o",
                                "StrictHostKeyChecking=" + cfg_.strict_host_key_checking,
                                "-o",
                                "ConnectTimeout=" + std::to_string(cfg_.connect_timeout_s),
                                "-o",
                                "LogLevel=ERROR",
                                "-p",
                                std::to_string(cfg_.port)};
  if (!cfg_.known_hosts_file.empty())
    a.insert(a.end(), {"-o", "UserKnownHostsFile=" + cfg_.known_hosts_file.string()});
  if (!cfg_.identity_file.empty())
    a.insert(a.end(), {"-i", cfg_.identity_file.string(), "-o", "IdentitiesOnly=yes"});
  if (master_up_)
    a.insert(a.end(),
             {"-o", "ControlMaster=no", "-o", "ControlPath=" + (control_dir_ / "cm").string()});
  a.push_back(destination());
  return a;
}

std::vector<std::string> SshTarget::transport_argv(const std::string& command_line) const {
  auto a = ssh_base_argv();
  a.push_back("--");
  a.push_back(command_line);
  return a;
}

Result<void> SshTarget::prepare() {
  if (bad_name(cfg_.host) || cfg_.host.empty() || bad_name(cfg_.user))
    return Error{Errc::invalid_argument,
                 "ssh: host '" + cfg_.host + "' / user '" + cfg_.user + "' is not a plain name"};
  if (cfg_.control_master && !master_up_) {
    // A short directory: the socket path must fit in sockaddr_un (108 bytes).
    char tmpl[] = "/tmp/meltrig-ssh-XXXXXX";
    if (!::mkdtemp(tmpl)) return Error{Errc::file_error, "ssh: mkdtemp /tmp/meltrig-ssh-XXXXXX"};
    control_dir_ = tmpl;
    auto argv = ssh_base_argv();
    argv.pop_back();  // destination goes last, after the master options
    argv.insert(argv.end(),
                {"-o", "ControlMaster=yes", "-o", "ControlPath=" + (control_dir_ / "cm").string(),
                 "-N", "-f", destination()});
    SpawnOptions opt;
    opt.all_output_file = control_dir_ / "master.log";
    auto r = run_process(argv, std::chrono::seconds(cfg_.connect_timeout_s + 5), opt);
    if (!r || r.value().timed_out || r.value().exit_code != 0) {
      std::string log = slurp(control_dir_ / "master.log");
      std::error_code ec;
      std::filesystem::remove_all(control_dir_, ec);
      if (!r) return r.error();
      return Error{r.value().timed_out ? Errc::timeout : Errc::io_error,
                   name() + ": cannot connect: " + log};
    }
    master_up_ = true;
  }
  return prepare_device(cfg_.work_dir, cfg_.local_probe);
}

Result<void> SshTarget::push(const std::filesystem::path& local, const std::string& remote) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(local, ec))
    return Error{Errc::not_found, local.string() + ": no such file"};
  SpawnOptions opt;
  opt.stdin_file = local;
  auto r = checked(shell({"sh", "-c", "cat > \"$1\"", kScriptName, remote}, rs_.call_timeout, opt),
                   "push " + local.string() + " -> " + remote);
  if (!r) return r.error();
  return {};
}

Result<void> SshTarget::pull(const std::string& remote, const std::filesystem::path& local) {
  SpawnOptions opt;
  opt.stdout_file = local;
  auto r = checked(shell({"cat", remote}, rs_.call_timeout, opt), "pull " + remote);
  if (!r) {
    std::error_code ec;
    std::filesystem::remove(local, ec);  // no half file left behind
    return r.error();
  }
  return {};
}

Result<void> SshTarget::teardown() {
  stop_probe_session();
  if (!master_up_) return {};
  std::vector<std::string> argv = {cfg_.ssh_program,
                                   "-o",
                                   "ControlPath=" + (control_dir_ / "cm").string(),
                                   "-O",
                                   "exit",
                                   "-p",
                                   std::to_string(cfg_.port),
                                   destination()};
  auto r = run_process(argv, rs_.call_timeout);
  master_up_ = false;
  std::error_code ec;
  std::filesystem::remove_all(control_dir_, ec);
  if (!r) return r.error();
  if (r.value().timed_out || r.value().exit_code != 0)
    return Error{Errc::io_error, name() + ": stopping the ControlMaster: " + r.value().err};
  return {};
}

}  // namespace meltrig::targets
