// The sweep journal and catalog: see journal.hpp.
#include "meltrig/rig/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace meltrig::rig {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "meltrig-sweep-journal";

/// NaN and infinities are not JSON numbers: stored as null, read back as NaN.
json num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}
double num(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || !it->is_number() ? std::nan("") : it->get<double>();
}

json to_json(const JournalEntry& e) {
  const RunMetrics& m = e.metrics;
  return {{"order", e.run.order},
          {"id", e.run.id},
          {"device", e.run.device},
          {"workload", e.run.workload},
          {"model", e.run.model},
          {"repetition", e.run.repetition},
          {"seed", e.run.seed},
          {"state", state_name(e.state)},
          {"file", e.file},
          {"attempts", e.attempts},
          {"partials", e.partials},
          {"note", e.note},
          {"finished_utc", e.finished_utc},
          {"metrics",
           {{"duration_s", num(m.duration_s)},
            {"energy_j", num(m.energy_j)},
            {"mean_power_w", num(m.mean_power_w)},
            {"samples", m.samples},
            {"lost_samples", m.lost_samples},
            {"tokens", m.tokens},
            {"tok_s", num(m.tok_s)},
            {"j_per_token", num(m.j_per_token)},
            {"j_per_token_net", num(m.j_per_token_net)},
            {"baseline_w", num(m.baseline_w)},
            {"sync_method", m.sync_method},
            {"sync_bound_s", num(m.sync_bound_s)},
            {"start_temp_c", num(m.start_temp_c)},
            {"usb_cut", m.usb_cut},
            {"error", m.error}}}};
}

RunState state_of(const std::string& s) {
  for (RunState r : {RunState::pending, RunState::running, RunState::complete, RunState::failed})
    if (state_name(r) == s) return r;
  return RunState::pending;
}

JournalEntry from_json(const json& j) {
  JournalEntry e;
  e.run.order = j.at("order").get<std::size_t>();
  e.run.id = j.at("id").get<std::string>();
  e.run.device = j.at("device").get<std::string>();
  e.run.workload = j.at("workload").get<std::string>();
  e.run.model = j.at("model").get<std::string>();
  e.run.repetition = j.at("repetition").get<int>();
  e.run.seed = j.at("seed").get<std::uint64_t>();
  e.state = state_of(j.at("state").get<std::string>());
  e.file = j.at("file").get<std::string>();
  e.attempts = j.at("attempts").get<int>();
  e.partials = j.at("partials").get<std::vector<std::string>>();
  e.note = j.at("note").get<std::string>();
  e.finished_utc = j.at("finished_utc").get<std::string>();
  const json& m = j.at("metrics");
  RunMetrics& r = e.metrics;
  r.duration_s = num(m, "duration_s");
  r.energy_j = num(m, "energy_j");
  r.mean_power_w = num(m, "mean_power_w");
  r.samples = m.at("samples").get<std::uint64_t>();
  r.lost_samples = m.at("lost_samples").get<std::uint64_t>();
  r.tokens = m.at("tokens").get<std::uint64_t>();
  r.tok_s = num(m, "tok_s");
  r.j_per_token = num(m, "j_per_token");
  r.j_per_token_net = num(m, "j_per_token_net");
  r.baseline_w = num(m, "baseline_w");
  r.sync_method = m.at("sync_method").get<std::string>();
  r.sync_bound_s = num(m, "sync_bound_s");
  r.start_temp_c = num(m, "start_temp_c");
  r.usb_cut = m.at("usb_cut").get<bool>();
  r.error = m.at("error").get<std::string>();
  return e;
}

std::string cell(double v) {
  if (!std::isfinite(v)) return "";
  char b[40];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string quote(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s)
    q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

Error io(const std::filesystem::path& p, const char* what) {
  return Error{Errc::io_error, p.string() + ": " + what + ": " + std::strerror(errno)};
}

}  // namespace

std::string_view state_name(RunState s) {
  switch (s) {
    case RunState::pending:
      return "pending";
    case RunState::running:
      return "running";
    case RunState::complete:
      return "complete";
    case RunState::failed:
      return "failed";
  }
  return "pending";
}

