// Nordic PPK2 serial protocol: see ppk2_protocol.hpp.
#include "meltrig/fw/ppk2_protocol.hpp"

#include <charconv>
#include <cstdio>

namespace meltrig::fw::ppk2 {
namespace {

std::vector<std::uint8_t> bytes_of(std::initializer_list<std::uint8_t> b) {
  return std::vector<std::uint8_t>(b);
}

std::string hex2(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02X", v & 0xFFu);
  return b;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool parse_double(std::string_view s, double& out) {
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(out);
}

bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// The documented keys. Families of five per-range values, then the scalars.
struct KeyInfo {
  std::string_view name;
  std::array<double, kRanges> Metadata::*family;  // nullptr for the scalars
  std::size_t range;
};

constexpr std::array<KeyInfo, 38> kKeys = {{
    {"Calibrated", nullptr, 0}, {"R0", &Metadata::r, 0},   {"R1", &Metadata::r, 1},
    {"R2", &Metadata::r, 2},    {"R3", &Metadata::r, 3},   {"R4", &Metadata::r, 4},
    {"GS0", &Metadata::gs, 0},  {"GS1", &Metadata::gs, 1}, {"GS2", &Metadata::gs, 2},
    {"GS3", &Metadata::gs, 3},  {"GS4", &Metadata::gs, 4}, {"GI0", &Metadata::gi, 0},
    {"GI1", &Metadata::gi, 1},  {"GI2", &Metadata::gi, 2}, {"GI3", &Metadata::gi, 3},
    {"GI4", &Metadata::gi, 4},  {"O0", &Metadata::o, 0},   {"O1", &Metadata::o, 1},
    {"O2", &Metadata::o, 2},    {"O3", &Metadata::o, 3},   {"O4", &Metadata::o, 4},
    {"S0", &Metadata::s, 0},    {"S1", &Metadata::s, 1},   {"S2", &Metadata::s, 2},
    {"S3", &Metadata::s, 3},    {"S4", &Metadata::s, 4},   {"I0", &Metadata::i, 0},
    {"I1", &Metadata::i, 1},    {"I2", &Metadata::i, 2},   {"I3", &Metadata::i, 3},
    {"I4", &Metadata::i, 4},    {"UG0", &Metadata::ug, 0}, {"UG1", &Metadata::ug, 1},
    {"UG2", &Metadata::ug, 2},  {"UG3", &Metadata::ug, 3}, {"UG4", &Metadata::ug, 4},
    {"HW", nullptr, 0},         {"IA", nullptr, 0},
}};

constexpr std::array<std::string_view, kKeys.size()> kKeyNames = [] {
  std::array<std::string_view, kKeys.size()> a{};
  for (std::size_t k = 0; k < kKeys.size(); ++k)
    a[k] = kKeys[k].name;
  return a;
}();

bool is_text_byte(std::uint8_t b) {
  return (b >= 0x20 && b <= 0x7E) || b == '\t' || b == '\r' || b == '\n';
}

}  // namespace

// --- commands ----------------------------------------------------------------------------------

std::vector<std::uint8_t> cmd_get_metadata() {
  return bytes_of({static_cast<std::uint8_t>(Op::get_metadata)});
}

Result<std::vector<std::uint8_t>> cmd_set_source_voltage_mv(int mv) {
  if (mv < kMinSourceMv || mv > kMaxSourceMv) {
    return make_error(Errc::invalid_argument, "PPK2 source voltage " + std::to_string(mv) +
                                                  " mV is outside " + std::to_string(kMinSourceMv) +
                                                  ".." + std::to_string(kMaxSourceMv) + " mV");
  }
  return bytes_of({static_cast<std::uint8_t>(Op::regulator_set), static_cast<std::uint8_t>(mv >> 8),
                   static_cast<std::uint8_t>(mv & 0xFF)});
}

Result<std::vector<std::uint8_t>> cmd_set_source_voltage(double volts) {
  if (!std::isfinite(volts) || volts < 0 || volts > 100) {
    return make_error(Errc::invalid_argument,
                      "PPK2 source voltage " + std::to_string(volts) + " V is outside 0.8..5.0 V");
  }
  return cmd_set_source_voltage_mv(static_cast<int>(std::lround(volts * 1000.0)));
}

std::vector<std::uint8_t> cmd_set_power_mode(PowerMode mode) {
  return bytes_of({static_cast<std::uint8_t>(Op::set_power_mode), static_cast<std::uint8_t>(mode)});
}
std::vector<std::uint8_t> cmd_set_dut_power(bool on) {
  return bytes_of({static_cast<std::uint8_t>(Op::dut_power), static_cast<std::uint8_t>(on)});
}
std::vector<std::uint8_t> cmd_start() {
  return bytes_of({static_cast<std::uint8_t>(Op::average_start)});
}
std::vector<std::uint8_t> cmd_stop() {
  return bytes_of({static_cast<std::uint8_t>(Op::average_stop)});
}
std::vector<std::uint8_t> cmd_reset() {
  return bytes_of({static_cast<std::uint8_t>(Op::reset)});
}

std::size_t command_length(std::uint8_t op) {
  switch (static_cast<Op>(op)) {
    case Op::average_start:
    case Op::average_stop:
    case Op::get_metadata:
    case Op::reset:
      return 1;
    case Op::dut_power:
    case Op::set_power_mode:
      return 2;
    case Op::regulator_set:
      return 3;
  }
  return 0;
}

Result<Command> parse_command(std::span<const std::uint8_t> b) {
  if (b.empty()) return make_error(Errc::protocol_error, "PPK2 command: no bytes");
  const std::size_t need = command_length(b[0]);
  if (need == 0)
    return make_error(Errc::protocol_error, "PPK2 command: unknown opcode " + hex2(b[0]));
  if (b.size() != need) {
    return make_error(Errc::protocol_error, "PPK2 command " + hex2(b[0]) + ": " +
                                                std::to_string(b.size()) + " bytes, expected " +
                                                std::to_string(need));
  }
  auto bad_arg = [&](std::size_t pos) {
    return make_error(Errc::protocol_error, "PPK2 command " + hex2(b[0]) + ": argument " +
                                                hex2(b[pos]) + " at byte " + std::to_string(pos) +
                                                " is out of range");
  };
  using K = Command::Kind;
  switch (static_cast<Op>(b[0])) {
    case Op::get_metadata:
      return Command{K::get_metadata, 0};
    case Op::average_start:
      return Command{K::start, 0};
    case Op::average_stop:
      return Command{K::stop, 0};
    case Op::reset:
      return Command{K::reset, 0};
    case Op::dut_power:
      if (b[1] > 1) return bad_arg(1);
      return Command{K::set_dut_power, b[1]};
    case Op::set_power_mode:
      if (b[1] != 1 && b[1] != 2) return bad_arg(1);
      return Command{K::set_power_mode, b[1]};
    case Op::regulator_set: {
      const auto mv = static_cast<std::uint16_t>((b[1] << 8) | b[2]);
      if (mv < kMinSourceMv || mv > kMaxSourceMv) {
        return make_error(Errc::protocol_error, "PPK2 command 0x0D: source voltage " +
                                                    std::to_string(mv) + " mV is outside " +
                                                    std::to_string(kMinSourceMv) + ".." +
                                                    std::to_string(kMaxSourceMv) + " mV");
      }
      return Command{K::set_source_voltage, mv};
    }
  }
  return make_error(Errc::protocol_error, "PPK2 command: unknown opcode " + hex2(b[0]));
}

// --- metadata ----------------------------------------------------------------------------------

std::span<const std::string_view> metadata_keys() {
  return kKeyNames;
}

std::optional<double> Metadata::extra_number(std::string_view key) const {
  for (const auto& [k, v] : extra) {
    double d = 0;
    if (k == key && parse_double(trim(v), d)) return d;
  }
  return std::nullopt;
}

Result<Metadata> parse_metadata(std::string_view text) {
  Metadata m;
  std::array<bool, kKeys.size()> seen{};
  std::size_t lineno = 0;
  bool ended = false;
  auto bad = [&](const std::string& why) {
    return make_error(Errc::parse_error,
                      "PPK2 metadata line " + std::to_string(lineno) + ": " + why);
  };
  while (!text.empty()) {
    ++lineno;
    const auto nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    if (line == "END") {
      ended = true;
      break;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return bad("expected \"key: value\", got \"" + std::string(line.substr(0, 40)) + "\"");
    }
    const std::string_view key = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (key.empty()) return bad("empty key");
    std::size_t k = 0;
    while (k < kKeys.size() && kKeys[k].name != key)
      ++k;
    if (k == kKeys.size()) {
      for (const auto& e : m.extra)
        if (e.first == key) return bad("key \"" + std::string(key) + "\" repeated");
      m.extra.emplace_back(std::string(key), std::string(value));
      continue;
    }
    if (seen[k]) return bad("key \"" + std::string(key) + "\" repeated");
    seen[k] = true;
    const KeyInfo& info = kKeys[k];
    if (info.family) {
      double d = 0;
      if (!parse_double(value, d)) {
        return bad(std::string(key) + ": \"" + std::string(value) + "\" is not a number");
      }
      if (info.family == &Metadata::r && !(d > 0)) {
        return bad(std::string(key) + ": shunt resistance " + std::string(value) +
                   " ohm is not positive");
      }
      (m.*info.family)[info.range] = d;
    } else {
      std::int64_t v = 0;
      if (!parse_int(value, v)) {
        return bad(std::string(key) + ": \"" + std::string(value) + "\" is not an integer");
      }
      if (key == "Calibrated") {
        if (v != 0 && v != 1)
          return bad("Calibrated: \"" + std::string(value) + "\" is not 0 or 1");
        m.calibrated = v == 1;
      } else if (key == "HW") {
        m.hw = v;
      } else {
        m.ia = v;
      }
    }
  }
  if (!ended) {
    return make_error(Errc::parse_error,
                      "PPK2 metadata: no END line after " + std::to_string(lineno) + " lines");
  }
  for (std::size_t k = 0; k < kKeys.size(); ++k)
    if (!seen[k]) m.missing_keys.emplace_back(kKeys[k].name);
  return m;
}

std::string format_metadata(const Metadata& m, std::span<const std::string> omit,
                            std::span<const std::pair<std::string, std::string>> extra) {
  std::string out;
  char buf[64];
  for (const auto& k : kKeys) {
    if (std::find(omit.begin(), omit.end(), k.name) != omit.end()) continue;
    if (k.family) {
      // %.17g: the driver must see exactly the emulator's doubles.
      std::snprintf(buf, sizeof buf, "%.17g", (m.*k.family)[k.range]);
    } else if (k.name == "Calibrated") {
      std::snprintf(buf, sizeof buf, "%d", m.calibrated ? 1 : 0);
    } else {
      const auto& v = k.name == "HW" ? m.hw : m.ia;
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v.value_or(0)));
    }
    out += k.name;
    out += ": ";
    out += buf;
    out += '\n';
  }
  for (const auto& [key, value] : extra) {
    out += key + ": " + value + "\n";
  }
  out += "END\n";
  return out;
}

