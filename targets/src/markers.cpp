// Marker format v1: parser, percent-encoding and formatter (docs/markers.md is normative).
#include "meltrig/targets/markers.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <system_error>

namespace meltrig::targets {

namespace {

constexpr std::string_view kMagic = "meltrig-markers";

struct KindName {
  MarkerKind kind;
  std::string_view name;
  std::array<std::string_view, 3> keys;  ///< the keys v1 defines for the kind
};

constexpr std::array<KindName, 10> kKinds = {{
    {MarkerKind::run_start, "run.start", {"id"}},
    {MarkerKind::run_end, "run.end", {"status"}},
    {MarkerKind::load_start, "load.start", {"model"}},
    {MarkerKind::load_end, "load.end", {}},
    {MarkerKind::prefill_start, "prefill.start", {"tokens"}},
    {MarkerKind::prefill_end, "prefill.end", {"tokens"}},
    {MarkerKind::token, "token", {"index"}},
    {MarkerKind::sync_start, "sync.start", {"code", "bits", "chip_ns"}},
    {MarkerKind::sync_end, "sync.end", {"code"}},
    {MarkerKind::user, "user", {"name", "value", "text"}},
}};

bool defined_key(MarkerKind k, std::string_view key) {
  for (const auto& kn : kKinds)
    if (kn.kind == k) return std::find(kn.keys.begin(), kn.keys.end(), key) != kn.keys.end();
  return false;
}

constexpr char kHex[] = "0123456789ABCDEF";

bool must_encode(unsigned char c) {
  return c <= 0x20 || c == '%' || c == '=' || c >= 0x7F;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

bool is_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_key_char(c)) return false;
  return true;
}

/// Shortens untrusted text quoted in a message (it is printable ASCII by then).
std::string quote(std::string_view s) {
  constexpr std::size_t kMax = 40;
  std::string out = "'";
  out += s.substr(0, kMax);
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

/// Decimal digits only (no sign, no '+', no spaces), fitting in int64.
std::optional<std::int64_t> parse_nonneg(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

/// "0x" followed by 1..16 hex digits.
std::optional<std::uint64_t> parse_code(std::string_view s) {
  if (s.size() < 3 || s.size() > 18 || s[0] != '0' || s[1] != 'x') return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s.substr(2)) {
    int d = hex_digit(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, p);
}

void append_code(std::string& out, std::uint64_t code) {
  char buf[16];
  int n = 0;
  do {
    buf[n++] = kHex[code & 0xF];
    code >>= 4;
  } while (code != 0);
  out += "0x";
  while (n > 0)
    out += buf[--n];
}

/// One "key=value" field of an event line, value still percent-encoded.
struct Field {
  std::string_view key;
  std::string_view value;
};

/// Parses one event line; on failure returns the issue message and leaves `ev` undefined.
class LineParser {
 public:
  /// Splits `line` into time, name and fields; "" on success.
  std::string split(std::string_view line) {
    fields_.clear();
    if (line.empty()) return "empty line";
    for (std::size_t i = 0; i < line.size(); ++i) {
      auto c = static_cast<unsigned char>(line[i]);
      if (c != ' ' && (c < 0x21 || c > 0x7E)) {
        std::string m = "byte 0x";
        m += kHex[c >> 4];
        m += kHex[c & 0xF];
        m += " at column " + std::to_string(i + 1) + " (raw bytes must be percent-encoded)";
        return m;
      }
    }
    std::size_t col = 0;
    int n = 0;
    while (col <= line.size()) {
      std::size_t sp = line.find(' ', col);
      if (sp == std::string_view::npos) sp = line.size();
      std::string_view tok = line.substr(col, sp - col);
      if (tok.empty()) return "empty field at column " + std::to_string(col + 1);
      if (n == 0) {
        time_ = tok;
      } else if (n == 1) {
        name_ = tok;
      } else {
        auto eq = tok.find('=');
        if (eq == std::string_view::npos) return "field " + quote(tok) + " is not key=value";
        Field f{tok.substr(0, eq), tok.substr(eq + 1)};
        if (!is_name(f.key)) return "bad key " + quote(f.key);
        if (f.value.find('=') != std::string_view::npos)
          return "value of '" + std::string(f.key) + "' holds a raw '='";
        for (const auto& g : fields_)
          if (g.key == f.key) return "duplicate key '" + std::string(f.key) + "'";
        fields_.push_back(f);
      }
      ++n;
      col = sp + 1;
    }
    if (n < 2) return "expected '<t_ns> <event> [key=value ...]'";
    return {};
  }

  std::string_view time() const { return time_; }
  std::string_view name() const { return name_; }
  const std::vector<Field>& fields() const { return fields_; }

  std::optional<std::string_view> find(std::string_view key) const {
    for (const auto& f : fields_)
      if (f.key == key) return f.value;
    return std::nullopt;
  }

 private:
  std::string_view time_, name_;
  std::vector<Field> fields_;
};

/// Reads the typed fields of one event; each getter records the first failure in `error`.
struct FieldReader {
  const LineParser& p;
  std::string_view event;
  std::string error;

  std::optional<std::string_view> raw(std::string_view key, bool required) {
    auto v = p.find(key);
    if (!v && required && error.empty())
      error = std::string(event) + ": missing key '" + std::string(key) + "'";
    return v;
  }
  void bad(std::string_view key, std::string_view v, std::string_view what) {
    if (error.empty())
      error = std::string(event) + ": " + std::string(key) + "=" + quote(v) + " is not " +
              std::string(what);
  }
  std::int64_t integer(std::string_view key, std::int64_t fallback = -1) {
    auto v = raw(key, true);
    if (!v) return fallback;
    auto n = parse_nonneg(*v);
    if (!n) {
      bad(key, *v, "a non-negative decimal integer");
      return fallback;
    }
    return *n;
  }
  std::uint64_t code(std::string_view key) {
    auto v = raw(key, true);
    if (!v) return 0;
    auto c = parse_code(*v);
    if (!c) {
      bad(key, *v, "a 0x-prefixed hex code of at most 64 bits");
      return 0;
    }
    return *c;
  }
  std::string text(std::string_view key, bool required) {
    auto v = raw(key, required);
    if (!v) return {};
    auto d = decode_value(*v);
    if (!d.ok()) {
      if (error.empty())
        error = std::string(event) + ": " + std::string(key) + ": " + d.error().message;
      return {};
    }
    return std::move(d).value();
  }
};

Error header_error(std::string_view name, std::string message) {
  return Error{Errc::parse_error, std::string(name) + ":1: " + std::move(message)};
}

/// Parses the header line into `log`; an Error names `name`:1.
Result<void> parse_header(std::string_view line, bool terminated, std::string_view name,
                          MarkerLog& log) {
  const std::string expected = "expected '" + std::string(kMagic) + " " +
                               std::to_string(kMarkerFormatVersion) + " clock=monotonic ...'";
  if (line.substr(0, kMagic.size()) != kMagic ||
      (line.size() > kMagic.size() && line[kMagic.size()] != ' '))
    return header_error(name, "not a meltrig marker file: " + expected);
  std::size_t col = kMagic.size() + 1;
  if (col > line.size()) return header_error(name, "header without version: " + expected);
  std::size_t sp = line.find(' ', col);
  if (sp == std::string_view::npos) sp = line.size();
  std::string_view version = line.substr(col, sp - col);
  if (version != std::to_string(kMarkerFormatVersion)) {
    std::string shown;
    for (char c : version.substr(0, 20))
      shown += (c >= 0x21 && c <= 0x7E) ? c : '?';
    return header_error(name, "marker format version '" + shown +
                                  "' is not supported (this reader reads " +
                                  std::to_string(kMarkerFormatVersion) + ")");
  }
  if (!terminated) return header_error(name, "incomplete header line (no newline)");
  bool have_clock = false;
  col = sp + 1;
  while (col <= line.size()) {
    sp = line.find(' ', col);
    if (sp == std::string_view::npos) sp = line.size();
    std::string_view tok = line.substr(col, sp - col);
    std::string at = "header field " + std::to_string(log.header.size() + 1) + ": ";
    auto eq = tok.find('=');
    if (eq == std::string_view::npos || !is_name(tok.substr(0, eq)))
      return header_error(name, at + "expected key=value");
    std::string key(tok.substr(0, eq));
    auto value = decode_value(tok.substr(eq + 1));
    if (!value.ok()) return header_error(name, at + key + ": " + value.error().message);
    for (const auto& kv : log.header)
      if (kv.first == key) return header_error(name, "duplicate header key '" + key + "'");
    if (key == "clock") {
      if (*value != "monotonic" && *value != "boottime" && *value != "realtime")
        return header_error(
            name, "clock=" + quote(tok.substr(eq + 1)) + " is not monotonic, boottime or realtime");
      log.clock = *value;
      have_clock = true;
    }
    log.header.emplace_back(std::move(key), std::move(value).value());
    col = sp + 1;
  }
  if (!have_clock) return header_error(name, "header has no clock= key");
  return {};
}

/// Fills `ev` from the fields of a known event kind; "" on success.
std::string read_fields(const LineParser& p, MarkerEvent& ev) {
  FieldReader r{p, kind_name(ev.kind), {}};
  switch (ev.kind) {
    case MarkerKind::run_start:
      ev.label = r.text("id", true);
      break;
    case MarkerKind::run_end:
      ev.label = r.text("status", true);
      if (r.error.empty() && ev.label != "ok" && ev.label != "error" && ev.label != "interrupted")
        r.error = "run.end: status=" + quote(ev.label) + " is not ok, error or interrupted";
      break;
    case MarkerKind::load_start:
      ev.label = r.text("model", true);
      break;
    case MarkerKind::load_end:
      break;
    case MarkerKind::prefill_start:
    case MarkerKind::prefill_end:
      ev.index = r.integer("tokens");
      break;
    case MarkerKind::token:
      ev.index = r.integer("index");
      break;
    case MarkerKind::sync_start: {
      ev.code = r.code("code");
      std::int64_t bits = r.integer("bits", 0);
      ev.chip_ns = r.integer("chip_ns", 0);
      if (!r.error.empty()) break;
      if (bits < 1 || bits > 64) {
        r.error = "sync.start: bits=" + std::to_string(bits) + " is not in 1..64";
      } else if (bits < 64 && (ev.code >> bits) != 0) {
        r.error = "sync.start: code has bits above bits=" + std::to_string(bits);
      } else if (ev.chip_ns <= 0) {
        r.error = "sync.start: chip_ns must be positive";
      }
      ev.bits = static_cast<std::uint32_t>(bits);
      break;
    }
    case MarkerKind::sync_end:
      ev.code = r.code("code");
      break;
    case MarkerKind::user: {
      ev.label = r.text("name", true);
      if (auto v = p.find("value")) {
        if (auto d = parse_double(*v))
          ev.value = *d;
        else
          r.bad("value", *v, "a finite decimal number");
      }
      ev.text = r.text("text", false);
      break;
    }
  }
  for (const auto& f : p.fields())
    if (!defined_key(ev.kind, f.key)) ev.extra.emplace_back(f.key, f.value);
  return r.error;
}

}  // namespace

std::string_view kind_name(MarkerKind k) {
  for (const auto& kn : kKinds)
    if (kn.kind == k) return kn.name;
  return "unknown";
}

std::optional<MarkerKind> kind_from_name(std::string_view name) {
  for (const auto& kn : kKinds)
    if (kn.name == name) return kn.kind;
  return std::nullopt;
}

std::string MarkerIssue::describe() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

std::string encode_value(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char ch : raw) {
    auto c = static_cast<unsigned char>(ch);
    if (must_encode(c)) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += ch;
    }
  }
  return out;
}

