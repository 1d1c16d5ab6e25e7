#include "meltrig/targets/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace meltrig::targets {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int e) {
  return std::strerror(e);
}

/// The parent's environment with `extra` ("NAME=value") added or replacing same-named entries.
std::vector<std::string> merged_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    bool replaced = false;
    for (const auto& x : extra) {
      auto xeq = x.find('=');
      if (xeq != std::string::npos && eq != std::string_view::npos &&
          entry.substr(0, eq) == std::string_view(x).substr(0, xeq)) {
        replaced = true;
        break;
      }
    }
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& x : extra)
    env.push_back(x);
  return env;
}

ExitStatus decode_status(int st) {
  ExitStatus s;
  if (WIFEXITED(st)) {
    s.exit_code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    s.signal = WTERMSIG(st);
    s.exit_code = 128 + s.signal;
  }
  return s;
}

/// Closes both ends of up to two pipes on an error path.
struct PipeCloser {
  int* fds[4];
  bool armed = true;
  ~PipeCloser() {
    if (!armed) return;
    for (int* f : fds)
      if (f && *f >= 0) ::close(*f);
  }
};

/// The strings the file actions point into: they must outlive posix_spawn.
struct SpawnPaths {
  std::string stdin_path, stdout_path, cwd;
};

/// The child's stdin (the socket, a file or /dev/null), stdout and stderr (pipes, a file, or one
/// file for both) and working directory.
void add_file_actions(posix_spawn_file_actions_t& fa, const SpawnOptions& options, int out_w,
                      int err_w, int in_r, SpawnPaths& paths) {
  paths.stdin_path = options.stdin_file ? options.stdin_file->string() : "/dev/null";
  if (options.stdin_pipe)
    posix_spawn_file_actions_adddup2(&fa, in_r, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, paths.stdin_path.c_str(), O_RDONLY, 0);
  if (options.all_output_file) {
    paths.stdout_path = options.all_output_file->string();
    posix_spawn_file_actions_addopen(&fa, 1, paths.stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  } else {
    if (options.stdout_file) {
      paths.stdout_path = options.stdout_file->string();
      posix_spawn_file_actions_addopen(&fa, 1, paths.stdout_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    } else {
      posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    }
    posix_spawn_file_actions_adddup2(&fa, err_w, 2);
  }
  paths.cwd = options.cwd.string();
  if (!paths.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, paths.cwd.c_str());
}

/// Own process group (a timeout kills the whole tree), default signal dispositions, empty mask.
void set_process_attributes(posix_spawnattr_t& attr) {
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
}

/// argv/envp for posix_spawn: pointers into `v` (which must outlive them), then a null.
std::vector<char*> null_terminated(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& x : v)
    out.push_back(const_cast<char*>(x.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<std::unique_ptr<Subprocess>> Subprocess::spawn(const std::vector<std::string>& argv,
                                                      const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty()) return Error{Errc::invalid_argument, "spawn: empty argv"};

  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  PipeCloser closer{{&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}};
  const bool capture_out = !options.stdout_file && !options.all_output_file;
  const bool capture_err = !options.all_output_file;
  if (capture_out && ::pipe2(out_pipe, O_CLOEXEC) != 0)
    return Error{Errc::io_error, "spawn " + argv[0] + ": pipe: " + errno_text(errno)};
  if (capture_err && ::pipe2(err_pipe, O_CLOEXEC) != 0)
    return Error{Errc::io_error, "spawn " + argv[0] + ": pipe: " + errno_text(errno)};

  int in_sock[2] = {-1, -1};
  if (options.stdin_pipe && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sock) != 0)
    return Error{Errc::io_error, "spawn " + argv[0] + ": socketpair: " + errno_text(errno)};
  struct SockCloser {
    int* fds;
    bool armed = true;
    ~SockCloser() {
      if (armed)
        for (int i = 0; i < 2; ++i)
          if (fds[i] >= 0) ::close(fds[i]);
    }
  } sock_closer{in_sock};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  SpawnPaths paths;
  add_file_actions(fa, options, out_pipe[1], err_pipe[1], in_sock[1], paths);
  set_process_attributes(attr);
  std::vector<char*> args = null_terminated(argv);
  std::vector<std::string> env_strings = merged_environment(options.env);
  std::vector<char*> envp = null_terminated(env_strings);

  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    Errc code = (rc == ENOENT || rc == EACCES || rc == ENOEXEC) ? Errc::not_found : Errc::io_error;
    return Error{code, "spawn " + argv[0] + ": " + errno_text(rc)};
  }

  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->max_capture_ = options.max_capture_bytes;
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  if (err_pipe[1] >= 0) ::close(err_pipe[1]);
  out_pipe[1] = err_pipe[1] = -1;
  if (in_sock[1] >= 0) ::close(in_sock[1]);
  p->in_fd_ = in_sock[0];
  sock_closer.armed = false;
  p->out_fd_ = out_pipe[0];
  p->err_fd_ = err_pipe[0];
  closer.armed = false;
  if (p->out_fd_ >= 0 || p->err_fd_ >= 0)
    p->reader_ = std::thread([raw = p.get()] { raw->reader_loop(); });
  else
    p->reader_done_ = true;
  return p;
}

void Subprocess::reader_loop() {
  char buf[16384];
  int fds[2] = {out_fd_, err_fd_};
  std::string* dst[2] = {&out_, &err_};
  while (!stop_.load()) {
    pollfd pfd[2];
    nfds_t n = 0;
    int which[2];
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0) continue;
      pfd[n] = pollfd{fds[i], POLLIN, 0};
      which[n] = i;
      ++n;
    }
    if (n == 0) break;
    int r = ::poll(pfd, n, 20);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    for (nfds_t k = 0; k < n; ++k) {
      if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int i = which[k];
      ssize_t got = ::read(fds[i], buf, sizeof buf);
      if (got > 0) {
        std::lock_guard lock(mu_);
        std::size_t keep = 0;
        if (dst[i]->size() < max_capture_)
          keep = std::min(static_cast<std::size_t>(got), max_capture_ - dst[i]->size());
        dst[i]->append(buf, keep);
        dropped_ += static_cast<std::size_t>(got) - keep;
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        fds[i] = -1;  // EOF: closed in stop_reader
      }
    }
  }
  reader_done_ = true;
}

