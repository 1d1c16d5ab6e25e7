// Derived groups written whole into a temporary group and renamed (see group_store.hpp).
#include "meltrig/dataset/group_store.hpp"

#include <algorithm>
#include <array>

#include "meltrig/dataset/h5_file.hpp"

namespace meltrig::dataset {

namespace {

constexpr std::uint64_t kChunkRows = 16384;

template <typename T>
const T* get_if_attr(const GroupData& g, std::string_view n) {
  const AttributeValue* v = g.attr(n);
  return v != nullptr ? std::get_if<T>(v) : nullptr;
}

Result<h5::Dataset> create_column(hid_t loc, const std::string& name, hid_t file_type,
                                  std::size_t rows) {
  h5::ExtendibleSpec spec{file_type, std::clamp<std::uint64_t>(rows, 1, kChunkRows)};
  if (rows > 256) spec.filter = h5::Filter::deflate, spec.shuffle = true;
  auto d = h5::create_extendible_1d(loc, name, spec);
  if (!d) return d.error();
  if (auto r = h5::set_extent_1d(d->get(), rows); !r) return r.error();
  return d;
}

Result<void> write_column(hid_t loc, const Column& c) {
  Result<void> w{};
  h5::Dataset dset;
  if (const auto* v = std::get_if<std::vector<std::int64_t>>(&c.values)) {
    auto d = create_column(loc, c.name, H5T_STD_I64LE, v->size());
    if (!d) return d.error();
    dset = std::move(*d);
    if (!v->empty()) w = h5::write_rows(dset.get(), 0, std::span<const std::int64_t>(*v));
  } else if (const auto* f = std::get_if<std::vector<double>>(&c.values)) {
    auto d = create_column(loc, c.name, H5T_IEEE_F64LE, f->size());
    if (!d) return d.error();
    dset = std::move(*d);
    if (!f->empty()) w = h5::write_rows(dset.get(), 0, std::span<const double>(*f));
  } else {
    const auto& s = std::get<std::vector<std::string>>(c.values);
    auto type = h5::vlen_string_type();
    if (!type) return type.error();
    auto d = create_column(loc, c.name, type->get(), s.size());
    if (!d) return d.error();
    dset = std::move(*d);
    std::vector<const char*> ptrs;
    ptrs.reserve(s.size());
    for (const std::string& x : s)
      ptrs.push_back(x.c_str());
    if (!s.empty()) w = h5::write_rows(dset.get(), type->get(), 0, s.size(), ptrs.data());
  }
  if (!w) return w;
  if (!c.unit.empty()) return h5::write_attribute(dset.get(), "unit", c.unit);
  return {};
}

Result<void> write_tree(hid_t loc, const GroupData& g) {
  auto grp = h5::create_group(loc, g.name);
  if (!grp) return grp.error();
  for (const Attribute& a : g.attrs)
    if (auto r = h5::write_attribute(grp->get(), a.name, a.value); !r) return r;
  for (const Column& c : g.columns)
    if (auto r = write_column(grp->get(), c); !r) return r;
  for (const GroupData& sub : g.groups)
    if (auto r = write_tree(grp->get(), sub); !r) return r;
  return {};
}

bool exists(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

// ---- reading ----

std::optional<AttributeValue> read_attribute(hid_t obj, const char* name) {
  h5::Attribute a{H5Aopen(obj, name, H5P_DEFAULT)};
  h5::Datatype t{a.valid() ? H5Aget_type(a.get()) : H5I_INVALID_HID};
  h5::Dataspace sp{a.valid() ? H5Aget_space(a.get()) : H5I_INVALID_HID};
  if (!t.valid() || !sp.valid() || H5Sget_simple_extent_npoints(sp.get()) != 1) return std::nullopt;
  switch (H5Tget_class(t.get())) {
    case H5T_STRING: {
      auto vt = h5::vlen_string_type();
      char* p = nullptr;
      if (!vt || H5Tis_variable_str(t.get()) <= 0 || H5Aread(a.get(), vt->get(), &p) < 0)
        return std::nullopt;
      std::string s = p != nullptr ? p : "";
      H5free_memory(p);
      return s;
    }
    case H5T_FLOAT: {
      double v = 0;
      if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0) return std::nullopt;
      return v;
    }
    case H5T_INTEGER: {
      std::int64_t v = 0;
      if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
      return v;
    }
    default:
      return std::nullopt;
  }
}

herr_t collect(hid_t, const char* name, const void*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}
herr_t collect_attr(hid_t l, const char* n, const H5A_info_t*, void* o) {
  return collect(l, n, nullptr, o);
}
herr_t collect_link(hid_t l, const char* n, const H5L_info_t*, void* o) {
  return collect(l, n, nullptr, o);
}

template <typename T>
Result<std::vector<T>> read_rows(hid_t d, hid_t mem, std::size_t n, const std::string& where) {
  std::vector<T> v(n);
  if (n > 0 && H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    return h5::h5_error(where, "cannot read dataset", "");
  return v;
}

Result<std::optional<Column>> read_column(hid_t loc, const std::string& name) {
  h5::Dataset d{H5Dopen2(loc, name.c_str(), H5P_DEFAULT)};
  if (!d.valid()) return h5::h5_error(loc, "cannot open dataset", name);
  h5::Datatype t{H5Dget_type(d.get())};
  h5::Dataspace sp{H5Dget_space(d.get())};
  if (!t.valid() || !sp.valid() || H5Sget_simple_extent_ndims(sp.get()) != 1)
    return std::optional<Column>{};
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(sp.get()));
  const std::string where = h5::object_path(loc, name);
  Column c{name, {}, ""};
  if (auto u = read_attribute(d.get(), "unit"); u && std::holds_alternative<std::string>(*u))
    c.unit = std::get<std::string>(*u);
  switch (H5Tget_class(t.get())) {
    case H5T_INTEGER: {
      auto v = read_rows<std::int64_t>(d.get(), H5T_NATIVE_INT64, n, where);
      if (!v) return v.error();
      c.values = std::move(*v);
      return std::optional<Column>(std::move(c));
    }
    case H5T_FLOAT: {
      auto v = read_rows<double>(d.get(), H5T_NATIVE_DOUBLE, n, where);
      if (!v) return v.error();
      c.values = std::move(*v);
      return std::optional<Column>(std::move(c));
    }
    case H5T_STRING: {
      auto vt = h5::vlen_string_type();
      if (!vt) return vt.error();
      if (H5Tis_variable_str(t.get()) <= 0) return std::optional<Column>{};
      auto p = read_rows<char*>(d.get(), vt->get(), n, where);
      if (!p) return p.error();
      std::vector<std::string> s;
      s.reserve(n);
      for (char* x : *p) {
        s.emplace_back(x != nullptr ? x : "");
        H5free_memory(x);
      }
      c.values = std::move(s);
      return std::optional<Column>(std::move(c));
    }
    default:
      return std::optional<Column>{};
  }
}

Result<GroupData> read_tree(hid_t loc, const std::string& name) {
  h5::Group g{H5Gopen2(loc, name.c_str(), H5P_DEFAULT)};
  if (!g.valid()) return h5::h5_error(loc, "cannot open group", name);
  GroupData out{name, {}, {}, {}};
  std::vector<std::string> attrs, links;
  hsize_t idx = 0;
  if (H5Aiterate2(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &attrs) < 0)
    return h5::h5_error(loc, "cannot list the attributes of", name);
  idx = 0;
  if (H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &links) < 0)
    return h5::h5_error(loc, "cannot list", name);
  for (const std::string& a : attrs)
    if (auto v = read_attribute(g.get(), a.c_str())) out.attrs.push_back({a, std::move(*v)});
  for (const std::string& l : links) {
    H5O_info_t info{};
    if (H5Oget_info_by_name2(g.get(), l.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) continue;
    if (info.type == H5O_TYPE_GROUP) {
      auto sub = read_tree(g.get(), l);
      if (!sub) return sub.error();
      out.groups.push_back(std::move(*sub));
    } else if (info.type == H5O_TYPE_DATASET) {
      auto c = read_column(g.get(), l);
      if (!c) return c.error();
      if (*c) out.columns.push_back(std::move(**c));
    }
  }
  return out;
}

}  // namespace

const AttributeValue* GroupData::attr(std::string_view n) const {
  for (const Attribute& a : attrs)
    if (a.name == n) return &a.value;
  return nullptr;
}
const Column* GroupData::column(std::string_view n) const {
  for (const Column& c : columns)
    if (c.name == n) return &c;
  return nullptr;
}
const GroupData* GroupData::group(std::string_view n) const {
  for (const GroupData& g : groups)
    if (g.name == n) return &g;
  return nullptr;
}
std::optional<std::string> GroupData::str(std::string_view n) const {
  const auto* v = get_if_attr<std::string>(*this, n);
  return v != nullptr ? std::optional(*v) : std::nullopt;
}
std::optional<double> GroupData::num(std::string_view n) const {
  if (const auto* v = get_if_attr<double>(*this, n)) return *v;
  if (const auto* v = get_if_attr<std::int64_t>(*this, n)) return static_cast<double>(*v);
  return std::nullopt;
}
std::optional<std::int64_t> GroupData::i64(std::string_view n) const {
  const auto* v = get_if_attr<std::int64_t>(*this, n);
  return v != nullptr ? std::optional(*v) : std::nullopt;
}

Result<void> replace_group(const std::filesystem::path& path, const GroupData& g) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Error{Errc::not_found, path.string() + ": no such file"};
  h5::File f{H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
  if (!f.valid())
    return h5::h5_error(path.string(),
                        "cannot open to write /" + g.name +
                            " (a capture must have finished; after a crash run `h5clear -s` first)",
                        "");
  const std::string tmp = "." + g.name + ".tmp";
  if (exists(f.get(), tmp)) H5Ldelete(f.get(), tmp.c_str(), H5P_DEFAULT);
  GroupData staged = g;
  staged.name = tmp;
  auto w = write_tree(f.get(), staged);
  if (w && exists(f.get(), g.name) && H5Ldelete(f.get(), g.name.c_str(), H5P_DEFAULT) < 0)
    w = h5::h5_error(f.get(), "cannot remove the old", g.name);
  if (w && H5Lmove(f.get(), tmp.c_str(), f.get(), g.name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    w = h5::h5_error(f.get(), "cannot rename the new group to", g.name);
  if (!w) {
    if (exists(f.get(), tmp)) H5Ldelete(f.get(), tmp.c_str(), H5P_DEFAULT);
    return w;
  }
  if (H5Fflush(f.get(), H5F_SCOPE_GLOBAL) < 0 || f.close() < 0)
    return h5::h5_error(path.string(), "cannot close after writing", "/" + g.name);
  return {};
}

Result<std::optional<GroupData>> read_group(const std::filesystem::path& path,
                                            std::string_view name) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Error{Errc::not_found, path.string() + ": no such file"};
  h5::File f{H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT)};
  if (!f.valid()) f = h5::File{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  if (!f.valid()) return h5::h5_error(path.string(), "cannot open HDF5 file", "");
  const std::string n(name);
  if (!exists(f.get(), n)) return std::optional<GroupData>{};
  auto g = read_tree(f.get(), n);
  if (!g) return g.error();
  return std::optional<GroupData>(std::move(*g));
}

}  // namespace meltrig::dataset