std::size_t MetadataCollector::feed(std::span<const std::uint8_t> bytes) {
  std::size_t used = 0;
  for (std::uint8_t b : bytes) {
    if (complete_ || overflowed_) break;
    ++used;
    if (!is_text_byte(b)) {
      // Binary: whatever was collected was not the answer (e.g. sample words still in flight).
      discarded_ += text_.size() + 1;
      text_.clear();
      continue;
    }
    text_.push_back(static_cast<char>(b));
    if (b == 'D' && text_.size() >= 3 && text_.compare(text_.size() - 3, 3, "END") == 0) {
      const std::size_t line_start = text_.size() - 3;
      if (line_start == 0 || text_[line_start - 1] == '\n') complete_ = true;
    }
    if (text_.size() > kMaxBytes) overflowed_ = true;
  }
  return used;
}

// --- sample words and conversion ---------------------------------------------------------------

void append_word(std::uint32_t w, std::vector<std::uint8_t>& out) {
  out.push_back(static_cast<std::uint8_t>(w));
  out.push_back(static_cast<std::uint8_t>(w >> 8));
  out.push_back(static_cast<std::uint8_t>(w >> 16));
  out.push_back(static_cast<std::uint8_t>(w >> 24));
}

double current_amps(const Metadata& m, std::uint16_t adc, std::uint8_t r, double v) {
  if (!range_valid(r)) return std::numeric_limits<double>::quiet_NaN();
  const double x = (adc * 4.0 - m.o[r]) * kAdcMult / m.r[r];
  return m.ug[r] * (x * (m.gs[r] * x + m.gi[r]) + m.s[r] * v + m.i[r]);
}

