// Target specs: one string names a device under test and how to reach it, for the command line
// (`meltrig run --target SPEC`) and plans. Forms (options are comma-separated key=value pairs; a
// value cannot hold ',' ):
//   local[:root=DIR,sysfs=DIR,probe=PATH,battery_unit=auto|uA|mA,timeout_ms=N]
//   ssh:[USER@]HOST[:port=N,key=PATH,known_hosts=PATH,strict=yes|accept-new|no,probe=PATH,
//       device_probe=PATH,work_dir=DIR,sysfs=DIR,connect_timeout=S,ssh=PROGRAM,
//       control_master=yes|no,persistent_probe=yes|no,battery_unit=...,timeout_ms=N]
//   adb[:serial=S,adb=PATH,probe=PATH,device_probe=PATH,work_dir=DIR,sysfs=DIR,
//       persistent_probe=yes|no,battery_unit=...,timeout_ms=N]
// `probe` is a host build of meltrig_probe (local: run in place; ssh/adb: pushed by prepare()),
// `device_probe` a probe already on the device. docs/targets.md has the table.
#pragma once

#include <memory>
#include <string_view>

#include "meltrig/fw/result.hpp"
#include "meltrig/targets/adb_target.hpp"
#include "meltrig/targets/local_target.hpp"
#include "meltrig/targets/ssh_target.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

/// Parses a local spec into its config. invalid_argument naming the spec and the bad key/value.
Result<LocalConfig> parse_local_spec(std::string_view spec);
/// Parses an ssh spec into its config (defaults of SshConfig for what it does not say).
Result<SshConfig> parse_ssh_spec(std::string_view spec);
/// Parses an adb spec into its config.
Result<AdbConfig> parse_adb_spec(std::string_view spec);

/// Builds the target a spec names (not prepared). invalid_argument naming the spec on an unknown
/// kind, an unknown key, a malformed value, or a missing host.
Result<std::unique_ptr<Target>> make_target(std::string_view spec);

}  // namespace meltrig::targets
