// Status and Result<T>: errors as values with context, so a user's mistake (a bad file, a bad
// flag) is reported and never aborts the process. Modelled on LevelDB's Status.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace infergrid {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kCorrupt,      // input data violates its format (truncated file, bad magic, bad offsets)
  kUnsupported,  // well-formed but not something we implement (unknown tensor type, arch)
  kIoError,
  kOutOfRange,
  kResourceExhausted,
  kUnavailable,  // not accepting work now (shutting down)
  kInternal,
  kCancelled,  // the caller stopped the operation
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

  // Prepends context ("loading model.gguf: ...") while keeping the code.
  Status with_context(const std::string& context) const {
    if (is_ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
Status make_error(StatusCode code, fmt::format_string<Args...> format, Args&&... args) {
  return Status(code, fmt::format(format, std::forward<Args>(args)...));
}

// Holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.is_ok());
  }

  bool is_ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace infergrid

#define IG_RETURN_IF_ERROR(expr)                \
  do {                                          \
    ::infergrid::Status ig_status_ = (expr);    \
    if (!ig_status_.is_ok()) return ig_status_; \
  } while (0)

#define IG_CONCAT_INNER(a, b) a##b
#define IG_CONCAT(a, b) IG_CONCAT_INNER(a, b)
#define IG_ASSIGN_OR_RETURN(lhs, expr) \
  IG_ASSIGN_OR_RETURN_IMPL(IG_CONCAT(ig_result_, __LINE__), lhs, expr)
#define IG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.is_ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
