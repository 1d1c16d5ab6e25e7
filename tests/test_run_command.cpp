// meltrig run and target specs: the CLI captures a monitor while the example runner runs on a
// target (a real sshd on 127.0.0.1, or this machine), and the runner's markers, the telemetry and
// the clock probes land in the capture file (checked with h5py).
#include <doctest/doctest.h>

#include <fstream>

#include "meltrig/targets/target_spec.hpp"
#include "ssh_fixture.hpp"
#include "test_support.hpp"

namespace mt = meltrig::targets;
using meltrig::Errc;
using meltrig::test::Process;
using meltrig::test::TempDir;
using meltrig::test_ssh::Sshd;

namespace meltrig::test_targets {
void make_fake_sysfs(const std::filesystem::path& root);
}  // namespace meltrig::test_targets

namespace {

struct CliResult {
  int rc = -1;
  std::string out, err;
};

CliResult run_cli(const std::vector<std::string>& args, const std::filesystem::path& dir,
                  const std::string& tag = "run") {
  std::vector<std::string> argv = {meltrig::test::cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir, tag);
  CliResult r;
  r.rc = p.wait();
  r.out = p.out();
  r.err = p.err();
  return r;
}

/// h5py check of a run file: prints "ok" or what failed. argv: FILE TOKENS EXIT_CODE TELEMETRY
/// (TELEMETRY 1: the fake sysfs series must be there).
const char* kCheckRun = R"PY(
import sys, h5py, numpy as np
path, tokens, exit_code, telemetry = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
f = h5py.File(path, "r")
bad = []
def check(cond, what):
    if not cond: bad.append(what)
state = int(f["capture_state/state"][()])
check(state == 1, "capture_state/state %r (1 = complete)" % state)
n = int(f["capture_state/samples_written"][()])
check(n > 0, "no samples")
ev = f["markers/runner/events"][:]
kinds = [k.decode() if isinstance(k, bytes) else k for k in ev["kind"]]
tok = [int(i) for k, i in zip(kinds, ev["index"]) if k == "token"]
check(tok == list(range(tokens)), "token indices %r" % tok)
t = f["target"]
check(int(t.attrs["exit_code"]) == exit_code, "exit_code %r" % t.attrs["exit_code"])
check(int(t.attrs["timed_out"]) == 0, "timed_out")
p = t["probes"]
t0 = p["host_t0_ns"][:]; t3 = p["host_t3_ns"][:]; mono = p["device_mono_ns"][:]
check(p["host_t0_ns"].dtype == np.int64, "probe dtype %r" % p["host_t0_ns"].dtype)
check(len(t0) >= 2 and len(t0) == len(t3) == len(mono) == len(p["device_boot_ns"]) == len(p["device_real_ns"]), "probe lengths")
check(bool(np.all(t3 - t0 > 0)), "rtt not > 0")
check(bool(np.all(mono > 0)), "device_mono_ns not > 0")
# the run's token markers lie between the first and last probe on the device clock
tt = [int(x) for k, x in zip(kinds, ev["t_ns"]) if k == "token"]
check(len(tt) == 0 or (mono[0] < tt[0] and tt[-1] < mono[-1]), "tokens outside the probes")
if telemetry:
    check("telemetry" in f, "no /telemetry")
    if "telemetry" in f:
        z = f["telemetry/thermal/zone0/cpu-thermal"]
        check(len(z) >= 1 and abs(z["value"][0] - 45.5) < 1e-9, "cpu-thermal %r" % z[:])
        check(z.attrs["unit"] in ("degC", b"degC"), "unit")
print("ok" if not bad else "FAILED: " + "; ".join(bad))
)PY";

std::string check_run(const std::filesystem::path& file, int tokens, int exit_code, bool telemetry,
                      const std::filesystem::path& dir) {
  std::string out;
  int rc = meltrig::test::run_python(
      kCheckRun,
      {file.string(), std::to_string(tokens), std::to_string(exit_code), telemetry ? "1" : "0"},
      dir, &out);
  if (rc != 0) return "python exit " + std::to_string(rc) + ": " + out;
  return out;
}

std::string arg_in(const std::string& key, const std::string& value) {
  return key + "=" + value;
}

}  // namespace