JournalEntry* Journal::find(std::string_view id) {
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const JournalEntry& e) { return e.run.id == id; });
  return it == entries.end() ? nullptr : &*it;
}

Result<Journal> Journal::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::io_error, path.string() + ": cannot open"};
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kFormat)
    return Error{Errc::parse_error, path.string() + ": not a meltrig sweep journal"};
  Journal out;
  try {
    out.plan_digest = j.at("plan_digest").get<std::string>();
    out.seed = j.at("seed").get<std::uint64_t>();
    out.shard = j.at("shard").get<std::string>();
    for (const json& e : j.at("runs"))
      out.entries.push_back(from_json(e));
  } catch (const json::exception& e) {
    return Error{Errc::parse_error, path.string() + ": " + e.what()};
  }
  return out;
}

Result<void> Journal::save(const std::filesystem::path& path) const {
  json runs = json::array();
  for (const JournalEntry& e : entries)
    runs.push_back(to_json(e));
  json j = {{"format", kFormat}, {"version", 1},   {"plan_digest", plan_digest},
            {"seed", seed},      {"shard", shard}, {"runs", std::move(runs)}};
  return write_atomically(path, j.dump(1) + "\n");
}

Result<void> write_atomically(const std::filesystem::path& path, std::string_view text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io(tmp, "cannot create");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return io(tmp, "write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return io(tmp, "fsync failed");
  }
  if (::close(fd) != 0) return io(tmp, "close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io(path, "rename failed");
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::string catalog_csv(const std::vector<JournalEntry>& entries) {
  CsvTable t;
  t.header = {"order",           "run_id",       "device",      "workload",     "model",
              "repetition",      "seed",         "state",       "file",         "attempts",
              "partials",        "finished_utc", "duration_s",  "samples",      "lost_samples",
              "energy_j",        "mean_power_w", "tokens",      "tok_s",        "j_per_token",
              "j_per_token_net", "baseline_w",   "sync_method", "sync_bound_s", "start_temp_c",
              "usb_cut",         "note"};
  std::vector<const JournalEntry*> sorted;
  for (const JournalEntry& e : entries)
    sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->run.order < b->run.order; });
  for (const JournalEntry* e : sorted) {
    const RunMetrics& m = e->metrics;
    const bool done = e->state == RunState::complete;
    std::string partials;
    for (const auto& p : e->partials)
      partials += (partials.empty() ? "" : ";") + p;
    auto metric = [done](double v) { return done ? cell(v) : std::string(); };
    t.rows.push_back({std::to_string(e->run.order),
                      e->run.id,
                      e->run.device,
                      e->run.workload,
                      e->run.model,
                      std::to_string(e->run.repetition),
                      std::to_string(e->run.seed),
                      std::string(state_name(e->state)),
                      done ? e->file : "",
                      std::to_string(e->attempts),
                      partials,
                      e->finished_utc,
                      metric(m.duration_s),
                      done ? std::to_string(m.samples) : "",
                      done ? std::to_string(m.lost_samples) : "",
                      metric(m.energy_j),
                      metric(m.mean_power_w),
                      done ? std::to_string(m.tokens) : "",
                      metric(m.tok_s),
                      metric(m.j_per_token),
                      metric(m.j_per_token_net),
                      metric(m.baseline_w),
                      done ? m.sync_method : "",
                      metric(m.sync_bound_s),
                      metric(m.start_temp_c),
                      done ? (m.usb_cut ? "1" : "0") : "",
                      e->note.empty() ? m.error : e->note});
  }
  return to_csv(t);
}

std::string to_csv(const CsvTable& t) {
  std::string out;
  auto line = [&out](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i)
      out += (i ? "," : "") + quote(cells[i]);
    out += "\n";
  };
  line(t.header);
  for (const auto& r : t.rows)
    line(r);
  return out;
}

