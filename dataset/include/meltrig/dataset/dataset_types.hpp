// Types shared by drivers and the dataset writer: metadata attributes and gap kinds.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace meltrig::dataset {

/// A metadata value: UTF-8 string, float64 or int64 (stored as a scalar HDF5 attribute).
using AttributeValue = std::variant<std::string, double, std::int64_t>;

/// One named metadata value.
struct Attribute {
  std::string name;
  AttributeValue value;
};

/// What a gaps row records. Values are stored in the file; never renumber.
enum class GapKind : std::uint8_t {
  missing = 0,            ///< sequence gap: samples never arrived
  missing_wrapped = 1,    ///< missing, count inferred from elapsed time (sequence counter wrapped)
  duplicate_dropped = 2,  ///< duplicates dropped; no sample rows are covered
  ring_overflow = 3,      ///< dropped because the host ring buffer was full
  resync = 4,             ///< discarded while resynchronising to the stream
  uncalibrated = 5,       ///< arrived but could not be converted: no calibration was ever seen
};
inline constexpr std::uint8_t kGapKindCount = 6;

/// Stable names of the gap kinds, index = value.
inline constexpr const char* kGapKindNames[kGapKindCount] = {
    "missing", "missing_wrapped", "duplicate_dropped", "ring_overflow", "resync", "uncalibrated"};

/// Element type of a sample channel.
enum class SampleType : std::uint8_t { f32, u8 };

/// One sample channel: a dataset `/<monitor>/<name>`.
struct ChannelSpec {
  std::string name;  ///< dataset name, e.g. "current"; no '/', not a reserved name
  std::string unit;  ///< e.g. "A", "V", "" for flags
  SampleType type = SampleType::f32;
  std::string description;  ///< one line for the reader
};

/// One channel's samples in a block; the alternative must match the channel's SampleType.
using ChannelData = std::variant<std::span<const float>, std::span<const std::uint8_t>>;

}  // namespace meltrig::dataset
