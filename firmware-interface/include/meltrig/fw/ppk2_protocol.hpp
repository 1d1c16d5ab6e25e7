// Nordic Power Profiler Kit II (PPK2) serial protocol: command bytes, the ASCII metadata block,
// the 32-bit sample word, the current conversion, a streaming word decoder that follows the 6-bit
// sample counter, and an elapsed-time check for losses that wrap that counter. Pure code over
// bytes: no I/O and no clocks (arrival times are passed in). Host side (drivers) and device side
// (emulators) are both here. Facts come from Nordic's open-source host software for the PPK2.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/fw/wrap_inference.hpp"

namespace meltrig::fw::ppk2 {

/// USB identity of the PPK2 (Nordic Semiconductor VID, PPK2 PID).
inline constexpr int kUsbVid = 0x1915;
inline constexpr int kUsbPid = 0xC00A;
/// The PPK2 samples at a fixed 100 kS/s.
inline constexpr double kSampleRateHz = 100'000.0;
/// Number of measurement ranges (shunt resistors); range fields 5..7 are invalid.
inline constexpr std::size_t kRanges = 5;
/// Source-voltage limits of the regulator command, millivolts.
inline constexpr int kMinSourceMv = 800;
inline constexpr int kMaxSourceMv = 5000;
/// Volts per (4 x ADC count) before the shunt: 1.8 V reference over 163840 (the host software's
/// constant).
inline constexpr double kAdcMult = 1.8 / 163840.0;
/// Largest ADC value (14 bits).
inline constexpr std::uint16_t kAdcMax = 0x3FFF;

// ---------------------------------------------------------------------------------------------
// Commands (host -> device). Every command is an opcode byte plus a fixed number of arguments.

/// Command opcodes.
enum class Op : std::uint8_t {
  average_start = 0x06,   ///< start streaming samples
  average_stop = 0x07,    ///< stop streaming
  dut_power = 0x0C,       ///< 1 argument: 0 off, 1 on
  regulator_set = 0x0D,   ///< 2 arguments: source voltage, mV, big-endian
  set_power_mode = 0x11,  ///< 1 argument: PowerMode
  get_metadata = 0x19,    ///< the device answers with the ASCII metadata block
  reset = 0x20,           ///< reboot the device
};

/// The two measurement modes: ampere meter (external supply) or source meter (PPK2 supplies).
enum class PowerMode : std::uint8_t { ampere = 1, source = 2 };

/// `19`: ask for the metadata block.
std::vector<std::uint8_t> cmd_get_metadata();
/// `0D hi lo`: source voltage in mV, big-endian; invalid_argument outside 800..5000 mV.
Result<std::vector<std::uint8_t>> cmd_set_source_voltage_mv(int millivolts);
/// Same, from volts (rounded to the nearest mV).
Result<std::vector<std::uint8_t>> cmd_set_source_voltage(double volts);
/// `11 m`: 1 = ampere mode, 2 = source mode.
std::vector<std::uint8_t> cmd_set_power_mode(PowerMode mode);
/// `0C 0|1`: DUT power off / on.
std::vector<std::uint8_t> cmd_set_dut_power(bool on);
/// `06`: start streaming.
std::vector<std::uint8_t> cmd_start();
/// `07`: stop streaming.
std::vector<std::uint8_t> cmd_stop();
/// `20`: reset.
std::vector<std::uint8_t> cmd_reset();

/// A command as the device sees it (device side, for emulators).
struct Command {
  /// Which command.
  enum class Kind {
    get_metadata,
    set_source_voltage,  ///< value = millivolts (800..5000)
    set_power_mode,      ///< value = 1 (ampere) or 2 (source)
    set_dut_power,       ///< value = 0 or 1
    start,
    stop,
    reset,
  } kind;
  std::uint16_t value = 0;
};

/// Counters of the device-side command parser; every byte not in a command is counted.
struct CommandCounters {
  std::uint64_t commands = 0;
  std::uint64_t unknown_opcodes = 0;    ///< bytes that are no opcode (each discarded)
  std::uint64_t invalid_arguments = 0;  ///< opcodes whose argument was out of range (discarded)
  std::uint64_t discarded_bytes = 0;    ///< = unknown_opcodes + invalid_arguments
};

/// Splits the host's byte stream into commands (device side). Commands may arrive split across
/// reads. An unknown byte, or an opcode whose argument is out of range (mode not 1|2, DUT power
/// not 0|1, voltage outside 800..5000 mV), is dropped on its own and parsing resumes at the next
/// byte, so a command hidden behind garbage is still found. Holds at most 2 pending bytes.
class CommandParser {
 public:
  /// Calls `on_command(const Command&)` for each complete command in `bytes`.
  template <typename OnCommand>
  void feed(std::span<const std::uint8_t> bytes, OnCommand&& on_command);
  const CommandCounters& counters() const { return counters_; }
  /// Bytes buffered waiting for the rest of a command.
  std::size_t pending() const { return len_; }

