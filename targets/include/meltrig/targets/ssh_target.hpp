// SshTarget: a device reached with the OpenSSH client. Every call is an argv for `ssh`
// (BatchMode, host key policy, ConnectTimeout, port, identity) ending in `-- COMMAND_LINE`, where
// COMMAND_LINE is the device argv sh_join()ed, because sshd joins the words and runs them with the
// remote user's shell. One ControlMaster connection (started by prepare()) carries every later
// call, so a call costs a channel, not a handshake. Files move as `cat` over ssh (stdin/stdout of
// the local client), which needs no scp/sftp and no path quoting beyond sh_quote.
#pragma once

#include <filesystem>
#include <string>

#include "meltrig/targets/remote_shell_target.hpp"

namespace meltrig::targets {

/// Settings of an SshTarget.
struct SshConfig {
  std::string host = "127.0.0.1";
  int port = 22;
  std::string user;                     ///< empty: ssh's default
  std::filesystem::path identity_file;  ///< -i KEY (with IdentitiesOnly=yes); empty: ssh's default
  std::string strict_host_key_checking = "yes";  ///< yes | accept-new | no
  std::filesystem::path known_hosts_file;        ///< UserKnownHostsFile; empty: ssh's default
  int connect_timeout_s = 10;
  std::string ssh_program = "ssh";
  bool control_master = true;  ///< one multiplexed connection for every call
  std::string work_dir = "/tmp/meltrig";
  /// Host copy of meltrig_probe built for the device; prepare() pushes it to
  /// work_dir/meltrig_probe. Empty: set remote.probe_path to a probe already on the device.
  std::filesystem::path local_probe;
  RemoteSettings remote;  ///< probe_path, sysfs_root, call_timeout, battery unit (work_dir above)
};

class SshTarget final : public RemoteShellTarget {
 public:
  explicit SshTarget(SshConfig config);
  ~SshTarget() override;

  std::string name() const override;
  std::string describe() const override;
  Result<void> prepare() override;
  Result<void> push(const std::filesystem::path& local, const std::string& remote) override;
  Result<void> pull(const std::string& remote, const std::filesystem::path& local) override;
  Result<void> teardown() override;

  /// The ssh argv before `--` (options and destination), for logs and tests.
  std::vector<std::string> ssh_base_argv() const;

 protected:
  std::vector<std::string> transport_argv(const std::string& command_line) const override;

 private:
  std::string destination() const;
  SshConfig cfg_;
  std::filesystem::path control_dir_;  ///< holds the ControlMaster socket while connected
  bool master_up_ = false;
};

}  // namespace meltrig::targets