TEST_CASE("target spec: local, ssh and adb specs parse into their configs") {
  auto l = mt::parse_local_spec("local:root=/tmp/r,sysfs=/tmp/s,probe=/bin/p,timeout_ms=500");
  REQUIRE(l.ok());
  CHECK(l.value().root == "/tmp/r");
  CHECK(l.value().sysfs_root == "/tmp/s");
  CHECK(l.value().probe_path == "/bin/p");
  CHECK(l.value().call_timeout.count() == 500);
  REQUIRE(mt::parse_local_spec("local").ok());
  CHECK(mt::parse_local_spec("local").value().sysfs_root == "/sys");

  auto s = mt::parse_ssh_spec(
      "ssh:pi@10.0.0.7:port=2222,key=/k/id,known_hosts=/k/kh,strict=accept-new,probe=/b/p,"
      "work_dir=/w d,sysfs=/fake");
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  CHECK(s.value().user == "pi");
  CHECK(s.value().host == "10.0.0.7");
  CHECK(s.value().port == 2222);
  CHECK(s.value().identity_file == "/k/id");
  CHECK(s.value().known_hosts_file == "/k/kh");
  CHECK(s.value().strict_host_key_checking == "accept-new");
  CHECK(s.value().local_probe == "/b/p");
  CHECK(s.value().work_dir == "/w d");
  CHECK(s.value().remote.sysfs_root == "/fake");
  auto s2 = mt::parse_ssh_spec("ssh:host.local");
  REQUIRE(s2.ok());
  CHECK(s2.value().user.empty());
  CHECK(s2.value().port == 22);
  CHECK(s2.value().strict_host_key_checking == "yes");

  auto a = mt::parse_adb_spec("adb:serial=R58M,adb=/opt/adb,device_probe=/data/p");
  REQUIRE(a.ok());
  CHECK(a.value().serial == "R58M");
  CHECK(a.value().adb == std::vector<std::string>{"/opt/adb"});
  CHECK(a.value().remote.probe_path == "/data/p");
  CHECK(mt::parse_adb_spec("adb").value().work_dir == "/data/local/tmp/meltrig");

  auto t = mt::make_target("ssh:root@127.0.0.1:port=2200");
  REQUIRE(t.ok());
  CHECK(t.value()->name() == "ssh:root@127.0.0.1:2200");
  CHECK(mt::make_target("local").value()->name() == "local");
}

TEST_CASE("target spec: bad specs are invalid_argument naming the spec and the key") {
  struct Bad {
    const char* spec;
    const char* names;
  };
  for (const Bad& b :
       {Bad{"local:colour=red", "colour"}, Bad{"ssh:", "missing host"},
        Bad{"ssh:h:port=0", "port=0"}, Bad{"ssh:h:port=22x", "port=22x"},
        Bad{"ssh:h:strict=maybe", "strict=maybe"}, Bad{"ssh:-oProxy=x", "'-'"},
        Bad{"adb:serial", "'serial'"}, Bad{"adb:speed=9", "speed"}, Bad{"telnet:h", "unknown kind"},
        Bad{"localhost", "unknown kind"}, Bad{"ssh:h:key=", "key="}}) {
    CAPTURE(b.spec);
    auto r = mt::make_target(b.spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(std::string("'") + b.spec + "'") != std::string::npos);
    CHECK(r.error().message.find(b.names) != std::string::npos);
  }
}

TEST_CASE(
    "meltrig run: the ssh target runs the example runner through a real sshd and its "
    "markers arrive in the dataset") {
  std::filesystem::remove("/tmp/x");
  Sshd sshd;
  TempDir dir;
  meltrig::test_targets::make_fake_sysfs(dir / "sysfs");
  auto cfg = sshd.config();
  const std::string remote_dir = (dir / "remote").string();
  const std::string markers = remote_dir + "/m.txt";
  const std::string spec = "ssh:root@127.0.0.1:" + arg_in("port", std::to_string(sshd.port)) + "," +
                           arg_in("key", cfg.identity_file.string()) + "," +
                           arg_in("known_hosts", cfg.known_hosts_file.string()) + "," +
                           arg_in("probe", MELTRIG_PROBE_PATH) + "," +
                           arg_in("work_dir", remote_dir) + "," +
                           arg_in("sysfs", (dir / "sysfs").string());
  const auto out = dir / "run.h5";
  auto r = run_cli({"run",
                    "--monitor",
                    "synthetic:5000",
                    "--target",
                    spec,
                    "--markers",
                    markers,
                    "--telemetry-ms",
                    "100",
                    "--probes",
                    "4",
                    "--idle-before",
                    "0.3",
                    "--idle-after",
                    "0.3",
                    "--timeout",
                    "60",
                    "-o",
                    out.string(),
                    "--",
                    MELTRIG_TOY_RUNNER_PATH,
                    "--markers",
                    markers,
                    "--prompt",
                    "model; rm -rf ~ $(touch /tmp/x)",
                    "--tokens",
                    "16",
                    "--no-sync"},
                   dir.path());
  REQUIRE_MESSAGE(r.rc == 0, r.err << "\nsshd: " << sshd.sshd_log());
  CHECK(r.err.find("16 token markers") != std::string::npos);
  CHECK(check_run(out, 16, 0, true, dir.path()) == "ok\n");
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
}

