// Helpers for tests that run the real meltrig binary and Debian's python3-h5py.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace meltrig::test {

/// A fresh empty directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    auto base = std::filesystem::temp_directory_path() / "meltrig-test-XXXXXX";
    std::string s = base.string();
    path_ = ::mkdtemp(s.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A child process with stdout and stderr sent to files.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::filesystem::path& out_dir,
          const std::string& tag)
      : out_(out_dir / (tag + ".out")), err_(out_dir / (tag + ".err")) {
    std::fflush(nullptr);  // or the child would write the parent's buffered output again
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* o = std::freopen(out_.c_str(), "w", stdout);
      FILE* e = std::freopen(err_.c_str(), "w", stderr);
      (void)o;
      (void)e;
      std::vector<char*> args;
      for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  void signal(int sig) { ::kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  /// Waits up to `timeout`; returns the exit code, 128+signal, or -1 on timeout (then kills it).
  int wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!exited_) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        exited_ = true;
        code_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return code_;
  }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  std::filesystem::path out_, err_;
};

/// Runs a Python script with Debian's python3 (which has h5py); returns its exit code and output.
inline int run_python(const std::string& script, const std::vector<std::string>& args,
                      const std::filesystem::path& dir, std::string* output) {
  auto py = dir / "check.py";
  std::ofstream(py) << script;
  std::vector<std::string> argv = {"/usr/bin/python3", py.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir, "python");
  int rc = p.wait();
  if (output) *output = p.out() + p.err();
  return rc;
}

inline const char* cli() {
  return MELTRIG_CLI_PATH;
}

/// Waits until `p` exists (an emulator's link), up to `timeout`.
inline bool wait_for_path(const std::filesystem::path& p,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (std::filesystem::exists(p)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace meltrig::test
