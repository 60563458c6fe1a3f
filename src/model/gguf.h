// GGUF reader: maps a GGUF v2/v3 file read-only and exposes its metadata and tensors without
// copying (strings, arrays and tensor data are views into the mapping).
//
// Every offset, length and count read from the file is bounds-checked before use, so a
// truncated, corrupt or hostile file yields a Status naming the problem, never a crash.
// Invariant: views handed out stay valid for the lifetime of the GgufFile.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/tensor_type.h"

namespace infergrid {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* gguf_value_type_name(GgufValueType type);
// Bytes of one value of a fixed-size type (0 for strings and arrays).
size_t gguf_scalar_size(GgufValueType type);

// One metadata value. Scalars are decoded; arrays stay in the mapping until asked for.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  // Scalar payloads (one of these is meaningful, by type).
  uint64_t u64 = 0;
  int64_t i64 = 0;
  double f64 = 0;
  bool boolean = false;
  std::string_view str;
  // Arrays.
  GgufValueType array_type = GgufValueType::kUint8;
  uint64_t array_count = 0;
  const uint8_t* array_data = nullptr;          // first element in the mapping
  std::vector<std::string_view> array_strings;  // decoded when array_type is kString

  bool is_integer() const;
  bool is_float() const {
    return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
  }
  // A short human-readable rendering (arrays abbreviated), for `model inspect`.
  std::string to_display_string(size_t max_array_items = 8) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  uint32_t raw_type = 0;
  TensorType type = TensorType::kF32;  // valid when is_supported_tensor_type(raw_type)
  uint64_t offset = 0;                 // relative to the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t n_elements() const;
  int64_t n_rows() const { return dims.empty() ? 1 : n_elements() / dims[0]; }
};

class GgufFile {
 public:
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses an in-memory image (not copied; must outlive the GgufFile). Used by fuzz tests.
  static Result<std::unique_ptr<GgufFile>> parse(std::span<const uint8_t> bytes,
                                                 std::string source_name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }
  // The header, metadata and tensor infos: every byte before the data section.
  std::span<const uint8_t> header_bytes() const {
    return {base_, static_cast<size_t>(data_offset_)};
  }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // Typed lookups. Missing key -> nullopt; present with an incompatible type -> error.
  Result<std::optional<std::string_view>> get_string(std::string_view key) const;
  Result<std::optional<int64_t>> get_int(std::string_view key) const;   // any integer type
  Result<std::optional<double>> get_float(std::string_view key) const;  // float or integer
  Result<std::optional<bool>> get_bool(std::string_view key) const;
  // Arrays; missing key -> empty optional.
  Result<std::optional<std::vector<std::string_view>>> get_string_array(std::string_view key) const;
  Result<std::optional<std::vector<float>>> get_float_array(std::string_view key) const;
  Result<std::optional<std::vector<int64_t>>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;

  // Tells the kernel that the file pages of [p, p + n) will rarely be read again (a copy of
  // them was made, e.g. repacked weights), so they leave this process's resident set. Reads
  // of them stay valid (they fault back in from the file). No-op for in-memory files.
  void release_pages(const uint8_t* p, size_t n) const;

 private:
  GgufFile() = default;
  Status parse_all();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace infergrid