 private:
  std::array<std::uint8_t, 3> buf_{};
  std::size_t len_ = 0;
  CommandCounters counters_;
};

/// Bytes a command with opcode `op` occupies (opcode included), or 0 for an unknown opcode.
std::size_t command_length(std::uint8_t op);
/// Decodes one complete command (`bytes.size() == command_length(bytes[0])`); protocol_error
/// naming the opcode for unknown opcodes and out-of-range arguments.
Result<Command> parse_command(std::span<const std::uint8_t> bytes);

// ---------------------------------------------------------------------------------------------
// Metadata: ASCII "key: value" lines, the last one "END".

/// Calibration and identity from the metadata block. Defaults are the documented shunt values
/// and neutral gains (x passes through unchanged), used for keys the device did not send.
struct Metadata {
  std::array<double, kRanges> r{1031.64, 101.65, 10.15, 0.94, 0.043};  ///< shunts, ohm
  std::array<double, kRanges> gs{0, 0, 0, 0, 0};                       ///< quadratic gain, 1/A
  std::array<double, kRanges> gi{1, 1, 1, 1, 1};                       ///< linear gain
  std::array<double, kRanges> o{0, 0, 0, 0, 0};                        ///< offset, 4x ADC counts
  std::array<double, kRanges> s{0, 0, 0, 0, 0};   ///< source-voltage leakage, A/V
  std::array<double, kRanges> i{0, 0, 0, 0, 0};   ///< current offset, A
  std::array<double, kRanges> ug{1, 1, 1, 1, 1};  ///< user gain
  std::optional<std::int64_t> hw;                 ///< hardware id ("HW")
  std::optional<std::int64_t> ia;                 ///< "IA"
  bool calibrated = false;                        ///< "Calibrated" (0/1)
  /// Keys the device did not send, in the order of the documented key list; their defaults
  /// were used. Empty when the block was complete.
  std::vector<std::string> missing_keys;
  /// Keys outside the documented list (e.g. a firmware's "VDD" or "mode"), raw values.
  std::vector<std::pair<std::string, std::string>> extra;

