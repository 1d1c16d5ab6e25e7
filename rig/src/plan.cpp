// Plan TOML: see plan.hpp and docs/plan.md. toml++ header-only with exceptions off (as the
// scenario reader): every failure is a value carrying the source line.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include "meltrig/rig/plan.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {
namespace {

std::uint32_t line_of(const toml::node& n) {
  return n.source().begin.line;
}

/// The first problem found, as "SOURCE:LINE: KEY: problem"; later ones are dropped.
struct Problems {
  std::string source;
  std::optional<Error> first;
  void add(std::uint32_t line, const std::string& key, const std::string& what) {
    if (!first)
      first =
          Error{Errc::parse_error, source + ":" + std::to_string(line) + ": " + key + ": " + what};
  }
  bool any() const { return first.has_value(); }
};

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

/// One TOML table under a dotted path; records the keys read so leftovers are typos.
class Keys {
 public:
  Keys(Problems& p, const toml::table* t, std::string path, std::uint32_t line)
      : p_(p), t_(t), path_(std::move(path)), line_(line) {}

  std::string at(std::string_view k) const {
    return path_.empty() ? std::string(k) : path_ + "." + std::string(k);
  }
  std::uint32_t line() const { return line_; }
  bool exists() const { return t_ != nullptr; }
  const toml::table* table() const { return t_; }

  const toml::node* get(std::string_view k) {
    read_.insert(std::string(k));
    return t_ ? t_->get(k) : nullptr;
  }
  std::uint32_t line_of_key(std::string_view k) {
    const toml::node* n = t_ ? t_->get(k) : nullptr;
    return n ? line_of(*n) : line_;
  }