Converter::Converter(const Metadata& m, double source_v) : source_v_(source_v) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  coeff_.fill(Coeff{nan, nan, nan, nan, nan});
  for (std::size_t r = 0; r < kRanges; ++r) {
    coeff_[r] = Coeff{4.0 * kAdcMult / m.r[r], -m.o[r] * kAdcMult / m.r[r], m.ug[r] * m.gs[r],
                      m.ug[r] * m.gi[r], m.ug[r] * (m.s[r] * source_v + m.i[r])};
  }
}

void Converter::convert(std::span<const std::uint32_t> words, float* amps_out,
                        std::uint8_t* logic_out) const {
  for (std::size_t k = 0; k < words.size(); ++k) {
    amps_out[k] = amps(words[k]);
    logic_out[k] = word_logic(words[k]);
  }
}

SampleWord quantize_current(double amps, const Metadata& m, double v) {
  SampleWord w;
  for (std::uint8_t r = 0; r < kRanges; ++r) {
    // Undo the gains: x*(GS*x + GI) = y, solved for the root near y/GI.
    const double y = amps / m.ug[r] - m.s[r] * v - m.i[r];
    double x;
    if (m.gs[r] == 0.0) {
      x = y / m.gi[r];
    } else {
      const double disc = m.gi[r] * m.gi[r] + 4.0 * m.gs[r] * y;
      x = disc <= 0 ? -m.gi[r] / (2.0 * m.gs[r]) : 2.0 * y / (m.gi[r] + std::sqrt(disc));
    }
    const double adc = (x * m.r[r] / kAdcMult + m.o[r]) / 4.0;
    if (adc <= kAdcMax + 0.5 || r + 1 == kRanges) {
      w.range = r;
      w.adc = static_cast<std::uint16_t>(std::clamp<double>(std::round(adc), 0.0, kAdcMax));
      return w;
    }
  }
  return w;
}