Result<std::string> decode_value(std::string_view encoded) {
  std::string out;
  out.reserve(encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    auto c = static_cast<unsigned char>(encoded[i]);
    if (c == '%') {
      int hi = i + 1 < encoded.size() ? hex_digit(encoded[i + 1]) : -1;
      int lo = i + 2 < encoded.size() ? hex_digit(encoded[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return Error{Errc::parse_error, "bad percent escape at byte " + std::to_string(i + 1) +
                                            " (expected %XX with two hex digits)"};
      out += static_cast<char>((hi << 4) | lo);
      i += 2;
    } else if (must_encode(c)) {
      std::string m = "raw byte 0x";
      m += kHex[c >> 4];
      m += kHex[c & 0xF];
      return Error{Errc::parse_error,
                   m + " at byte " + std::to_string(i + 1) + " must be percent-encoded"};
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::vector<ClockStep> clock_steps(const std::vector<ClockTriple>& clocks,
                                   std::int64_t threshold_ns) {
  std::vector<ClockStep> steps;
  for (std::size_t i = 1; i < clocks.size(); ++i) {
    const auto& a = clocks[i - 1];
    const auto& b = clocks[i];
    ClockStep s;
    s.line = b.line;
    s.mono_ns = b.mono_ns;
    // Suspend stops CLOCK_MONOTONIC but not CLOCK_BOOTTIME; a wall-clock step moves REALTIME
    // alone, while a suspend moves REALTIME and BOOTTIME together.
    s.suspend_ns = (b.boot_ns - b.mono_ns) - (a.boot_ns - a.mono_ns);
    s.realtime_step_ns = (b.real_ns - b.boot_ns) - (a.real_ns - a.boot_ns);
    if (s.suspend_ns > threshold_ns || s.realtime_step_ns > threshold_ns ||
        s.realtime_step_ns < -threshold_ns)
      steps.push_back(s);
  }
  return steps;
}

namespace {

/// Adds the split line (a clock triple or an event at `t`) to `log`; the issue if it is bad.
std::string take_record(LineParser& parser, std::int64_t t, std::uint64_t lineno, MarkerLog& log) {
  if (parser.name() == "clock") {
    ClockTriple c;
    c.mono_ns = t;
    c.line = lineno;
    FieldReader r{parser, "clock", {}};
    c.boot_ns = r.integer("boot");
    c.real_ns = r.integer("real");
    if (!r.error.empty()) return std::move(r.error);
    log.clocks.push_back(c);
    return {};
  }
  auto kind = kind_from_name(parser.name());
  if (!kind) return "unknown event " + quote(parser.name()) + " (skipped)";
  MarkerEvent ev;
  ev.t_ns = t;
  ev.kind = *kind;
  ev.line = lineno;
  if (auto m = read_fields(parser, ev); !m.empty()) return m;
  log.events.push_back(std::move(ev));
  return {};
}

}  // namespace

Result<MarkerLog> parse_markers(std::string_view text, std::string_view name) {
  MarkerLog log;
  log.source = std::string(name);
  if (text.empty()) return header_error(name, "empty file: no header");

  std::size_t nl = text.find('\n');
  bool terminated = nl != std::string_view::npos;
  std::string_view first = text.substr(0, terminated ? nl : text.size());
  if (auto h = parse_header(first, terminated, name, log); !h.ok()) return h.error();

  auto issue = [&](std::uint64_t line, std::string message) {
    log.issues.push_back(MarkerIssue{log.source, line, std::move(message)});
  };

  LineParser parser;
  std::int64_t last_t = std::numeric_limits<std::int64_t>::min();
  std::uint64_t last_line = 0;
  std::uint64_t lineno = 1;
  std::size_t pos = nl + 1;
  while (pos < text.size()) {
    ++lineno;
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      log.incomplete_tail = true;
      issue(lineno, "incomplete last line (" + std::to_string(text.size() - pos) +
                        " bytes, no newline): a write cut short, dropped");
      break;
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line[0] == '#') continue;

    if (auto m = parser.split(line); !m.empty()) {
      issue(lineno, std::move(m));
      continue;
    }
    auto t = parse_nonneg(parser.time());
    if (!t) {
      issue(lineno, "time " + quote(parser.time()) + " is not a non-negative decimal int64 (ns)");
      continue;
    }
    if (!is_name(parser.name())) {
      issue(lineno, "bad event name " + quote(parser.name()));
      continue;
    }
    if (auto m = take_record(parser, *t, lineno, log); !m.empty()) {
      issue(lineno, std::move(m));
      continue;
    }
    if (*t < last_t)
      issue(lineno, "time " + std::to_string(*t) + " ns is earlier than " + std::to_string(last_t) +
                        " ns at line " + std::to_string(last_line) + " (kept)");
    last_t = *t;
    last_line = lineno;
  }
  return log;
}

Result<MarkerLog> read_marker_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Error{Errc::not_found, path.string() + ": no such marker file"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::io_error, path.string() + ": cannot open marker file"};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{Errc::io_error, path.string() + ": read failed"};
  return parse_markers(ss.view(), path.string());
}

std::string MarkerFormatter::header(const std::vector<std::pair<std::string, std::string>>& kv,
                                    std::string_view clock) {
  std::string out(kMagic);
  out += ' ';
  append_int(out, kMarkerFormatVersion);
  out += " clock=";
  out += encode_value(clock);
  for (const auto& [k, v] : kv) {
    if (k == "clock") continue;  // the clock argument names it
    out += ' ';
    out += k;
    out += '=';
    out += encode_value(v);
  }
  out += '\n';
  return out;
}

std::string MarkerFormatter::event(const MarkerEvent& e) {
  std::string out;
  append_int(out, e.t_ns);
  out += ' ';
  out += kind_name(e.kind);
  auto str = [&](std::string_view key, std::string_view v) {
    out += ' ';
    out += key;
    out += '=';
    out += encode_value(v);
  };
  auto num = [&](std::string_view key, std::int64_t v) {
    out += ' ';
    out += key;
    out += '=';
    append_int(out, v);
  };
  switch (e.kind) {
    case MarkerKind::run_start:
      str("id", e.label);
      break;
    case MarkerKind::run_end:
      str("status", e.label);
      break;
    case MarkerKind::load_start:
      str("model", e.label);
      break;
    case MarkerKind::load_end:
      break;
    case MarkerKind::prefill_start:
    case MarkerKind::prefill_end:
      num("tokens", e.index);
      break;
    case MarkerKind::token:
      num("index", e.index);
      break;
    case MarkerKind::sync_start:
      out += " code=";
      append_code(out, e.code);
      num("bits", e.bits);
      num("chip_ns", e.chip_ns);
      break;
    case MarkerKind::sync_end:
      out += " code=";
      append_code(out, e.code);
      break;
    case MarkerKind::user:
      str("name", e.label);
      if (!std::isnan(e.value)) {
        char buf[32];
        auto [p, ec] = std::to_chars(buf, buf + sizeof buf, e.value);
        (void)ec;
        out += " value=";
        out.append(buf, p);
      }
      if (!e.text.empty()) str("text", e.text);
      break;
  }
  for (const auto& [k, v] : e.extra) {
    out += ' ';
    out += k;
    out += '=';
    out += v;
  }
  out += '\n';
  return out;
}

std::string MarkerFormatter::clock(const ClockTriple& c) {
  std::string out;
  append_int(out, c.mono_ns);
  out += " clock boot=";
  append_int(out, c.boot_ns);
  out += " real=";
  append_int(out, c.real_ns);
  out += '\n';
  return out;
}

}  // namespace meltrig::targets
