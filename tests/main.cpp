// The doctest runner for all of meltrig's tests. Long tests sit in the test suite "slow" (the
// starved-host runs, long captures); a sanitizer build leaves them out, as does
// MELTRIG_SKIP_SLOW=1 in the environment, so CI's second (ASan + UBSan) pass stays within its time.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>

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
  return context.run();
}
