// The doctest runner for all of meltrig's tests. Long tests sit in the test suite "slow" (the
// starved-host runs, long captures); a sanitizer build leaves them out, as does
// MELTRIG_SKIP_SLOW=1 in the environment, so the sanitizer pass (scripts/sanitize.sh) stays short.
//
// ctest runs one test case per process, by name (--test-case=NAME). A name that no test case
// matches (a CMake list separator ';' in a TEST_CASE name splits it into two ctest entries, each
// matching nothing) would otherwise pass without running anything: with a name filter given and
// nothing run, the runner fails, unless the slow suite was left out on purpose.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

std::atomic<int> g_started{0};

/// Counts the test cases that ran; reports nothing.
struct RunCounter : doctest::IReporter {
  explicit RunCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++g_started; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("meltrig_run_counter", 1, RunCounter);

bool has_name_filter(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a.starts_with("--test-case=") || a.starts_with("-tc=")) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context;
#ifdef MELTRIG_SANITIZED
  const bool skip_slow = true;
#else
  const char* env = std::getenv("MELTRIG_SKIP_SLOW");
  const bool skip_slow = env != nullptr && std::strcmp(env, "0") != 0;
#endif
  if (skip_slow) context.addFilter("test-suite-exclude", "slow");
  context.applyCommandLine(argc, argv);
  const int rc = context.run();
  if (rc == 0 && g_started == 0 && has_name_filter(argc, argv) && !skip_slow &&
      !context.shouldExit()) {
    std::fprintf(stderr, "meltrig_tests: no test case matches the name filter\n");
    return 3;
  }
  return rc;
}
