// Result<T>: the value-or-error return type for every device, I/O and parse failure in meltrig.
// Broken invariants assert; expected failures (timeouts, unplugged ports, corrupt files) return an
// Error from the central table below. Exceptions appear only at the CLI boundary.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace meltrig {

/// The central error table. Each code names a class of failure a caller may act on.
enum class Errc {
  timeout,           ///< nothing arrived before the deadline; retrying may help
  io_error,          ///< the OS reported a read/write failure
  port_gone,         ///< the device vanished (unplugged, emulator killed, pty closed)
  not_found,         ///< no such port, file or device
  invalid_argument,  ///< a caller or user passed a bad value (message names it)
  protocol_error,    ///< the peer answered with bytes that make no sense
  overflow,          ///< a bounded buffer filled and data was dropped (and counted)
  file_error,        ///< HDF5 or filesystem failure (disk full, permission, file removed)
  parse_error,       ///< a text input (plan, marker file, CSV) is malformed: message has file:line
  unsupported,       ///< the device or driver does not offer this feature
  cancelled,         ///< stopped on request (Ctrl-C, stop token); never "the source finished"
  end_of_stream,     ///< a finite source delivered everything it has: a normal end, not a failure
};

/// Short stable name of an error code, for messages and logs.
constexpr std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::timeout:
      return "timeout";
    case Errc::io_error:
      return "I/O error";
    case Errc::port_gone:
      return "port gone";
    case Errc::not_found:
      return "not found";
    case Errc::invalid_argument:
      return "invalid argument";
    case Errc::protocol_error:
      return "protocol error";
    case Errc::overflow:
      return "overflow";
    case Errc::file_error:
      return "file error";
    case Errc::parse_error:
      return "parse error";
    case Errc::unsupported:
      return "unsupported";
    case Errc::cancelled:
      return "cancelled";
    case Errc::end_of_stream:
      return "end of stream";
  }
  return "unknown";
}

/// An error: a code from the table plus a message naming the input and position.
struct Error {
  Errc code;
  std::string message;

  /// "port gone: /dev/ttyACM0: device disconnected"
  std::string describe() const { return std::string(errc_name(code)) + ": " + message; }
};

/// Holds either a T or an Error. Accessing the wrong alternative is a broken invariant (asserts).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing on success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(failed_);
    return err_;
  }

 private:
  Error err_{Errc::io_error, {}};
  bool failed_ = false;
};

/// Convenience: make an Error.
inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace meltrig