void Subprocess::stop_reader(std::chrono::milliseconds linger) {
  auto until = Clock::now() + linger;
  while (!reader_done_.load() && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
  out_fd_ = err_fd_ = -1;
}

bool Subprocess::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(st);
    return false;
  }
  return true;
}

Result<ExitStatus> Subprocess::wait(std::chrono::milliseconds timeout,
                                    std::chrono::milliseconds linger) {
  const auto until = Clock::now() + timeout;
  auto nap = std::chrono::microseconds(200);
  while (running()) {
    if (Clock::now() >= until)
      return Error{Errc::timeout, "process " + std::to_string(pid_) + " still running after " +
                                      std::to_string(timeout.count()) + " ms"};
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::milliseconds(5)) nap *= 2;
  }
  if (reader_.joinable() || out_fd_ >= 0 || err_fd_ >= 0) stop_reader(linger);
  return *status_;
}

void Subprocess::signal_group(int sig) {
  if (status_ || pid_ <= 0) return;
  ::kill(-pid_, sig);
  ::kill(pid_, sig);
}

ExitStatus Subprocess::terminate(std::chrono::milliseconds grace) {
  signal_group(SIGTERM);
  auto st = wait(grace);
  if (st.ok()) return st.value();
  signal_group(SIGKILL);
  auto killed = wait(std::chrono::seconds(30));
  return killed.ok() ? killed.value() : ExitStatus{};
}

Subprocess::~Subprocess() {
  if (!status_ && pid_ > 0) {
    signal_group(SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = decode_status(st);
  }
  stop_reader(std::chrono::milliseconds(0));
  if (in_fd_ >= 0) ::close(in_fd_);
}

Result<void> Subprocess::write_stdin(std::string_view data) {
  if (in_fd_ < 0) return Error{Errc::io_error, "process " + std::to_string(pid_) + ": no stdin"};
  while (!data.empty()) {
    ssize_t n = ::send(in_fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Error{Errc::io_error,
                   "process " + std::to_string(pid_) + ": write to stdin: " + errno_text(errno)};
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

std::string Subprocess::stdout_from(std::size_t pos) const {
  std::lock_guard lock(mu_);
  return pos < out_.size() ? out_.substr(pos) : std::string();
}

std::size_t Subprocess::stdout_size() const {
  std::lock_guard lock(mu_);
  return out_.size();
}

std::string Subprocess::stdout_text() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string Subprocess::stderr_text() const {
  std::lock_guard lock(mu_);
  return err_;
}

std::size_t Subprocess::dropped_bytes() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

Result<RunOutput> run_process(const std::vector<std::string>& argv,
                              std::chrono::milliseconds timeout, const SpawnOptions& options) {
  auto p = Subprocess::spawn(argv, options);
  if (!p) return p.error();
  RunOutput r;
  auto st = p.value()->wait(timeout);
  if (!st) {
    p.value()->signal_group(SIGKILL);
    auto killed = p.value()->wait(std::chrono::seconds(30), std::chrono::milliseconds(0));
    (void)killed;
    r.timed_out = true;
  } else {
    r.exit_code = st.value().exit_code;
  }
  r.out = p.value()->stdout_text();
  r.err = p.value()->stderr_text();
  return r;
}

}  // namespace meltrig::targets