  /// True when any documented key was missing and its default used.
  bool defaults_used() const { return !missing_keys.empty(); }
  /// An extra key's value as a number, if present and numeric.
  std::optional<double> extra_number(std::string_view key) const;
};

/// The documented keys, in the order metadata blocks list them.
std::span<const std::string_view> metadata_keys();

/// Parses a metadata block: lines "key: value" (CR LF or LF, blank lines ignored) up to a line
/// "END"; anything after END is ignored. Documented keys need numeric values (R > 0, Calibrated
/// 0 or 1, HW and IA integers); other keys are kept in `extra`. parse_error with the 1-based line
/// number for a line without ':', an empty key, a bad number, a repeated key, or no END line.
Result<Metadata> parse_metadata(std::string_view text);

/// Formats a metadata block as the device sends it (emulators). Keys in `omit` are left out;
/// `extra` lines are written before END.
std::string format_metadata(const Metadata& m, std::span<const std::string> omit = {},
                            std::span<const std::pair<std::string, std::string>> extra = {});

/// Collects the metadata answer from a byte stream: text up to and including the "END" line.
/// Bytes that cannot be metadata text (not printable ASCII, TAB, CR or LF) discard what was
/// collected so far, so sample words still in flight before the answer do not corrupt it.
/// Bounded: more than kMaxBytes of text without END is an overflow.
class MetadataCollector {
 public:
  static constexpr std::size_t kMaxBytes = 8192;
  /// Takes bytes; returns how many were used (fewer than given once END was seen).
  std::size_t feed(std::span<const std::uint8_t> bytes);
  /// True once the END line arrived.
  bool complete() const { return complete_; }
  /// True when kMaxBytes arrived without END (the collector then stops taking bytes).
  bool overflowed() const { return overflowed_; }
  /// The collected text (complete block once complete()).
  std::string_view text() const { return text_; }
  /// Bytes dropped because they could not be metadata text (or preceded such a byte).
  std::uint64_t discarded_bytes() const { return discarded_; }

 private:
  std::string text_;
  bool complete_ = false, overflowed_ = false;
  std::uint64_t discarded_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Sample words: u32 little-endian; ADC bits 0-13, range 14-16, counter 18-23, logic 24-31.

/// The fields of one sample word.
struct SampleWord {
  std::uint16_t adc = 0;     ///< 14-bit ADC value
  std::uint8_t range = 0;    ///< 0..4 valid (0 = 1031.64 ohm shunt, most sensitive)
  std::uint8_t counter = 0;  ///< 6-bit sample counter, +1 per sample, wraps at 64
  std::uint8_t logic = 0;    ///< digital inputs, bit n = Dn
};

inline constexpr std::uint32_t kAdcMask = 0x3FFF;
inline constexpr unsigned kRangeShift = 14, kCounterShift = 18, kLogicShift = 24;
inline constexpr std::uint32_t kCounterMask = 0x3F;
inline constexpr unsigned kCounterModulo = 64;

constexpr std::uint8_t word_range(std::uint32_t w) {
  return static_cast<std::uint8_t>((w >> kRangeShift) & 0x7);
}
constexpr std::uint8_t word_counter(std::uint32_t w) {
  return static_cast<std::uint8_t>((w >> kCounterShift) & kCounterMask);
}
constexpr std::uint8_t word_logic(std::uint32_t w) {
  return static_cast<std::uint8_t>(w >> kLogicShift);
}
constexpr std::uint16_t word_adc(std::uint32_t w) {
  return static_cast<std::uint16_t>(w & kAdcMask);
}
/// True for ranges 0..4.
constexpr bool range_valid(std::uint8_t range) {
  return range < kRanges;
}
/// Splits a word into its fields (bit 17 is unused and ignored).
constexpr SampleWord unpack_word(std::uint32_t w) {
  return {word_adc(w), word_range(w), word_counter(w), word_logic(w)};
}
/// Builds a word; fields are masked to their widths (bit 17 stays 0).
constexpr std::uint32_t pack_word(const SampleWord& s) {
  return (s.adc & kAdcMask) | (std::uint32_t{s.range & 0x7u} << kRangeShift) |
         (std::uint32_t{s.counter & kCounterMask} << kCounterShift) |
         (std::uint32_t{s.logic} << kLogicShift);
}
/// Reads a little-endian word.
inline std::uint32_t load_word(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}
/// Appends a word, little-endian.
void append_word(std::uint32_t w, std::vector<std::uint8_t>& out);

// ---------------------------------------------------------------------------------------------
// Conversion.

/// Current in amps of one ADC reading, literally as the host software computes it:
///   x = (adc*4 - O[r]) * (1.8/163840) / R[r]
///   I = UG[r] * (x*(GS[r]*x + GI[r]) + S[r]*V + I[r])
/// Units: adc*4 - O is in ADC counts, 1.8/163840 V per count, so (..)*mult is the shunt voltage
/// in volts and x = that / R is amps. The correction terms are in amps, so S must be A/V and V
/// the source voltage in volts (Nordic's app holds VDD in mV and divides by 1000 here). NaN for an
/// invalid range.
double current_amps(const Metadata& m, std::uint16_t adc, std::uint8_t range, double source_v);

/// The conversion folded into per-range coefficients for the hot path: with x = adc*a + b, the
/// formula above is I = x*(p*x + q) + c (p = UG*GS, q = UG*GI, c = UG*(S*V + I)), evaluated in
/// double and stored as float. Ranges 5..7 have NaN coefficients, so invalid words become NaN
/// without a branch.
class Converter {
 public:
  Converter() : Converter(Metadata{}, 0.0) {}
  Converter(const Metadata& m, double source_v);
  /// Current of one word, amps (NaN for an invalid range).
  float amps(std::uint32_t word) const {
    const Coeff& k = coeff_[word_range(word)];
    const double x = static_cast<double>(word & kAdcMask) * k.a + k.b;
    return static_cast<float>(x * (k.p * x + k.q) + k.c);
  }
  /// Converts `words` into `amps_out` and `logic_out` (each at least words.size() long).
  void convert(std::span<const std::uint32_t> words, float* amps_out,
               std::uint8_t* logic_out) const;
  double source_voltage_v() const { return source_v_; }

