// libFuzzer target for the text parsers of runner data: the marker format v1 parser and MELT's
// importers (llama.cpp events and printed timings, MLC CSV, Monsoon CSV, .t_monsoon). Arbitrary
// text must never crash them; and every event the v1 parser accepts must survive formatting and
// parsing again unchanged (the formatter and parser agree on every value the parser can produce).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/melt_import.hpp"

namespace mt = meltrig::targets;
namespace melt = meltrig::targets::melt;

#define FUZZ_ASSERT(c)      \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

namespace {

bool same(const mt::MarkerEvent& a, const mt::MarkerEvent& b) {
  const bool value_same = (std::isnan(a.value) && std::isnan(b.value)) || a.value == b.value;
  return a.t_ns == b.t_ns && a.kind == b.kind && a.index == b.index && a.code == b.code &&
         a.bits == b.bits && a.chip_ns == b.chip_ns && value_same && a.label == b.label &&
         a.text == b.text;
}

void check_markers(std::string_view text) {
  auto log = mt::parse_markers(text, "fuzz");
  if (!log) return;
  // Re-emit what was accepted and read it back.
  std::string again = mt::MarkerFormatter::header(log->header, log->clock);
  for (const auto& e : log->events)
    again += mt::MarkerFormatter::event(e);
  auto back = mt::parse_markers(again, "again");
  FUZZ_ASSERT(back.ok());
  FUZZ_ASSERT(back->events.size() == log->events.size());
  for (std::size_t i = 0; i < log->events.size(); ++i)
    FUZZ_ASSERT(same(back->events[i], log->events[i]));
  for (const auto& c : log->clocks)
    FUZZ_ASSERT(c.line >= 1);
}

void check_melt(std::string_view text) {
  auto timings = melt::parse_llama_timings(text, "fuzz.log");
  const melt::LlamaTimings* t = timings.blocks.empty() ? nullptr : &timings.blocks.front();
  auto events = melt::parse_llamacpp_events(text, "fuzz.tsv", t);
  for (std::size_t i = 1; i < events.events.size(); ++i)  // importers sort by time
    FUZZ_ASSERT(events.events[i - 1].t_ns <= events.events[i].t_ns);
  (void)melt::parse_mlc_csv(text, "fuzz.csv");
  melt::PowerTrace trace;
  melt::parse_monsoon_csv(text, "measurements_monsoon.csv", trace);
  FUZZ_ASSERT(trace.current_a.size() == trace.voltage_v.size());
  FUZZ_ASSERT(trace.current_a.size() == trace.host_t_rel_s.size());
  (void)melt::parse_t_monsoon(text, ".t_monsoon");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_markers(text);
  // With a valid header in front, the fuzzer explores event lines rather than header failures.
  check_markers("meltrig-markers 1 clock=monotonic\n" + std::string(text));
  check_melt(text);
  return 0;
}
