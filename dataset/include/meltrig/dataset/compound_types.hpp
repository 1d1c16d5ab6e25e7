// Every HDF5 compound type of the dataset format, declared once: the file type (packed,
// little-endian, as docs/dataset.md lists it) and the memory type (following the C++ row struct)
// of gaps, calibration rows, summary entries, marker events, clock triples and telemetry rows.
// The writer, the reader and the run record all take them from here. (Clock probes are stored as
// plain int64 series, not as a compound.)
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <tuple>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/h5_file.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset::h5 {

/// One marker event row in memory; strings point into the MarkerLog (or, when read, into HDF5's
/// allocations, reclaimed after copying).
struct EventRow {
  std::int64_t t_ns;
  const char* kind;
  std::int64_t index;
  std::uint64_t code;
  std::uint32_t bits;
  std::int64_t chip_ns;
  double value;
  const char* label;
  const char* text;
  std::uint64_t line;
};

/// One telemetry row in memory.
struct TelemetryRow {
  std::int64_t t_ns;
  double value;
};

/// A compound type of `size` bytes from (name, offset, member type) triples.
Result<Datatype> make_compound(
    std::size_t size, std::initializer_list<std::tuple<const char*, std::size_t, hid_t>> members);

/// {first_index u64, count u64, kind u8}; memory: dataset::Gap.
Result<Datatype> gap_type(bool file);
/// {sample_index u64, fine_zero, fine_ref, coarse_zero, coarse_ref f64}; memory: CalibrationRow.
Result<Datatype> calibration_type(bool file);
/// {mean, min, max f32, valid u32}; memory: dataset::SummaryStats.
Result<Datatype> summary_type(bool file);
/// {t_ns i64, kind str, index i64, code u64, bits u32, chip_ns i64, value f64, label str, text str,
/// line u64} with `str` a variable-length UTF-8 string type; memory: EventRow.
Result<Datatype> event_type(hid_t str, bool file);
/// {mono_ns, boot_ns, real_ns i64, line u64}; memory: targets::ClockTriple.
Result<Datatype> clock_type(bool file);
/// {t_ns i64, value f64}; memory: TelemetryRow.
Result<Datatype> telemetry_type(bool file);

}  // namespace meltrig::dataset::h5