// --- streaming decoder -------------------------------------------------------------------------

/// Output cursor of one feed()/finish() call: the caller's spans and callbacks.
struct StreamDecoder::Out {
  StreamDecoder& d;
  SampleSpans out;
  Sink sink;
  std::size_t pos = 0;
  std::uint64_t first = 0;

  std::size_t room() const { return out.amps.size() - pos; }
  void flush() {
    if (pos) sink.block(sink.block_ctx, first, pos);
    pos = 0;
    first = d.index_;
  }
  /// Takes n words at `src` as the next samples (n <= room()).
  void words(const std::uint8_t* src, std::size_t n) {
    float* amps = out.amps.data() + pos;
    std::uint8_t* logic = out.logic.data() + pos;
    std::uint64_t invalid = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::uint32_t w = load_word(src + 4 * k);
      amps[k] = d.conv_.amps(w);
      logic[k] = word_logic(w);
      invalid += word_range(w) >= kRanges;
    }
    pos += n;
    d.index_ += n;
    d.counters_.samples += n;
    d.counters_.invalid_range += invalid;
    d.last_word_ = load_word(src + 4 * (n - 1));
    d.have_last_ = true;
    d.expect_ = static_cast<std::uint8_t>((d.expect_ + n) & kCounterMask);
  }
  /// Takes n words, flushing whenever the output is full.
  void take(const std::uint8_t* src, std::size_t n) {
    while (n) {
      if (room() == 0) flush();
      const std::size_t k = std::min(n, room());
      words(src, k);
      src += 4 * k;
      n -= k;
    }
  }
  /// n samples never arrived.
  void missing(std::uint64_t n) {
    if (n == 0) return;
    flush();
    sink.gap(sink.gap_ctx, DecoderGap{DecoderGap::Kind::missing, d.index_, n});
    d.counters_.missing_samples += n;
    ++d.counters_.counter_gaps;
    d.expect_ = static_cast<std::uint8_t>((d.expect_ + n) & kCounterMask);
    if (!d.opt_.fill_missing) {
      d.index_ += n;
      first = d.index_;
      return;
    }
    while (n) {
      if (room() == 0) flush();
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, room()));
      std::fill_n(out.amps.data() + pos, k, std::numeric_limits<float>::quiet_NaN());
      std::fill_n(out.logic.data() + pos, k, std::uint8_t{0});
      pos += k;
      d.index_ += k;
      n -= k;
    }
  }
  /// The word just seen repeats the last sample: dropped.
  void duplicate() {
    flush();
    sink.gap(sink.gap_ctx, DecoderGap{DecoderGap::Kind::duplicate, d.index_, 1});
    ++d.counters_.duplicate_samples;
  }
};

