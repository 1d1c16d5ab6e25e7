// The dataset's compound types: see compound_types.hpp. File types are packed little-endian;
// memory types follow the row structs.
#include "meltrig/dataset/compound_types.hpp"

#include <string>
#include <utility>

#include "meltrig/targets/markers.hpp"

namespace meltrig::dataset::h5 {

Result<Datatype> make_compound(
    std::size_t size, std::initializer_list<std::tuple<const char*, std::size_t, hid_t>> members) {
  Datatype type{H5Tcreate(H5T_COMPOUND, size)};
  if (!type.valid()) {
    return Error{Errc::file_error, "cannot make an HDF5 compound type: " + innermost_error()};
  }
  for (const auto& [name, offset, member] : members) {
    if (H5Tinsert(type.get(), name, offset, member) < 0) {
      return Error{Errc::file_error, std::string("cannot make an HDF5 compound type member ") +
                                         name + ": " + innermost_error()};
    }
  }
  return type;
}

Result<Datatype> gap_type(bool file) {
  if (file) {
    return make_compound(17, {{"first_index", 0, H5T_STD_U64LE},
                              {"count", 8, H5T_STD_U64LE},
                              {"kind", 16, H5T_STD_U8LE}});
  }
  return make_compound(sizeof(Gap), {{"first_index", offsetof(Gap, first_index), H5T_NATIVE_UINT64},
                                     {"count", offsetof(Gap, count), H5T_NATIVE_UINT64},
                                     {"kind", offsetof(Gap, kind), H5T_NATIVE_UINT8}});
}

Result<Datatype> calibration_type(bool file) {
  if (file) {
    return make_compound(40, {{"sample_index", 0, H5T_STD_U64LE},
                              {"fine_zero", 8, H5T_IEEE_F64LE},
                              {"fine_ref", 16, H5T_IEEE_F64LE},
                              {"coarse_zero", 24, H5T_IEEE_F64LE},
                              {"coarse_ref", 32, H5T_IEEE_F64LE}});
  }
  using C = CalibrationRow;
  return make_compound(sizeof(C), {{"sample_index", offsetof(C, sample_index), H5T_NATIVE_UINT64},
                                   {"fine_zero", offsetof(C, fine_zero), H5T_NATIVE_DOUBLE},
                                   {"fine_ref", offsetof(C, fine_ref), H5T_NATIVE_DOUBLE},
                                   {"coarse_zero", offsetof(C, coarse_zero), H5T_NATIVE_DOUBLE},
                                   {"coarse_ref", offsetof(C, coarse_ref), H5T_NATIVE_DOUBLE}});
}

Result<Datatype> summary_type(bool file) {
  if (file) {
    return make_compound(16, {{"mean", 0, H5T_IEEE_F32LE},
                              {"min", 4, H5T_IEEE_F32LE},
                              {"max", 8, H5T_IEEE_F32LE},
                              {"valid", 12, H5T_STD_U32LE}});
  }
  using S = SummaryStats;
  return make_compound(sizeof(S), {{"mean", offsetof(S, mean), H5T_NATIVE_FLOAT},
                                   {"min", offsetof(S, min), H5T_NATIVE_FLOAT},
                                   {"max", offsetof(S, max), H5T_NATIVE_FLOAT},
                                   {"valid", offsetof(S, valid), H5T_NATIVE_UINT32}});
}

// The file type's strings take the size HDF5 gives a variable-length string.
Result<Datatype> event_type(hid_t str, bool file) {
  if (!file) {
    using E = EventRow;
    return make_compound(sizeof(E), {{"t_ns", offsetof(E, t_ns), H5T_NATIVE_INT64},
                                     {"kind", offsetof(E, kind), str},
                                     {"index", offsetof(E, index), H5T_NATIVE_INT64},
                                     {"code", offsetof(E, code), H5T_NATIVE_UINT64},
                                     {"bits", offsetof(E, bits), H5T_NATIVE_UINT32},
                                     {"chip_ns", offsetof(E, chip_ns), H5T_NATIVE_INT64},
                                     {"value", offsetof(E, value), H5T_NATIVE_DOUBLE},
                                     {"label", offsetof(E, label), str},
                                     {"text", offsetof(E, text), str},
                                     {"line", offsetof(E, line), H5T_NATIVE_UINT64}});
  }
  const std::size_t s = H5Tget_size(str);
  std::size_t at = 0;
  auto next = [&](std::size_t size) { return std::exchange(at, at + size); };
  const std::size_t t_ns = next(8), kind = next(s), index = next(8), code = next(8), bits = next(4),
                    chip = next(8), value = next(8), label = next(s), text = next(s),
                    line = next(8);
  return make_compound(at, {{"t_ns", t_ns, H5T_STD_I64LE},
                            {"kind", kind, str},
                            {"index", index, H5T_STD_I64LE},
                            {"code", code, H5T_STD_U64LE},
                            {"bits", bits, H5T_STD_U32LE},
                            {"chip_ns", chip, H5T_STD_I64LE},
                            {"value", value, H5T_IEEE_F64LE},
                            {"label", label, str},
                            {"text", text, str},
                            {"line", line, H5T_STD_U64LE}});
}

Result<Datatype> clock_type(bool file) {
  if (file) {
    return make_compound(32, {{"mono_ns", 0, H5T_STD_I64LE},
                              {"boot_ns", 8, H5T_STD_I64LE},
                              {"real_ns", 16, H5T_STD_I64LE},
                              {"line", 24, H5T_STD_U64LE}});
  }
  using T = targets::ClockTriple;
  return make_compound(sizeof(T), {{"mono_ns", offsetof(T, mono_ns), H5T_NATIVE_INT64},
                                   {"boot_ns", offsetof(T, boot_ns), H5T_NATIVE_INT64},
                                   {"real_ns", offsetof(T, real_ns), H5T_NATIVE_INT64},
                                   {"line", offsetof(T, line), H5T_NATIVE_UINT64}});
}

Result<Datatype> telemetry_type(bool file) {
  if (file) return make_compound(16, {{"t_ns", 0, H5T_STD_I64LE}, {"value", 8, H5T_IEEE_F64LE}});
  return make_compound(sizeof(TelemetryRow),
                       {{"t_ns", offsetof(TelemetryRow, t_ns), H5T_NATIVE_INT64},
                        {"value", offsetof(TelemetryRow, value), H5T_NATIVE_DOUBLE}});
}

}  // namespace meltrig::dataset::h5