Result<CsvTable> parse_csv(std::string_view text, const std::string& source) {
  std::vector<std::vector<std::string>> lines;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  std::size_t line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        line += c == '\n' ? 1 : 0;
        field += c;
      }
    } else if (c == '"') {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) row.push_back(std::move(field));
      if (!row.empty()) lines.push_back(std::move(row));
      row.clear();
      field.clear();
      any = false;
      ++line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted)
    return Error{Errc::parse_error, source + ":" + std::to_string(line) + ": unterminated quote"};
  if (any || !field.empty()) row.push_back(std::move(field));
  if (!row.empty()) lines.push_back(std::move(row));
  if (lines.empty()) return Error{Errc::parse_error, source + ":1: empty file, no header"};
  CsvTable t;
  t.header = std::move(lines.front());
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].size() != t.header.size())
      return Error{Errc::parse_error, source + ": row " + std::to_string(i + 1) + " has " +
                                          std::to_string(lines[i].size()) + " cells, the header " +
                                          std::to_string(t.header.size())};
    t.rows.push_back(std::move(lines[i]));
  }
  return t;
}

namespace {

/// `cell` (paths relative to `from`, `;`-separated) made relative to `to`.
std::string rebase_paths(const std::string& cell, const std::filesystem::path& from,
                         const std::filesystem::path& to) {
  std::string out, item;
  std::istringstream in(cell);
  while (std::getline(in, item, ';')) {
    if (item.empty()) continue;
    const auto abs = std::filesystem::absolute(from / item).lexically_normal();
    if (!out.empty()) out += ';';
    out += abs.lexically_relative(std::filesystem::absolute(to).lexically_normal()).string();
  }
  return out;
}

void rebase_row(std::vector<std::string>& row, const std::vector<std::string>& header,
                const std::filesystem::path& from, const std::filesystem::path& to) {
  for (const char* name : {"file", "partials"}) {
    const auto c =
        static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
    if (c < row.size() && !row[c].empty()) row[c] = rebase_paths(row[c], from, to);
  }
}

}  // namespace

Result<CsvTable> merge_catalogs(const std::vector<std::filesystem::path>& files,
                                const std::filesystem::path& output) {
  CsvTable out;
  std::map<std::string, std::pair<std::size_t, std::string>> seen;  // run id -> row, file
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return Error{Errc::io_error, f.string() + ": cannot open"};
    std::ostringstream ss;
    ss << in.rdbuf();
    auto t = parse_csv(ss.str(), f.string());
    if (!t) return t.error();
    if (out.header.empty()) out.header = t->header;
    if (t->header != out.header)
      return Error{Errc::invalid_argument,
                   f.string() + ": its columns differ from " + files.front().string() + "'s"};
    const auto id_col =
        std::find(out.header.begin(), out.header.end(), "run_id") - out.header.begin();
    const auto state_col =
        std::find(out.header.begin(), out.header.end(), "state") - out.header.begin();
    if (static_cast<std::size_t>(id_col) >= out.header.size() ||
        static_cast<std::size_t>(state_col) >= out.header.size())
      return Error{Errc::invalid_argument,
                   f.string() + ": not a sweep catalog (no run_id/state column)"};
    for (auto& row : t->rows) {
      if (!output.empty()) rebase_row(row, out.header, f.parent_path(), output.parent_path());
      const std::string id = row[static_cast<std::size_t>(id_col)];
      auto it = seen.find(id);
      if (it == seen.end()) {
        seen[id] = {out.rows.size(), f.string()};
        out.rows.push_back(std::move(row));
        continue;
      }
      auto& kept = out.rows[it->second.first];
      const bool kept_done = kept[static_cast<std::size_t>(state_col)] == "complete";
      const bool new_done = row[static_cast<std::size_t>(state_col)] == "complete";
      if (kept_done && new_done)
        return Error{Errc::invalid_argument, "run " + id + " is complete in both " +
                                                 it->second.second + " and " + f.string()};
      if (new_done) {
        kept = std::move(row);
        it->second.second = f.string();
      }
    }
  }
  std::stable_sort(out.rows.begin(), out.rows.end(), [](const auto& a, const auto& b) {
    return std::strtoull(a[0].c_str(), nullptr, 10) < std::strtoull(b[0].c_str(), nullptr, 10);
  });
  return out;
}

}  // namespace meltrig::rig