 private:
  struct Coeff {
    double a, b, p, q, c;
  };
  std::array<Coeff, 8> coeff_{};
  double source_v_ = 0;
};

/// What the emulator's ADC produces for a current: the smallest range that does not saturate
/// (as the PPK2's auto-ranging does), and the ADC value, rounded; negative currents read 0 on
/// range 0, currents beyond range 4 saturate it. Inverts the conversion above (the quadratic
/// gain included).
SampleWord quantize_current(double amps, const Metadata& m, double source_v);

// ---------------------------------------------------------------------------------------------
// Streaming decoder: bytes in arbitrary pieces -> samples at unwrapped indices.

/// A run of sample indices the decoder reports besides samples.
struct DecoderGap {
  /// Why.
  enum class Kind : std::uint8_t {
    missing,    ///< the counter jumped: `count` samples never arrived (filled as missing)
    duplicate,  ///< `count` repeated words dropped; they would have gone at `first_index`
  } kind;
  std::uint64_t first_index;
  std::uint64_t count;
};

/// Counters of the decoder. Every byte is accounted for:
///   bytes = 4 * (samples + duplicate_samples) + discarded_bytes + pending
/// and every index: next_index = samples + missing_samples.
struct DecoderCounters {
  std::uint64_t bytes = 0;               ///< bytes fed
  std::uint64_t samples = 0;             ///< words decoded into samples (valid or not)
  std::uint64_t missing_samples = 0;     ///< indices filled as missing (counter gaps)
  std::uint64_t counter_gaps = 0;        ///< counter jumps (loss events)
  std::uint64_t corrupted_counters = 0;  ///< words kept although their counter was off
  std::uint64_t duplicate_samples = 0;   ///< repeated identical words dropped
  std::uint64_t invalid_range = 0;       ///< words with range 5..7 (current NaN)
  std::uint64_t discarded_bytes = 0;     ///< bytes skipped to find or keep word alignment
  std::uint64_t resyncs = 0;             ///< times alignment was lost and searched for again
  std::uint64_t overlap_words = 0;       ///< words dropped because, after a resync, their slot
                                         ///< had been taken by garbage that looked like a word
};

/// Caller-owned output for decoded samples; both spans have the same, non-zero length.
struct SampleSpans {
  std::span<float> amps;
  std::span<std::uint8_t> logic;
};

/// Follows the PPK2 word stream and gives every sample its unwrapped index. Pure and
/// deterministic: the same bytes give the same output however they are cut into pieces.
///
/// Rules, in order, at each word (e the expected counter, "the window" the next kWindow words):
/// - Lock: at the start, and after alignment is lost, bytes are dropped one at a time until
///   kWindow consecutive words have consecutive counters and valid ranges. The first lock is
///   index 0; a later one continues at the index the counter implies (a jump is a loss; a lock
///   1..kMaxCorrupted words *behind* means garbage that looked like words was taken as samples:
///   those slots are kept and the repeated real words dropped, counted in overlap_words).
/// - Fast path: a word is taken when its counter is e and the next word's is e+1 (or the next
///   word repeats it). The check of the next word keeps a garbage word with a lucky counter out.
/// - Duplicate: a word identical to the last one taken is dropped and counted.
/// - Corruption: if the old sequence resumes within the window (kConfirm words confirming it
///   after at most kMaxCorrupted words with wrong counters), those words are kept at their slots
///   and counted in corrupted_counters.
/// - Loss: if the window ends in a run of >= 3 words with consecutive counters (valid ranges),
///   the counter jump before the run is a loss of (c - e) mod 64 samples, filled as missing.
///   Words between the last good word and the run are taken as corrupted samples when there are
///   slots for them, else dropped as inserted garbage.
/// - Otherwise alignment is lost: the words that still match are held and the lock search starts
///   after them; the lock then says how many slots there are, and the held words fill them (or
///   are dropped as garbage if there are none).
/// Limits: losses of whole multiples of 64 samples are invisible here (see wrap_config()); words
/// before the first lock are dropped; a word with a corrupted counter right before a loss is kept
/// before the gap, not after it; in an aligned stream a jump back by d is read as a loss of
/// 64 - d (a real device loses samples but never goes back), so an inserted garbage word whose
/// counter happens to repeat the last one reads as 63 lost; garbage that forms kConfirm or more
/// words with consecutive counters is taken for samples.
class StreamDecoder {
 public:
  static constexpr std::size_t kWindow = 8;          ///< words looked at to decide
  static constexpr std::size_t kConfirm = 3;         ///< words that confirm a resumed sequence
  static constexpr std::size_t kMaxCorrupted = 4;    ///< corrupted counters tolerated in a row
  static constexpr std::size_t kBufferBytes = 8192;  ///< bytes buffered per round