void StreamDecoder::feed_impl(std::span<const std::uint8_t> bytes, SampleSpans out, Sink sink) {
  assert(!out.amps.empty() && out.amps.size() == out.logic.size());
  counters_.bytes += bytes.size();
  Out o{*this, out, sink, 0, index_};
  while (!bytes.empty()) {
    const std::size_t take = std::min(bytes.size(), kBufferBytes - len_);
    std::memcpy(buf_.data() + len_, bytes.data(), take);
    len_ += take;
    bytes = bytes.subspan(take);
    const std::size_t used = process(o, false);
    std::memmove(buf_.data(), buf_.data() + used, len_ - used);
    len_ -= used;
  }
  o.flush();
}

void StreamDecoder::finish_impl(SampleSpans out, Sink sink) {
  assert(!out.amps.empty() && out.amps.size() == out.logic.size());
  Out o{*this, out, sink, 0, index_};
  const std::size_t used = process(o, true);
  // Words held across a resync that never found its lock: they matched their slots, keep them.
  // (Their bytes still in the buffer are not counted again.)
  if (held_words_ > 0) {
    o.take(held_.data(), held_words_);
    held_words_ = 0;
  }
  // What is left cannot be decided: a partial word or an unaligned tail.
  counters_.discarded_bytes += len_ - used - held_skip_;
  held_skip_ = 0;
  len_ = 0;
  o.flush();
}

bool StreamDecoder::consecutive_run(std::size_t p, std::size_t n) const {
  std::uint8_t prev = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint32_t w = at(p + 4 * k);
    if (!range_valid(word_range(w))) return false;
    const std::uint8_t c = word_counter(w);
    if (k > 0 && c != ((prev + 1) & kCounterMask)) return false;
    prev = c;
  }
  return true;
}

std::size_t StreamDecoder::process(Out& o, bool at_end) {
  std::size_t p = 0;
  while (true) {
    if (!locked_) {
      if (!search(o, p)) break;
      continue;
    }
    // After a lock that went backwards, the first words repeat slots garbage already filled.
    while (overlap_pending_ > 0 && p + 4 <= len_) {
      p += 4;
      --overlap_pending_;
      ++counters_.overlap_words;
      counters_.discarded_bytes += 4;
    }
    if (overlap_pending_ > 0) break;
    // Fast path: a word is taken when its counter is expected and the next word confirms it.
    if (o.room() == 0) o.flush();
    const std::size_t room = o.room();
    std::uint8_t e = expect_;
    std::size_t n = 0;
    while (n < room && p + 4 * (n + 2) <= len_) {
      const std::uint32_t w = at(p + 4 * n);
      const std::uint32_t next = at(p + 4 * n + 4);
      const auto e1 = static_cast<std::uint8_t>((e + 1) & kCounterMask);
      if (word_counter(w) != e || (word_counter(next) != e1 && next != w)) break;
      e = e1;
      ++n;
    }
    if (n > 0) {
      o.words(buf_.data() + p, n);
      p += 4 * n;
      continue;
    }
    if (!slow_path(o, p, at_end)) break;
  }
  return p;
}

bool StreamDecoder::search(Out& o, std::size_t& p) {
  while (p + 4 * kWindow <= len_) {
    if (!consecutive_run(p, kWindow)) {
      ++p;
      if (held_skip_ > 0)
        --held_skip_;  // a byte of the held words: already accounted for as held
      else
        ++counters_.discarded_bytes;
      continue;
    }
    const std::uint8_t c = word_counter(at(p));
    locked_ = true;
    if (!ever_locked_) {
      ever_locked_ = true;
      expect_ = c;
      return true;
    }
    // Held words that end before the lock are candidates; one the lock cuts through was not a
    // word (its bytes before the lock are garbage, the rest belong to the run).
    std::size_t h = held_words_;
    if (held_skip_ > 0) {
      const std::size_t offset = 4 * held_words_ - held_skip_;
      h = offset / 4;
      counters_.discarded_bytes += offset - 4 * h;
      held_skip_ = 0;
    }
    held_words_ = 0;
    // Signed distance from the expected counter to the lock: a small negative one means the
    // stream is behind what was already taken.
    const unsigned d = (c - expect_) & kCounterMask;
    const long ds = d >= kCounterModulo - kMaxCorrupted ? static_cast<long>(d) - kCounterModulo
                                                        : static_cast<long>(d);
    if (ds < 0) {
      // Garbage with plausible counters was taken as samples before alignment was lost (the
      // held words came after it, so they are garbage too). Keep the indices: drop the real
      // words for those slots.
      counters_.discarded_bytes += 4 * h;
      overlap_pending_ = static_cast<std::size_t>(-ds);
      return true;
    }
    // The held words matched the slots right after the last sample, so they are most likely
    // real: keep them. If the lock claims fewer slots, its first words repeat those slots.
    if (h) o.take(held_.data(), h);
    if (static_cast<std::size_t>(ds) >= h)
      o.missing(static_cast<std::size_t>(ds) - h);
    else
      overlap_pending_ = h - static_cast<std::size_t>(ds);
    return true;
  }
  return false;
}