TEST_CASE("meltrig run: local target, the runner argv reaches it literally and probes bracket it") {
  std::filesystem::remove("/tmp/x");
  TempDir dir;
  meltrig::test_targets::make_fake_sysfs(dir / "sysfs");
  const std::string markers = (dir / "m.txt").string();
  const auto out = dir / "run.h5";
  const std::string spec = "local:" + arg_in("root", (dir / "work").string()) + "," +
                           arg_in("sysfs", (dir / "sysfs").string()) + "," +
                           arg_in("probe", MELTRIG_PROBE_PATH);
  auto r = run_cli({"run",
                    "--monitor",
                    "synthetic:5000",
                    "--target",
                    spec,
                    "--markers",
                    markers,
                    "--telemetry-ms",
                    "100",
                    "--probes",
                    "3",
                    "--idle-before",
                    "0.2",
                    "--idle-after",
                    "0.2",
                    "-o",
                    out.string(),
                    "--",
                    MELTRIG_TOY_RUNNER_PATH,
                    "--markers",
                    markers,
                    "--prompt",
                    "$(touch /tmp/x)",
                    "--tokens",
                    "8",
                    "--no-sync"},
                   dir.path());
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  CHECK(check_run(out, 8, 0, true, dir.path()) == "ok\n");
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
  // The prompt is stored verbatim in the marker header the runner wrote.
  std::string py_out;
  int rc = meltrig::test::run_python(
      "import sys, h5py\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "a = f['target'].attrs['runner_argv']\n"
      "a = a.decode() if isinstance(a, bytes) else a\n"
      "print(\"'$(touch /tmp/x)'\" in a, int(f['target'].attrs['runner_argc']))\n",
      {out.string()}, dir.path(), &py_out);
  CHECK(rc == 0);
  CHECK(py_out == "True 8\n");  // toy runner + 7 arguments
}

TEST_CASE("meltrig run: a runner that exits non-zero is stored, exit 1, dataset kept") {
  TempDir dir;
  const std::string markers = (dir / "m.txt").string();
  const auto out = dir / "run.h5";
  // The runner writes its markers, then the wrapper exits 3.
  auto r = run_cli({"run",
                    "--monitor",
                    "synthetic:5000",
                    "--target",
                    "local",
                    "--markers",
                    markers,
                    "--probes",
                    "2",
                    "--idle-before",
                    "0",
                    "--idle-after",
                    "0",
                    "-o",
                    out.string(),
                    "--",
                    "/bin/sh",
                    "-c",
                    "\"$0\" \"$@\"; exit 3",
                    MELTRIG_TOY_RUNNER_PATH,
                    "--markers",
                    markers,
                    "--prompt",
                    "p",
                    "--tokens",
                    "5",
                    "--no-sync"},
                   dir.path());
  CHECK(r.rc == 1);
  CHECK(r.err.find("exited with code 3") != std::string::npos);
  CHECK(r.err.find("dataset kept") != std::string::npos);
  CHECK(check_run(out, 5, 3, false, dir.path()) == "ok\n");
}

TEST_CASE("meltrig run: a bad --target spec is a usage error naming the spec") {
  TempDir dir;
  auto r = run_cli({"run", "--monitor", "synthetic:5000", "--target", "ssh:h:colour=red",
                    "--markers", "/tmp/m", "-o", (dir / "x.h5").string(), "--", "/bin/true"},
                   dir.path());
  CHECK(r.rc == 2);
  CHECK(r.err.find("'ssh:h:colour=red'") != std::string::npos);
  CHECK(r.err.find("colour") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "x.h5"));
}

TEST_CASE("meltrig run: a missing marker file is a clear error and the capture stays readable") {
  TempDir dir;
  const std::string markers = (dir / "never written.txt").string();
  const auto out = dir / "run.h5";
  auto r = run_cli(
      {"run", "--monitor", "synthetic:5000", "--target", "local", "--markers", markers, "--probes",
       "2", "--idle-before", "0.1", "--idle-after", "0", "-o", out.string(), "--", "/bin/true"},
      dir.path());
  CHECK(r.rc == 1);
  CHECK(r.err.find("--markers " + markers) != std::string::npos);
  CHECK(r.err.find("kept in") != std::string::npos);
  std::string py_out;
  int rc = meltrig::test::run_python(
      "import sys, h5py\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "s = int(f['capture_state/state'][()])\n"
      "print(s, int(f['capture_state/samples_written'][()]) > 0, 'markers' in f, "
      "int(f['target'].attrs['exit_code']),"
      " len(f['target/probes/host_t0_ns']))\n",
      {out.string()}, dir.path(), &py_out);
  CHECK(rc == 0);
  CHECK(py_out == "1 True False 0 4\n");
}
