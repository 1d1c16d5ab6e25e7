// Energy over windows: see energy.hpp.
#include "meltrig/analysis/energy.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "meltrig/dataset/trapezoid.hpp"

namespace meltrig::analysis {

WindowEnergy integrate_power(std::span<const float> p, double rate_hz, double t0, double t1) {
  WindowEnergy out;
  if (p.size() < 2 || !(t1 > t0) || rate_hz <= 0) return out;
  const double last_t = static_cast<double>(p.size() - 1) / rate_hz;
  t0 = std::clamp(t0, 0.0, last_t);
  t1 = std::clamp(t1, 0.0, last_t);
  out.seconds = t1 - t0;
  if (!(t1 > t0)) return out;
  WindowIntegrator wi(rate_hz, {Window{t0, t1}});
  (void)wi.add(0, p);
  wi.finish();
  out.joules = wi.window(0).energy_j;
  out.missing_samples = wi.window(0).missing_samples;
  return out;
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void erase_value(std::vector<std::uint32_t>& v, std::uint32_t x) {
  auto it = std::find(v.begin(), v.end(), x);
  if (it != v.end()) v.erase(it);
}

}  // namespace

WindowStats between(const CumState& a, const CumState& b, double duration_s) {
  WindowStats w;
  w.duration_s = duration_s;
  w.energy_j = b.energy_j - a.energy_j;
  w.covered_s = std::max(0.0, b.covered_s - a.covered_s);
  w.missing_samples = b.missing >= a.missing ? b.missing - a.missing : 0;
  return w;
}

WindowIntegrator::WindowIntegrator(double rate_hz, std::vector<Window> windows,
                                   std::vector<double> probes, double probe_radius_s)
    : rate_(rate_hz), windows_(std::move(windows)) {
  stats_.resize(windows_.size());
  start_state_.resize(windows_.size());
  edges_.reserve(2 * (windows_.size() + probes.size()));
  for (std::size_t i = 0; i < windows_.size(); ++i) {
    Window& w = windows_[i];
    if (!std::isfinite(w.t0_s) || !std::isfinite(w.t1_s)) {  // never seen: all gap, no data
      w.t0_s = w.t1_s = std::numeric_limits<double>::infinity();
    }
    if (!(w.t1_s >= w.t0_s)) w.t1_s = w.t0_s;
    auto id = static_cast<std::uint32_t>(i);
    edges_.push_back({w.t0_s, id, 0});
    edges_.push_back({w.t1_s, id, 1});
  }
  snippets_.resize(probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    if (!std::isfinite(probes[i])) probes[i] = std::numeric_limits<double>::infinity();
    snippets_[i].t0_s = probes[i] - probe_radius_s;
    snippets_[i].t1_s = probes[i] + probe_radius_s;
    auto id = static_cast<std::uint32_t>(i);
    edges_.push_back({snippets_[i].t0_s, id, 2});
    edges_.push_back({snippets_[i].t1_s, id, 3});
  }
  std::stable_sort(edges_.begin(), edges_.end(), [](const Edge& a, const Edge& b) {
    return a.t < b.t || (a.t == b.t && a.kind < b.kind);
  });
}

void WindowIntegrator::on_edge(const Edge& e, const CumState& s, double v_at) {
  switch (e.kind) {
    case 0:
      start_state_[e.id] = s;
      stats_[e.id].peak_w = v_at;
      active_.push_back(e.id);
      break;
    case 1: {
      double peak = std::fmax(stats_[e.id].peak_w, v_at);
      const Window& w = windows_[e.id];
      stats_[e.id] = between(start_state_[e.id], s, w.t1_s > w.t0_s ? w.t1_s - w.t0_s : 0.0);
      stats_[e.id].peak_w = peak;
      erase_value(active_, e.id);
      break;
    }
    case 2:
      if (have_prev_) {  // keep the sample before the range, so any t inside can be integrated
        Snippet& sn = snippets_[e.id];
        sn.first_index = next_index_ - 1;
        sn.first_state = cum_;
        sn.power_w.reserve(static_cast<std::size_t>((sn.t1_s - sn.t0_s) * rate_) + 4);
        sn.power_w.push_back(static_cast<float>(prev_v_));
      }
      active_probes_.push_back(e.id);
      break;
    default:
      closing_probes_.push_back(e.id);
      break;
  }
}

void WindowIntegrator::pass_edges(double t_limit, bool inclusive, double t, double v, bool valid) {
  while (next_edge_ < edges_.size()) {
    const Edge& e = edges_[next_edge_];
    if (inclusive ? e.t > t_limit : e.t >= t_limit) break;
    CumState s = cum_;
    double v_at = kNaN;
    if (have_prev_ && e.t > prev_t_ && t > prev_t_) {
      double f = std::min(1.0, (e.t - prev_t_) / (t - prev_t_));
      if (valid && !std::isnan(prev_v_)) {
        v_at = prev_v_ + f * (v - prev_v_);
        s.energy_j += dataset::trapezoid_area(prev_v_, v_at, e.t - prev_t_);
        s.covered_s += e.t - prev_t_;
      }
    } else if (have_prev_ && e.t <= prev_t_) {
      v_at = prev_v_;
    }
    on_edge(e, s, v_at);
    ++next_edge_;
  }
}

void WindowIntegrator::step(std::uint64_t index, float value, std::uint64_t weight) {
  const double t = static_cast<double>(index) / rate_;
  const double v = value;
  const bool valid = !std::isnan(v);
  pass_edges(t, true, t, v, valid);
  if (have_prev_ && valid && !std::isnan(prev_v_)) {
    cum_.energy_j += dataset::trapezoid_area(prev_v_, v, t - prev_t_);
    cum_.covered_s += t - prev_t_;
  }
  if (!valid) cum_.missing += weight;
  if (valid) {
    for (std::uint32_t w : active_)
      stats_[w].peak_w = std::fmax(stats_[w].peak_w, v);
  }
  for (std::uint32_t p : active_probes_) {
    Snippet& sn = snippets_[p];
    if (sn.power_w.empty()) {
      sn.first_index = index;
      sn.first_state = cum_;
    } else if (weight != 1) {
      sn.weights.emplace_back(sn.power_w.size(), weight);
    }
    sn.power_w.push_back(value);
  }
  for (std::uint32_t p : closing_probes_)
    erase_value(active_probes_, p);
  closing_probes_.clear();
  have_prev_ = true;
  prev_t_ = t;
  prev_v_ = v;
  next_index_ = index + 1;
}

Result<void> WindowIntegrator::add(std::uint64_t start_index, std::span<const float> p) {
  if (finished_) return make_error(Errc::invalid_argument, "samples added after finish()");
  if (start_index < next_index_) {
    return make_error(Errc::invalid_argument,
                      "chunk starting at sample " + std::to_string(start_index) +
                          " goes back before sample " + std::to_string(next_index_));
  }
  if (p.empty()) return {};
  if (start_index > next_index_) {  // absent samples: one NaN stands for all of them
    step(start_index - 1, std::numeric_limits<float>::quiet_NaN(), start_index - next_index_);
  }
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (have_prev_ && active_probes_.empty() && closing_probes_.empty()) {
      i += run_between_edges(start_index + i, p.subspan(i));
      if (i == p.size()) break;
    }
    step(start_index + i, p[i], 1);
  }
  return {};
}

