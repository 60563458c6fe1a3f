// Reads the safetensors format (Hugging Face's tensor container): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the
// raw data. Used to bring weights trained outside infergrid (tools/train_default_model) into a
// GGUF through our own writer.
//
// Invariant: every tensor handed out lies inside the file and its byte range matches
// dtype x shape exactly; a file that breaks this is refused as kCorrupt, never read past.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace infergrid {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;  // row-major, outermost first (torch's order)
  std::span<const uint8_t> data;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  static Result<SafetensorsFile> parse(std::vector<uint8_t> bytes, const std::string& name);

  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  // The header's "__metadata__" (string to string; empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::vector<uint8_t> bytes_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace infergrid
