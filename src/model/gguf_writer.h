// GgufWriter: builds a GGUF v3 file (metadata + tensors) and writes it atomically (to a
// temporary name, then rename), so a crash never leaves a half-written model under the final
// name. Used by `model synth` and by tests that need small or deliberately odd files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/tensor_type.h"
#include "model/gguf.h"

namespace infergrid {

class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}

  void set_string(std::string key, std::string value);
  void set_u32(std::string key, uint32_t value);
  void set_i32(std::string key, int32_t value);
  void set_u64(std::string key, uint64_t value);
  void set_f32(std::string key, float value);
  void set_bool(std::string key, bool value);
  void set_string_array(std::string key, const std::vector<std::string>& values);
  void set_f32_array(std::string key, const std::vector<float>& values);
  void set_i32_array(std::string key, const std::vector<int32_t>& values);
  // A value read from another file, re-encoded as it was (same type, same element type).
  void set_value(std::string key, const GgufValue& value);

  // data holds the tensor in `type`'s encoding; dims in ggml order (dims[0] contiguous).
  void add_tensor(std::string name, TensorType type, std::vector<int64_t> dims,
                  std::vector<uint8_t> data);

  // The whole file image in memory (for tests).
  std::vector<uint8_t> serialize() const;
  Status write_file(const std::string& path) const;

 private:
  struct Entry {
    std::string key;
    GgufValueType type;
    std::vector<uint8_t> payload;  // encoded value after the type tag
  };
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
  };
  void set_raw(std::string key, GgufValueType type, std::vector<uint8_t> payload);
  std::vector<uint8_t> header_bytes() const;  // through the padding before tensor data

  uint64_t alignment_;
  std::vector<Entry> entries_;
  std::vector<Tensor> tensors_;
};

}  // namespace infergrid
