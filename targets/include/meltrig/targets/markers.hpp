// Runner markers: the internal model every marker source lands in (the v1 marker file written by
// the C SDK or the simulated runner, and MELT's importers), the v1 parser, and a C++ writer.
// The format itself is specified in docs/markers.md.
//
// Marker format v1 in brief (docs/markers.md is normative):
//   meltrig-markers 1 clock=monotonic [key=value ...]      first line
//   <t_ns> <event> [key=value ...]                         one event per line, '\n'-terminated
//   # comment                                              ignored
// t_ns is a decimal int64 on the clock named in the header (device CLOCK_MONOTONIC by default).
// Events: clock (boot= real=), run.start (id=), run.end (status=), load.start (model=), load.end,
// prefill.start (tokens=), prefill.end (tokens=), token (index=), sync.start (code= bits=
// chip_ns=), sync.end (code=), user (name= [value=] [text=]). String values are percent-encoded
// (every byte
// <= 0x20, '%', '=' and >= 0x7F as %XX). A last line without '\n' is an incomplete write (crash)
// and is reported (incomplete_tail and one issue), not parsed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::targets {

/// Event kinds. Stored in datasets by name (kind_name), never by number.
enum class MarkerKind : std::uint8_t {
  run_start,
  run_end,
  load_start,
  load_end,
  prefill_start,
  prefill_end,
  token,
  sync_start,
  sync_end,
  user,
};

/// The format version this parser reads and the formatter writes (header "meltrig-markers 1").
inline constexpr int kMarkerFormatVersion = 1;
/// The longest line (including '\n') a v1 writer may produce; the C SDK refuses longer lines.
inline constexpr std::size_t kMarkerMaxLine = 4096;

/// "run.start", "token", ... (the v1 event names).
std::string_view kind_name(MarkerKind k);
/// The kind called `name`, or nullopt for a name v1 does not define ("clock" is not an event).
std::optional<MarkerKind> kind_from_name(std::string_view name);

/// One event. Fields not used by a kind keep their defaults.
struct MarkerEvent {
  std::int64_t t_ns = 0;  ///< on the log's clock (MarkerLog::clock)
  MarkerKind kind = MarkerKind::user;
  /// token: token index (0-based); prefill.start/end: prompt token count; else -1.
  std::int64_t index = -1;
  /// sync.start / sync.end: the code; sync.start also bits and chip_ns.
  std::uint64_t code = 0;
  std::uint32_t bits = 0;
  std::int64_t chip_ns = 0;
  /// user: value= (NaN if absent).
  double value = std::numeric_limits<double>::quiet_NaN();
  /// run.start: id; run.end: status; load.start: model; user: name.
  std::string label;
  /// user: text= (decoded).
  std::string text;
  /// 1-based line in the source file (0 if not from a file).
  std::uint64_t line = 0;
  /// Keys v1 does not define for the kind (a newer or specialised writer's, e.g. meltrig_stamp's
  /// bytes= and blank= on token), in line order, values as written (still percent-encoded).
  /// The formatter writes them back after the defined keys.
  std::vector<std::pair<std::string, std::string>> extra;

  /// The value of extra key `key`, or nullopt.
  std::optional<std::string_view> extra_value(std::string_view key) const {
    for (const auto& [k, v] : extra)
      if (k == key) return std::string_view(v);
    return std::nullopt;
  }
};

/// A clock triple read on the device at one instant: the three clocks' values in ns.
struct ClockTriple {
  std::int64_t mono_ns = 0;
  std::int64_t boot_ns = 0;
  std::int64_t real_ns = 0;
  std::uint64_t line = 0;
};

/// A problem found while reading a marker or MELT file: "<file>:<line>: <message>".
struct MarkerIssue {
  std::string file;
  std::uint64_t line = 0;
  std::string message;
  std::string describe() const;
};

/// Everything read from one marker source.
struct MarkerLog {
  std::string source;                                       ///< file name, for messages
  std::string clock = "monotonic";                          ///< clock of every t_ns
  std::vector<std::pair<std::string, std::string>> header;  ///< header key=value, in order
  std::vector<MarkerEvent> events;                          ///< in file order
  std::vector<ClockTriple> clocks;                          ///< in file order
  std::vector<MarkerIssue> issues;                          ///< malformed lines, skipped
  bool incomplete_tail = false;                             ///< last line had no '\n' (dropped)
};

/// A clock discontinuity between two consecutive clock triples (docs/markers.md, "Clock triples").
struct ClockStep {
  std::uint64_t line = 0;             ///< line of the later triple
  std::int64_t mono_ns = 0;           ///< monotonic time of the later triple
  std::int64_t suspend_ns = 0;        ///< growth of boottime - monotonic: time spent suspended
  std::int64_t realtime_step_ns = 0;  ///< change of realtime - boottime: wall-clock step (+/-)
};

/// The steps between consecutive triples where the device suspended (suspend_ns > threshold) or
/// its wall clock was set (|realtime_step_ns| > threshold). Both fields are filled for every step.
std::vector<ClockStep> clock_steps(const std::vector<ClockTriple>& clocks,
                                   std::int64_t threshold_ns = 1'000'000);

/// Parses v1 text. Never throws. Fails (parse_error "<name>:1: ...") only when the header is
/// missing, malformed (no clock=, bad key=value, no '\n') or names another version; every other
/// malformed line is skipped and listed in issues with its line. Unknown keys are ignored.
Result<MarkerLog> parse_markers(std::string_view text, std::string_view name);
/// Reads and parses a file (not_found / io_error naming the path).
Result<MarkerLog> read_marker_file(const std::filesystem::path& path);

/// Percent-encoding of string values (see above) and its inverse (parse_error on a bad %XX or a
/// raw byte that should have been encoded).
std::string encode_value(std::string_view raw);
Result<std::string> decode_value(std::string_view encoded);

/// Formats v1 lines. Each call returns one complete line including '\n'; callers write and flush
/// it at once (the SDK does the same in C).
struct MarkerFormatter {
  static std::string header(const std::vector<std::pair<std::string, std::string>>& kv,
                            std::string_view clock = "monotonic");
  static std::string event(const MarkerEvent& e);
  static std::string clock(const ClockTriple& c);
};

}  // namespace meltrig::targets