  double number(std::string_view k, double def, double lo, double hi) {
    const toml::node* n = get(k);
    if (!n) return def;
    auto v = n->value<double>();
    if (!n->is_number() || !v) return bad(*n, k, "expected a number"), def;
    if (!std::isfinite(*v) || *v < lo || *v > hi)
      return bad(*n, k, num(*v) + " is out of range [" + num(lo) + ", " + num(hi) + "]"), def;
    return *v;
  }
  std::int64_t integer(std::string_view k, std::int64_t def, std::int64_t lo, std::int64_t hi) {
    const toml::node* n = get(k);
    if (!n) return def;
    if (!n->is_integer()) return bad(*n, k, "expected an integer"), def;
    const std::int64_t v = n->as_integer()->get();
    if (v < lo || v > hi)
      return bad(*n, k,
                 std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]"),
             def;
    return v;
  }
  bool boolean(std::string_view k, bool def) {
    const toml::node* n = get(k);
    if (!n) return def;
    if (!n->is_boolean()) return bad(*n, k, "expected true or false"), def;
    return n->as_boolean()->get();
  }
  std::string string(std::string_view k, std::string def, std::vector<std::string> allowed = {}) {
    const toml::node* n = get(k);
    if (!n) return def;
    if (!n->is_string()) return bad(*n, k, "expected a string"), def;
    std::string v = n->as_string()->get();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed)
        list += (list.empty() ? "" : ", ") + a;
      return bad(*n, k, "\"" + v + "\" is not one of " + list), def;
    }
    return v;
  }
  std::string required_string(std::string_view k) {
    if (t_ && !t_->get(k)) p_.add(line_, at(k), "required key is missing");
    return string(k, "");
  }
  std::vector<std::string> strings(std::string_view k) {
    std::vector<std::string> out;
    const toml::node* n = get(k);
    if (!n) return out;
    const toml::array* a = n->as_array();
    if (!a) return bad(*n, k, "expected an array of strings"), out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (!e.is_string()) {
        p_.add(line_of(e), at(k) + "[" + std::to_string(i) + "]", "expected a string");
        return out;
      }
      out.push_back(e.as_string()->get());
    }
    return out;
  }
  /// An array of numbers in [lo, hi], ascending.
  std::vector<double> numbers(std::string_view k, double lo, double hi) {
    std::vector<double> out;
    const toml::node* n = get(k);
    if (!n) return out;
    const toml::array* a = n->as_array();
    if (!a) return bad(*n, k, "expected an array of numbers"), out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      auto v = e.value<double>();
      if (!e.is_number() || !v || !std::isfinite(*v) || *v < lo || *v > hi ||
          (!out.empty() && *v <= out.back())) {
        p_.add(line_of(e), at(k) + "[" + std::to_string(i) + "]",
               "expected ascending numbers in [" + num(lo) + ", " + num(hi) + "]");
        return {};
      }
      out.push_back(*v);
    }
    return out;
  }
  std::vector<int> ints(std::string_view k) {
    std::vector<int> out;
    const toml::node* n = get(k);
    if (!n) return out;
    const toml::array* a = n->as_array();
    if (!a) return bad(*n, k, "expected an array of integers"), out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (!e.is_integer() || e.as_integer()->get() < 1 || e.as_integer()->get() > 64) {
        p_.add(line_of(e), at(k) + "[" + std::to_string(i) + "]", "expected a channel 1..64");
        return out;
      }
      out.push_back(static_cast<int>(e.as_integer()->get()));
    }
    return out;
  }
  /// A sub-table; absent: a reader of nothing.
  Keys sub(std::string_view k) {
    const toml::node* n = get(k);
    if (n && !n->is_table()) {
      bad(*n, k, "expected a table");
      n = nullptr;
    }
    return Keys(p_, n ? n->as_table() : nullptr, at(k), n ? line_of(*n) : line_);
  }
  /// Each entry of this table as a named sub-table.
  void each_table(const std::function<void(const std::string&, Keys&)>& f) {
    if (!t_) return;
    for (auto&& [k, v] : *t_) {
      const std::string name(k.str());
      read_.insert(name);
      if (!v.is_table()) {
        p_.add(line_of(v), at(name), "expected a table");
        return;
      }
      Keys s(p_, v.as_table(), at(name), line_of(v));
      f(name, s);
      s.finish();
    }
  }
  /// Reports the first key nobody read (a typo or a key of another table).
  void finish() {
    if (!t_) return;
    for (auto&& [k, v] : *t_) {
      if (read_.contains(std::string(k.str()))) continue;
      const std::uint32_t l = k.source().begin.line ? k.source().begin.line : line_of(v);
      p_.add(l, at(k.str()), "unknown key");
      return;
    }
  }

 private:
  void bad(const toml::node& n, std::string_view k, const std::string& what) {
    p_.add(line_of(n), at(k), what);
  }
  Problems& p_;
  const toml::table* t_;
  std::string path_;
  std::uint32_t line_;
  std::set<std::string> read_;
};

std::string digest_of(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
  return b;
}

/// A driver spec: parsed, driver known and of `kind` ("monitor", "relay"); PORT may be
/// "emulated" (a simulated bench starts the emulator).
void check_spec(Problems& p, std::uint32_t line, const std::string& key, const std::string& spec,
                std::string_view kind) {
  auto s = DeviceSpec::parse(spec);
  if (!s) return p.add(line, key, s.error().message);
  const DriverEntry* d = find_driver(s->driver);
  if (!d)
    return p.add(line, key, "unknown driver \"" + s->driver + "\" (meltrig devices lists them)");
  // A hub is a relay whose channels are ports.
  const bool relay_like = d->kind == "relay" || d->kind == "hub";
  if (kind == "monitor" ? d->kind != "monitor" : !relay_like)
    p.add(line, key,
          "\"" + s->driver + "\" is a " + std::string(d->kind) + " driver, not a " +
              std::string(kind));
}