  /// Options.
  struct Options {
    /// Write missing samples into the output (NaN current, logic 0) as well as reporting them
    /// through on_gap. Off: blocks skip the missing indices (a driver that reports gaps itself).
    bool fill_missing = true;
  };

  explicit StreamDecoder(const Converter& conv) : StreamDecoder(conv, Options{}) {}
  StreamDecoder(const Converter& conv, Options opt) : conv_(conv), opt_(opt) {}

  /// Decodes `bytes`. Samples are written into `out` from position 0; `on_block(first_index, n)`
  /// is called whenever `out` is full, before each gap, and at the end of the call, with the
  /// samples in out[0, n) (n > 0). `on_gap(const DecoderGap&)` reports losses and duplicates in
  /// index order with the samples. Nothing is allocated.
  template <typename OnBlock, typename OnGap>
  void feed(std::span<const std::uint8_t> bytes, SampleSpans out, OnBlock&& on_block,
            OnGap&& on_gap) {
    feed_impl(bytes, out, sink_of(on_block, on_gap));
  }
  /// At the end of the stream: decides the words still waiting for a full window with what is
  /// there; bytes that cannot be decided (a partial word, a short unaligned tail) are discarded.
  template <typename OnBlock, typename OnGap>
  void finish(SampleSpans out, OnBlock&& on_block, OnGap&& on_gap) {
    finish_impl(out, sink_of(on_block, on_gap));
  }

