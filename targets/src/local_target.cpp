#include "meltrig/targets/local_target.hpp"

#include <time.h>

#include <fstream>
#include <sstream>

namespace meltrig::targets {
namespace {

std::int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t host_steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Result<void> copy_host_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(from, ec))
    return Error{Errc::not_found, from.string() + ": no such file"};
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec)
    return Error{Errc::file_error,
                 "copy " + from.string() + " -> " + to.string() + ": " + ec.message()};
  return {};
}

}  // namespace

LocalTarget::LocalTarget(LocalConfig config) : cfg_(std::move(config)) {
  current_unit_.setting = cfg_.battery_current_unit;
}

std::string LocalTarget::describe() const {
  return "local: root=" + (cfg_.root.empty() ? std::string(".") : cfg_.root.string()) +
         " sysfs=" + cfg_.sysfs_root.string() + " probe=" +
         (cfg_.probe_path.empty() ? std::string("in-process") : cfg_.probe_path.string());
}

std::filesystem::path LocalTarget::resolve(const std::string& remote) const {
  std::filesystem::path p(remote);
  if (p.is_absolute() || cfg_.root.empty()) return p;
  return cfg_.root / p;
}

Result<void> LocalTarget::prepare() {
  if (cfg_.root.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(cfg_.root, ec);
  if (ec) return Error{Errc::file_error, cfg_.root.string() + ": " + ec.message()};
  return {};
}

Result<void> LocalTarget::push(const std::filesystem::path& local, const std::string& remote) {
  return copy_host_file(local, resolve(remote));
}

Result<void> LocalTarget::pull(const std::string& remote, const std::filesystem::path& local) {
  return copy_host_file(resolve(remote), local);
}

Result<RunOutput> LocalTarget::run(const std::vector<std::string>& argv, milliseconds timeout) {
  SpawnOptions opt;
  opt.cwd = cfg_.root;
  return run_process(argv, timeout, opt);
}

Result<std::unique_ptr<RunHandle>> LocalTarget::launch(const std::vector<std::string>& argv,
                                                       const std::vector<std::string>& env) {
  SpawnOptions opt;
  opt.cwd = cfg_.root;
  opt.env = env;
  auto p = Subprocess::spawn(argv, opt);
  if (!p) return p.error();
  return std::unique_ptr<RunHandle>(new LocalRunHandle(std::move(p.value())));
}

Result<std::string> LocalTarget::read_file(const std::string& remote, std::uint64_t offset) {
  auto path = resolve(remote);
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::not_found, path.string() + ": cannot open"};
  in.seekg(static_cast<std::streamoff>(offset));
  if (!in) return std::string();  // offset beyond the end: nothing new
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<TelemetrySnapshot> LocalTarget::read_telemetry() {
  TelemetrySnapshot snap;
  snap.device_mono_ns = clock_ns(CLOCK_MONOTONIC);
  auto entries = collect_sysfs(cfg_.sysfs_root);
  std::lock_guard lock(unit_mu_);
  snap.readings = readings_from_sysfs(entries, current_unit_);
  return snap;
}

Result<ClockProbe> LocalTarget::probe_clock() {
  if (cfg_.probe_path.empty()) {
    ClockProbe p;
    p.host_t0_ns = host_steady_ns();
    p.device_mono_ns = clock_ns(CLOCK_MONOTONIC);
    p.device_boot_ns = clock_ns(CLOCK_BOOTTIME);
    p.device_real_ns = clock_ns(CLOCK_REALTIME);
    p.host_t3_ns = host_steady_ns();
    return p;
  }
  const std::int64_t t0 = host_steady_ns();
  auto r = run_process({cfg_.probe_path.string()}, cfg_.call_timeout);
  const std::int64_t t3 = host_steady_ns();
  if (!r) return r.error();
  if (r.value().timed_out)
    return Error{Errc::timeout, cfg_.probe_path.string() + ": no answer within " +
                                    std::to_string(cfg_.call_timeout.count()) + " ms"};
  if (r.value().exit_code != 0)
    return Error{Errc::io_error, cfg_.probe_path.string() + ": exit " +
                                     std::to_string(r.value().exit_code) + ": " + r.value().err};
  auto p = parse_probe_line(r.value().out, cfg_.probe_path.string());
  if (!p) return p.error();
  p.value().host_t0_ns = t0;
  p.value().host_t3_ns = t3;
  return p;
}

LocalRunHandle::~LocalRunHandle() {
  if (p_->running()) (void)p_->terminate(milliseconds(1000));
}

Result<RunOutput> LocalRunHandle::wait(milliseconds timeout) {
  auto st = p_->wait(timeout);
  if (!st) return st.error();
  RunOutput r;
  r.exit_code = st.value().exit_code;
  r.out = p_->stdout_text();
  r.err = p_->stderr_text();
  return r;
}

Result<RunOutput> LocalRunHandle::terminate(milliseconds grace) {
  auto st = p_->terminate(grace);
  RunOutput r;
  r.exit_code = st.exit_code;
  r.out = p_->stdout_text();
  r.err = p_->stderr_text();
  return r;
}

}  // namespace meltrig::targets
