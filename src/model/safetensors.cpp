#include "model/safetensors.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>

namespace infergrid {
namespace {

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(StatusCode::kNotFound, "cannot open '{}'", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return parse(std::move(bytes), path);
}

Result<SafetensorsFile> SafetensorsFile::parse(std::vector<uint8_t> bytes,
                                               const std::string& name) {
  SafetensorsFile file;
  file.bytes_ = std::move(bytes);
  const std::vector<uint8_t>& b = file.bytes_;
  if (b.size() < 8) return make_error(StatusCode::kCorrupt, "{}: shorter than its header", name);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | b[static_cast<size_t>(i)];
  if (header_size > b.size() - 8) {
    return make_error(StatusCode::kCorrupt, "{}: header of {} bytes in a file of {}", name,
                      header_size, b.size());
  }
  const auto header_begin = b.begin() + 8;
  const nlohmann::json header = nlohmann::json::parse(
      header_begin, header_begin + static_cast<ptrdiff_t>(header_size), nullptr, false);
  if (!header.is_object()) {
    return make_error(StatusCode::kCorrupt, "{}: the header is not a JSON object", name);
  }
  const size_t data_begin = 8 + header_size;
  const size_t data_size = b.size() - data_begin;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        return make_error(StatusCode::kCorrupt, "{}: __metadata__ is not an object", name);
      }
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          return make_error(StatusCode::kCorrupt, "{}: metadata '{}' is not a string", name, mkey);
        }
        file.metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    const auto dtype = value.find("dtype");
    const auto shape = value.find("shape");
    const auto offsets = value.find("data_offsets");
    if (!value.is_object() || dtype == value.end() || !dtype->is_string() || shape == value.end() ||
        !shape->is_array() || offsets == value.end() || !offsets->is_array() ||
        offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      return make_error(StatusCode::kCorrupt, "{}: tensor '{}' has a malformed entry", name, key);
    }
    SafetensorsTensor t;
    t.name = key;
    t.dtype = dtype->get<std::string>();
    const int64_t element_bytes = dtype_bytes(t.dtype);
    if (element_bytes == 0) {
      return make_error(StatusCode::kUnsupported, "{}: tensor '{}' has dtype {}", name, key,
                        t.dtype);
    }
    uint64_t elements = 1;
    for (const auto& dim : *shape) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > (uint64_t{1} << 40)) {
        return make_error(StatusCode::kCorrupt, "{}: tensor '{}' has a bad shape", name, key);
      }
      t.shape.push_back(dim.get<int64_t>());
      elements *= dim.get<uint64_t>();
      if (elements > (uint64_t{1} << 40)) {
        return make_error(StatusCode::kCorrupt, "{}: tensor '{}' is too large", name, key);
      }
    }
    const auto begin = (*offsets)[0].get<uint64_t>();
    const auto end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > data_size ||
        end - begin != elements * static_cast<uint64_t>(element_bytes)) {
      return make_error(StatusCode::kCorrupt,
                        "{}: tensor '{}' spans bytes [{}, {}) of {} for {} elements of {}", name,
                        key, begin, end, data_size, elements, t.dtype);
    }
    t.data = std::span<const uint8_t>(b.data() + data_begin + begin, end - begin);
    file.tensors_.push_back(std::move(t));
  }
  return file;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const SafetensorsTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace infergrid