  const DecoderCounters& counters() const { return counters_; }
  /// The index the next sample will get.
  std::uint64_t next_index() const { return index_; }
  /// Bytes buffered waiting for more (including words held across a resync).
  std::size_t pending() const { return len_ + 4 * held_words_ - held_skip_; }
  /// True while following the counter (false before the first lock and while resynchronising).
  bool locked() const { return locked_; }

 private:
  /// The caller's callbacks, type-erased once per call (they run per block, not per sample).
  struct Sink {
    void* block_ctx;
    void (*block)(void*, std::uint64_t, std::size_t);
    void* gap_ctx;
    void (*gap)(void*, const DecoderGap&);
  };
  template <typename OnBlock, typename OnGap>
  static Sink sink_of(OnBlock& on_block, OnGap& on_gap) {
    return Sink{
        &on_block,
        [](void* c, std::uint64_t first, std::size_t n) { (*static_cast<OnBlock*>(c))(first, n); },
        &on_gap, [](void* c, const DecoderGap& g) { (*static_cast<OnGap*>(c))(g); }};
  }
  struct Out;  // output cursor, defined in the .cpp
  void feed_impl(std::span<const std::uint8_t> bytes, SampleSpans out, Sink sink);
  void finish_impl(SampleSpans out, Sink sink);
  std::size_t process(Out& o, bool at_end);
  bool search(Out& o, std::size_t& p);
  bool slow_path(Out& o, std::size_t& p, bool at_end);
  bool consecutive_run(std::size_t p, std::size_t n) const;
  std::uint32_t at(std::size_t p) const { return load_word(buf_.data() + p); }

  Converter conv_;
  Options opt_;
  std::array<std::uint8_t, kBufferBytes> buf_{};
  std::size_t len_ = 0;
  bool locked_ = false;       ///< following the counter (else searching for alignment)
  bool ever_locked_ = false;  ///< index 0 has been placed
  std::uint8_t expect_ = 0;   ///< counter of the next sample
  std::uint64_t index_ = 0;   ///< index of the next sample
  std::uint32_t last_word_ = 0;
  bool have_last_ = false;
  std::size_t overlap_pending_ = 0;  ///< real words to drop after a lock that went backwards
  std::array<std::uint8_t, 4 * kWindow> held_{};  ///< words that matched before a resync
  std::size_t held_words_ = 0;
  std::size_t held_skip_ = 0;  ///< bytes of the held words still ahead of the lock search
  DecoderCounters counters_;
};

// ---------------------------------------------------------------------------------------------
// Elapsed-time check: losses that wrap the 6-bit counter.

/// The counter sees a loss only modulo 64 samples (0.64 ms): losses of whole wraps are found by
/// the shared fw::WrapInference, one chunk per read, with this tuning (100 kS/s, a 64-sample wrap;
/// a chunk where the decoder reported a loss is the counter's evidence).
inline WrapConfig wrap_config() {
  WrapConfig c;
  c.rate_hz = kSampleRateHz;
  c.wrap_samples = kCounterModulo;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Template definitions.

template <typename OnCommand>
void CommandParser::feed(std::span<const std::uint8_t> bytes, OnCommand&& on_command) {
  for (std::uint8_t b : bytes) {
    buf_[len_++] = b;
    // Resolve as much of the buffer as possible; a dropped opcode lets its arguments be
    // looked at as opcodes.
    while (len_ > 0) {
      const std::size_t need = command_length(buf_[0]);
      if (need == 0) {
        ++counters_.unknown_opcodes;
      } else if (len_ < need) {
        break;
      } else {
        auto c = parse_command(std::span<const std::uint8_t>(buf_.data(), need));
        if (c) {
          ++counters_.commands;
          len_ -= need;
          std::copy_n(buf_.begin() + static_cast<std::ptrdiff_t>(need), len_, buf_.begin());
          on_command(*c);
          continue;
        }
        ++counters_.invalid_arguments;
      }
      ++counters_.discarded_bytes;
      --len_;
      std::copy_n(buf_.begin() + 1, len_, buf_.begin());
    }
  }
}

}  // namespace meltrig::fw::ppk2