std::size_t WindowIntegrator::run_between_edges(std::uint64_t first, std::span<const float> p) {
  // The samples before the next edge, with no snippet being filled: step() would only extend
  // the running integrals (same operations, same order: the result is bit-identical) and the
  // open windows' peaks, which take the run's maximum once.
  const double next_t =
      next_edge_ < edges_.size() ? edges_[next_edge_].t : std::numeric_limits<double>::infinity();
  double energy = cum_.energy_j, covered = cum_.covered_s, pv = prev_v_, pt = prev_t_;
  double peak = kNaN;
  std::uint64_t missing = cum_.missing;
  std::size_t k = 0;
  for (; k < p.size(); ++k) {
    const double t = static_cast<double>(first + k) / rate_;
    if (t >= next_t) break;
    const double v = p[k];
    if (std::isnan(v)) {
      ++missing;
    } else {
      if (!std::isnan(pv)) {
        energy += dataset::trapezoid_area(pv, v, t - pt);
        covered += t - pt;
      }
      peak = std::fmax(peak, v);
    }
    pv = v;
    pt = t;
  }
  if (k == 0) return 0;
  cum_ = {energy, covered, missing};
  prev_v_ = pv;
  prev_t_ = pt;
  next_index_ = first + k;
  if (!std::isnan(peak))
    for (std::uint32_t w : active_)
      stats_[w].peak_w = std::fmax(stats_[w].peak_w, peak);
  return k;
}

void WindowIntegrator::finish() {
  if (finished_) return;
  finished_ = true;
  const double inf = std::numeric_limits<double>::infinity();
  pass_edges(inf, true, have_prev_ ? prev_t_ : 0.0, kNaN, false);
}

CumState state_after(const Snippet& s, double rate_hz, std::size_t j) {
  // The stream's own operations in its order (WindowIntegrator::step): bit-identical states.
  CumState c = s.first_state;
  std::size_t w = 0;
  double pt = static_cast<double>(s.first_index) / rate_hz;
  for (std::size_t k = 1; k <= j && k < s.power_w.size(); ++k) {
    const double t = static_cast<double>(s.first_index + k) / rate_hz;
    const double a = s.power_w[k - 1], b = s.power_w[k];
    if (std::isnan(b)) {
      while (w < s.weights.size() && s.weights[w].first < k)
        ++w;
      c.missing += w < s.weights.size() && s.weights[w].first == k ? s.weights[w].second : 1;
    } else if (!std::isnan(a)) {
      c.energy_j += dataset::trapezoid_area(a, b, t - pt);
      c.covered_s += t - pt;
    }
    pt = t;
  }
  return c;
}

CumState state_at(const Snippet& s, double rate_hz, double t) {
  if (s.power_w.empty()) return {};
  auto time_of = [&](std::size_t j) { return static_cast<double>(s.first_index + j) / rate_hz; };
  double x = t * rate_hz - static_cast<double>(s.first_index);
  if (!(x > 0.0)) return s.first_state;
  auto j = static_cast<std::size_t>(std::floor(x));
  if (j + 1 >= s.power_w.size()) return state_after(s, rate_hz, s.power_w.size() - 1);
  CumState out = state_after(s, rate_hz, j);
  double a = s.power_w[j], b = s.power_w[j + 1];
  if (!std::isnan(a) && !std::isnan(b)) {
    double dt = t - time_of(j);
    double f = x - static_cast<double>(j);
    out.energy_j += dataset::trapezoid_area(a, a + f * (b - a), dt);
    out.covered_s += dt;
  }
  return out;
}

}  // namespace meltrig::analysis