bool StreamDecoder::slow_path(Out& o, std::size_t& p, bool at_end) {
  const std::size_t avail = (len_ - p) / 4;
  if (avail == 0) return false;
  const std::uint32_t w0 = at(p);
  if (have_last_ && w0 == last_word_) {
    o.duplicate();
    p += 4;
    return true;
  }
  if (avail < kWindow && !at_end) return false;
  const std::size_t m = std::min(avail, kWindow);
  std::array<std::uint8_t, kWindow> c{};
  for (std::size_t k = 0; k < kWindow && k < m; ++k)  // (the first bound is for GCC -O3)
    c[k] = word_counter(at(p + 4 * k));
  const std::uint8_t e = expect_;
  auto expected = [e](std::size_t k) { return static_cast<std::uint8_t>((e + k) & kCounterMask); };
  std::size_t prefix = 0;  // words that still follow the old sequence
  while (prefix < m && c[prefix] == expected(prefix))
    ++prefix;

  // Corruption: the old sequence resumes, confirmed by three words (fewer only at the very end
  // of the stream), after at most kMaxCorrupted wrong counters.
  for (std::size_t j = 1; j < m; ++j) {
    const std::size_t confirm = std::min<std::size_t>(kConfirm, m - j);
    if (confirm < kConfirm && !at_end) break;
    bool resumes = true;
    for (std::size_t k = j; k < j + confirm; ++k)
      resumes = resumes && c[k] == expected(k);
    if (!resumes) continue;
    std::size_t bad = 0;
    for (std::size_t k = 0; k < j; ++k)
      bad += c[k] != expected(k);
    if (bad > kMaxCorrupted) break;
    counters_.corrupted_counters += bad;
    o.take(buf_.data() + p, j);
    p += 4 * j;
    return true;
  }

  // Loss: the window ends in a run of >= 3 consecutive counters (valid ranges) that starts a new
  // sequence, as early as possible. Words between the old sequence and the run are samples with
  // corrupted counters if there are slots for them, else inserted garbage.
  for (std::size_t i = 0; i + 3 <= m; ++i) {
    if (!consecutive_run(p + 4 * i, m - i)) continue;
    const std::size_t pre = std::min(prefix, i);
    const std::size_t rest = i - pre;
    const unsigned d = (c[i] - e - pre) & kCounterMask;
    if (i == 0 && d == 0) break;  // nothing to decide (cannot happen after the fast path)
    const std::size_t q = std::min<std::size_t>(rest, d);
    o.take(buf_.data() + p, pre + q);
    counters_.corrupted_counters += q;
    counters_.discarded_bytes += 4 * (rest - q);
    o.missing(d - q);
    p += 4 * i;
    return true;
  }

  // Alignment lost (garbage bytes). Words that still match are probably real (a garbage word
  // matches by chance 1 in 64), but only the lock can tell: hold them until it is found.
  if (at_end) {
    if (prefix == 0) return false;
    o.take(buf_.data() + p, prefix);
    p += 4 * prefix;
    return true;
  }
  // The search starts one byte in: the real stream may resume inside what looked like words.
  std::memcpy(held_.data(), buf_.data() + p, 4 * prefix);
  held_words_ = prefix;
  held_skip_ = prefix > 0 ? 4 * prefix - 1 : 0;
  if (prefix > 0) ++p;
  locked_ = false;
  ++counters_.resyncs;
  return true;
}

}  // namespace meltrig::fw::ppk2