void read_sweep(Keys k, Plan& plan) {
  plan.name = k.string("name", plan.name);
  plan.output = k.string("output", "sweep-" + plan.name);
  plan.seed = static_cast<std::uint64_t>(k.integer("seed", 1, 0, INT64_MAX));
  plan.repetitions = static_cast<int>(k.integer("repetitions", 1, 1, 100000));
  plan.order = k.string("order", "interleaved", {"interleaved", "blocked"}) == "blocked"
                   ? RunOrder::blocked
                   : RunOrder::interleaved;
  plan.shuffle = k.boolean("shuffle", false);
  plan.sync_method = k.string("sync", "provisional", {"provisional", "pulses", "probes"});
  plan.sim_speed = k.number("sim_speed", plan.sim_speed, 0.1, 1000.0);
  k.finish();
}

void read_switches(Keys k, std::vector<PlanSwitch>& out, const char* map_key, Problems& p) {
  k.each_table([&](const std::string& name, Keys& t) {
    PlanSwitch s;
    s.name = name;
    s.line = t.line();
    s.spec = t.required_string("spec");
    if (!s.spec.empty()) check_spec(p, t.line_of_key("spec"), t.at("spec"), s.spec, "relay");
    s.safe_on = t.ints("safe_on");
    Keys m = t.sub(map_key);
    std::map<int, std::string> taken;
    if (m.table()) {
      for (auto&& [dev, v] : *m.table()) {
        const std::string d(dev.str());
        const std::int64_t ch = m.integer(d, 0, 1, 64);
        if (ch == 0) continue;
        if (auto it = taken.find(static_cast<int>(ch)); it != taken.end()) {
          p.add(line_of(v), m.at(d),
                "channel " + std::to_string(ch) + " is already routed to " + it->second);
          continue;
        }
        taken[static_cast<int>(ch)] = d;
        s.channels[d] = static_cast<int>(ch);
        s.lines[d] = line_of(v);
      }
    }
    m.finish();
    out.push_back(std::move(s));
  });
  k.finish();
}

void read_rig(Keys k, Plan& plan, Problems& p) {
  Keys mon = k.sub("monitors");
  mon.each_table([&](const std::string& name, Keys& t) {
    PlanMonitor m{name, t.required_string("spec"), t.line()};
    if (!m.spec.empty()) check_spec(p, t.line_of_key("spec"), t.at("spec"), m.spec, "monitor");
    plan.monitors.push_back(std::move(m));
  });
  mon.finish();
  read_switches(k.sub("relays"), plan.relays, "routes", p);
  read_switches(k.sub("hubs"), plan.hubs, "ports", p);
  k.finish();
}

void read_devices(Keys k, Plan& plan, const std::filesystem::path& base) {
  k.each_table([&](const std::string& name, Keys& t) {
    PlanDevice d;
    d.name = name;
    d.line = t.line();
    d.target = t.required_string("target");
    const std::string scn = t.string("scenario", "");
    d.scenario_line = t.line_of_key("scenario");
    if (!scn.empty()) d.scenario = base / scn;
    d.monitor = t.string("monitor", "");
    d.supply_v = t.number("supply_v", d.supply_v, 0.5, 60.0);
    d.temperature_series = t.string("temperature_series", d.temperature_series);
    plan.devices.push_back(std::move(d));
  });
  k.finish();
}

void read_workloads(Keys k, Plan& plan) {
  k.each_table([&](const std::string& name, Keys& t) {
    PlanWorkload w;
    w.name = name;
    w.line = t.line();
    w.model = t.required_string("model");
    w.argv = t.strings("argv");
    w.prompts = t.strings("prompts");
    w.markers = t.string("markers", w.markers);
    w.timeout_s = t.number("timeout_s", w.timeout_s, 0.0, 1e7);
    w.idle_before_s = t.number("idle_before_s", w.idle_before_s, 0.0, 3600.0);
    w.idle_after_s = t.number("idle_after_s", w.idle_after_s, 0.0, 3600.0);
    Keys s = t.sub("sim");
    w.sim_prompt_tokens =
        static_cast<int>(s.integer("prompt_tokens", w.sim_prompt_tokens, 0, 1000000));
    w.sim_output_tokens =
        static_cast<int>(s.integer("output_tokens", w.sim_output_tokens, 1, 1000000));
    w.sim_throughput_scale = s.number("throughput_scale", 1.0, 0.01, 100.0);
    w.sim_power_scale = s.number("power_scale", 1.0, 0.01, 100.0);
    s.finish();
    plan.workloads.push_back(std::move(w));
  });
  k.finish();
}

