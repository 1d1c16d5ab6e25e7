// Quoting for POSIX sh. ssh and adb shell both join their arguments with spaces and hand the
// string to a shell on the device, so every argument that crosses them is quoted here, once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace meltrig::targets {

/// `arg` as one POSIX sh word that the shell turns back into exactly `arg`: wrapped in single
/// quotes, each ' written as '\'' (close, escaped quote, reopen). The empty string becomes ''.
/// Every byte other than ' is literal inside single quotes ($, `, \, newlines, *, ~, ;, NUL
/// excepted: NUL cannot be in an argv element, so callers must not pass it).
std::string sh_quote(std::string_view arg);

/// The argv as one command line for a POSIX sh: each element sh_quote()d, joined with spaces.
std::string sh_join(const std::vector<std::string>& argv);

}  // namespace meltrig::targets
