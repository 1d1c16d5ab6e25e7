// Comparison with /truth (truth_compare.hpp): read only after the estimates are made.
#include "meltrig/analysis/truth_compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "meltrig/dataset/group_store.hpp"

namespace meltrig::analysis {

namespace {

const std::vector<double>* f64(const dataset::GroupData* g, const char* name) {
  const dataset::Column* c = g != nullptr ? g->column(name) : nullptr;
  return c != nullptr ? std::get_if<std::vector<double>>(&c->values) : nullptr;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

std::optional<dataset::GroupData> truth_of(const std::filesystem::path& path) {
  auto g = dataset::read_group(path, "truth");
  if (!g || !*g) return std::nullopt;
  return std::move(**g);
}

std::vector<double> token_errors(const dataset::GroupData& t, const Analysis& a) {
  const dataset::GroupData* tok = t.group("tokens");
  const auto *rep = f64(tok, "rep"), *idx = f64(tok, "index"), *e = f64(tok, "supply_energy_j");
  std::vector<double> out;
  if (rep == nullptr || idx == nullptr || e == nullptr) return out;
  std::map<std::pair<int, std::int64_t>, double> truth;
  for (std::size_t i = 0; i < std::min({rep->size(), idx->size(), e->size()}); ++i)
    truth[{static_cast<int>((*rep)[i]), static_cast<std::int64_t>((*idx)[i])}] = (*e)[i];
  for (const TokenResult& r : a.run.tokens) {
    auto it = truth.find({r.repetition, r.index});
    if (it != truth.end() && it->second > 0)
      out.push_back(100.0 * std::abs(r.stats.energy_j - it->second) / it->second);
  }
  return out;
}

}  // namespace

std::vector<double> token_errors_pct(const std::filesystem::path& path, const Analysis& a) {
  auto t = truth_of(path);
  return t ? token_errors(*t, a) : std::vector<double>{};
}

std::string compare_with_truth(const std::filesystem::path& path, const Analysis& a) {
  auto t = truth_of(path);
  if (!t) return "  truth: " + path.string() + " has no /truth group\n";
  std::ostringstream out;
  const std::vector<double> err = token_errors(*t, a);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "  against /truth: %zu tokens matched, energy error median %.3f%%, p99 %.3f%%, "
                "max %.3f%%\n",
                err.size(), quantile(err, 0.5), quantile(err, 0.99), quantile(err, 1.0));
  out << buf;
  const dataset::GroupData* ph = t->group("phases");
  const auto *code = f64(ph, "phase"), *e = f64(ph, "supply_energy_j");
  std::vector<std::string> names;
  std::stringstream ns(ph != nullptr ? ph->str("phase_names").value_or("") : "");
  for (std::string n; std::getline(ns, n, ',');)
    names.push_back(n);
  for (const char* want : {"load", "prefill", "decode"}) {
    double truth = 0, est = 0;
    for (std::size_t i = 0; code != nullptr && e != nullptr && i < code->size(); ++i) {
      const auto k = static_cast<std::size_t>((*code)[i]);
      if (k < names.size() && names[k] == want) truth += (*e)[i];
    }
    for (const RepResult& r : a.run.reps)
      if (const PhaseResult* p = r.phase(want); p != nullptr && p->present)
        est += p->stats.energy_j;
    if (truth <= 0) continue;
    std::snprintf(buf, sizeof buf, "  %-8s %.4f J, truth %.4f J (%+.3f%%)\n", want, est, truth,
                  100.0 * (est - truth) / truth);
    out << buf;
  }
  return out.str();
}

}  // namespace meltrig::analysis