void read_policies(Keys& top, Plan& plan) {
  Keys c = top.sub("cooldown");
  const std::string mode = c.string("mode", "none", {"none", "time", "temperature"});
  plan.cooldown.mode = mode == "time"          ? CooldownMode::time
                       : mode == "temperature" ? CooldownMode::temperature
                                               : CooldownMode::none;
  plan.cooldown.time_s = c.number("time_s", 0.0, 0.0, 86400.0);
  plan.cooldown.to_c = c.number("to_c", 0.0, -50.0, 150.0);
  plan.cooldown.timeout_s = c.number("timeout_s", plan.cooldown.timeout_s, 0.0, 86400.0);
  plan.cooldown.poll_s = c.number("poll_s", plan.cooldown.poll_s, 0.01, 3600.0);
  c.finish();
  Keys b = top.sub("baseline");
  plan.baseline.window_s = b.number("window_s", plan.baseline.window_s, 0.01, 3600.0);
  plan.baseline.guard_s = b.number("guard_s", plan.baseline.guard_s, 0.0, 3600.0);
  b.finish();
  Keys u = top.sub("usb_cut");
  plan.usb_cut.enabled = u.boolean("enabled", false);
  plan.usb_cut.settle_s = u.number("settle_s", plan.usb_cut.settle_s, 0.0, 600.0);
  plan.usb_cut.toggles_s = u.numbers("toggles_s", 0.0, 86400.0);
  u.finish();
}

/// Puts each device's relay channel and hub port on it; a device on two boards is an error.
void attach(const std::vector<PlanSwitch>& boards, Plan& plan, Problems& p, const char* what,
            std::string PlanDevice::*board, int PlanDevice::*channel) {
  for (const PlanSwitch& s : boards) {
    for (const auto& [dev, ch] : s.channels) {
      const std::string key = std::string("rig.") + what + "." + s.name + "." +
                              (board == &PlanDevice::relay ? "routes." : "ports.") + dev;
      const std::uint32_t line = s.lines.at(dev);
      auto it = std::find_if(plan.devices.begin(), plan.devices.end(),
                             [&](const PlanDevice& d) { return d.name == dev; });
      if (it == plan.devices.end()) {
        p.add(line, key, "unknown device \"" + dev + "\" (not a [devices." + dev + "] table)");
        continue;
      }
      if (!((*it).*board).empty()) {
        p.add(line, key, "device " + dev + " is already on " + (*it).*board);
        continue;
      }
      (*it).*board = s.name;
      (*it).*channel = ch;
    }
  }
}

