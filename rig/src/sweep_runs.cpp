// The runs of a sweep and their order, and shards (sweep.hpp).
#include <algorithm>

#include "meltrig/rig/sweep.hpp"

namespace meltrig::rig {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
void shuffle(std::vector<T>& v, std::uint64_t& state) {
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(splitmix64(state) % i);
    std::swap(v[i - 1], v[j]);
  }
}

std::uint64_t run_seed(std::uint64_t seed, const std::string& id) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return splitmix64(h) & 0x7fffffffffffffffULL;
}

struct Config {
  const PlanDevice* device;
  const PlanWorkload* workload;
};

}  // namespace

Result<Shard> Shard::parse(std::string_view text) {
  Shard s;
  const auto slash = text.find('/');
  auto bad = [&] {
    return Error{Errc::invalid_argument,
                 "--shard " + std::string(text) + ": expected I/N with 1 <= I <= N"};
  };
  if (slash == std::string_view::npos) return bad();
  try {
    std::size_t used = 0;
    s.index = std::stoi(std::string(text.substr(0, slash)), &used);
    if (used != slash) return bad();
    const std::string n(text.substr(slash + 1));
    s.count = std::stoi(n, &used);
    if (used != n.size()) return bad();
  } catch (...) {
    return bad();
  }
  if (s.count < 1 || s.index < 1 || s.index > s.count) return bad();
  return s;
}

std::vector<SweepRun> expand_runs(const Plan& plan, std::uint64_t seed, const Shard& shard) {
  std::vector<Config> configs;
  for (const PlanDevice& d : plan.devices)
    for (const PlanWorkload& w : plan.workloads)
      configs.push_back({&d, &w});
  std::uint64_t state = seed;
  std::vector<std::pair<Config, int>> order;
  if (plan.order == RunOrder::interleaved) {
    for (int r = 0; r < plan.repetitions; ++r) {
      std::vector<Config> c = configs;
      if (plan.shuffle) shuffle(c, state);
      for (const Config& x : c)
        order.emplace_back(x, r);
    }
  } else {
    std::vector<Config> c = configs;
    if (plan.shuffle) shuffle(c, state);
    for (const Config& x : c)
      for (int r = 0; r < plan.repetitions; ++r)
        order.emplace_back(x, r);
  }
  std::vector<SweepRun> runs;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto& [c, rep] = order[i];
    const auto dev_index = static_cast<int>(c.device - plan.devices.data());
    if (dev_index % shard.count != shard.index - 1) continue;
    SweepRun r;
    r.order = i;
    r.device = c.device->name;
    r.workload = c.workload->name;
    r.model = c.workload->model;
    r.repetition = rep;
    r.id = r.device + "." + r.workload + ".r" + std::to_string(rep);
    r.seed = run_seed(seed, r.id);
    runs.push_back(std::move(r));
  }
  return runs;
}

std::filesystem::path shard_directory(const std::filesystem::path& output, const Shard& shard) {
  if (shard.whole()) return output;
  return output / ("shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count));
}

}  // namespace meltrig::rig