/// Checks across tables: names that must exist, one monitor per device, sim vs real.
void cross_check(Plan& plan, Problems& p) {
  attach(plan.relays, plan, p, "relays", &PlanDevice::relay, &PlanDevice::relay_channel);
  attach(plan.hubs, plan, p, "hubs", &PlanDevice::hub, &PlanDevice::hub_port);
  if (plan.devices.empty()) p.add(1, "devices", "at least one [devices.NAME] table is required");
  if (plan.workloads.empty())
    p.add(1, "workloads", "at least one [workloads.NAME] table is required");
  if (plan.monitors.empty())
    p.add(1, "rig.monitors", "at least one [rig.monitors.NAME] is required");
  const bool sim = !plan.devices.empty() && plan.devices.front().target == "sim";
  for (PlanDevice& d : plan.devices) {
    const std::string k = "devices." + d.name;
    if (d.monitor.empty() && plan.monitors.size() == 1) d.monitor = plan.monitors.front().name;
    if (d.monitor.empty())
      p.add(d.line, k + ".monitor", "required when the rig has several monitors");
    else if (!plan.monitor(d.monitor))
      p.add(d.line, k + ".monitor", "unknown monitor \"" + d.monitor + "\"");
    if ((d.target == "sim") != sim)
      p.add(d.line, k + ".target", "a plan is all simulated (target = \"sim\") or all real");
    if (d.target == "sim" && d.scenario.empty())
      p.add(d.line, k + ".scenario", "a simulated device needs its scenario");
    if (d.target != "sim" && !d.scenario.empty())
      p.add(d.scenario_line, k + ".scenario", "only a simulated device has a scenario");
    if (!plan.relays.empty() && d.relay.empty())
      p.add(d.line, k, "no relay routes power to it (add it to a rig.relays.NAME.routes table)");
    if (plan.usb_cut.enabled && d.hub.empty())
      p.add(d.line, k, "usb_cut is enabled but no hub port is given (rig.hubs.NAME.ports)");
  }
  if (!plan.usb_cut.toggles_s.empty() && !plan.usb_cut.enabled)
    p.add(1, "usb_cut.toggles_s", "needs usb_cut.enabled = true (the toggles switch the cut port)");
  if (plan.cooldown.mode == CooldownMode::temperature && plan.cooldown.to_c == 0.0)
    p.add(1, "cooldown.to_c", "required with mode = \"temperature\"");
  if (!sim) {
    for (const PlanWorkload& w : plan.workloads)
      if (w.argv.empty())
        p.add(w.line, "workloads." + w.name + ".argv", "a real device needs the runner's argv");
  }
}

}  // namespace

bool Plan::simulated() const {
  return !devices.empty() && std::all_of(devices.begin(), devices.end(),
                                         [](const PlanDevice& d) { return d.target == "sim"; });
}

template <typename T>
static const T* by_name(const std::vector<T>& v, std::string_view name) {
  auto it = std::find_if(v.begin(), v.end(), [&](const T& x) { return x.name == name; });
  return it == v.end() ? nullptr : &*it;
}
const PlanDevice* Plan::device(std::string_view n) const {
  return by_name(devices, n);
}
const PlanWorkload* Plan::workload(std::string_view n) const {
  return by_name(workloads, n);
}
const PlanMonitor* Plan::monitor(std::string_view n) const {
  return by_name(monitors, n);
}
const PlanSwitch* Plan::relay(std::string_view n) const {
  return by_name(relays, n);
}
const PlanSwitch* Plan::hub(std::string_view n) const {
  return by_name(hubs, n);
}

Result<Plan> parse_plan(std::string_view text, const std::string& source,
                        const std::filesystem::path& base_dir) {
  toml::parse_result parsed = toml::parse(text, source);
  if (!parsed) {
    const toml::parse_error& e = parsed.error();
    return Error{Errc::parse_error, source + ":" + std::to_string(e.source().begin.line) + ": " +
                                        std::string(e.description())};
  }
  Problems p{source, std::nullopt};
  Plan plan;
  plan.source = source;
  plan.digest = digest_of(text);
  plan.name = std::filesystem::path(source).stem().string();
  Keys top(p, &parsed.table(), "", 1);
  read_sweep(top.sub("sweep"), plan);
  read_rig(top.sub("rig"), plan, p);
  read_devices(top.sub("devices"), plan, base_dir);
  read_workloads(top.sub("workloads"), plan);
  read_policies(top, plan);
  top.finish();
  if (!p.any()) cross_check(plan, p);
  if (p.first) return *p.first;
  return plan;
}

Result<Plan> load_plan(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Error{Errc::not_found, path.string() + ": no such plan file"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::io_error, path.string() + ": cannot open"};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{Errc::io_error, path.string() + ": read failed"};
  return parse_plan(ss.str(), path.string(), path.parent_path());
}

}  // namespace meltrig::rig
