#include "model/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <unistd.h>

namespace infergrid {

namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_scalar(std::vector<uint8_t>& out, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::kUint8:
      return put<uint8_t>(out, static_cast<uint8_t>(v.u64));
    case GgufValueType::kInt8:
      return put<int8_t>(out, static_cast<int8_t>(v.i64));
    case GgufValueType::kUint16:
      return put<uint16_t>(out, static_cast<uint16_t>(v.u64));
    case GgufValueType::kInt16:
      return put<int16_t>(out, static_cast<int16_t>(v.i64));
    case GgufValueType::kUint32:
      return put<uint32_t>(out, static_cast<uint32_t>(v.u64));
    case GgufValueType::kInt32:
      return put<int32_t>(out, static_cast<int32_t>(v.i64));
    case GgufValueType::kUint64:
      return put<uint64_t>(out, v.u64);
    case GgufValueType::kInt64:
      return put<int64_t>(out, v.i64);
    case GgufValueType::kFloat32:
      return put<float>(out, static_cast<float>(v.f64));
    case GgufValueType::kFloat64:
      return put<double>(out, v.f64);
    case GgufValueType::kBool:
      return put<uint8_t>(out, v.boolean ? 1 : 0);
    case GgufValueType::kString:
      return put_string(out, v.str);
    case GgufValueType::kArray:
      break;
  }
}

}  // namespace

void GgufWriter::set_value(std::string key, const GgufValue& value) {
  std::vector<uint8_t> p;
  if (value.type != GgufValueType::kArray) {
    put_scalar(p, value);
  } else {
    put(p, static_cast<uint32_t>(value.array_type));
    put<uint64_t>(p, value.array_count);
    if (value.array_type == GgufValueType::kString) {
      for (std::string_view s : value.array_strings) put_string(p, s);
    } else {
      const size_t n = gguf_scalar_size(value.array_type) * value.array_count;
      p.insert(p.end(), value.array_data, value.array_data + n);
    }
  }
  set_raw(std::move(key), value.type, std::move(p));
}

void GgufWriter::set_raw(std::string key, GgufValueType type, std::vector<uint8_t> payload) {
  for (auto& entry : entries_) {
    if (entry.key == key) {
      entry.type = type;
      entry.payload = std::move(payload);
      return;
    }
  }
  entries_.push_back({std::move(key), type, std::move(payload)});
}

void GgufWriter::set_string(std::string key, std::string value) {
  std::vector<uint8_t> p;
  put_string(p, value);
  set_raw(std::move(key), GgufValueType::kString, std::move(p));
}

void GgufWriter::set_u32(std::string key, uint32_t value) {
  std::vector<uint8_t> p;
  put(p, value);
  set_raw(std::move(key), GgufValueType::kUint32, std::move(p));
}

void GgufWriter::set_i32(std::string key, int32_t value) {
  std::vector<uint8_t> p;
  put(p, value);
  set_raw(std::move(key), GgufValueType::kInt32, std::move(p));
}

void GgufWriter::set_u64(std::string key, uint64_t value) {
  std::vector<uint8_t> p;
  put(p, value);
  set_raw(std::move(key), GgufValueType::kUint64, std::move(p));
}

void GgufWriter::set_f32(std::string key, float value) {
  std::vector<uint8_t> p;
  put(p, value);
  set_raw(std::move(key), GgufValueType::kFloat32, std::move(p));
}

void GgufWriter::set_bool(std::string key, bool value) {
  std::vector<uint8_t> p;
  put<uint8_t>(p, value ? 1 : 0);
  set_raw(std::move(key), GgufValueType::kBool, std::move(p));
}

void GgufWriter::set_string_array(std::string key, const std::vector<std::string>& values) {
  std::vector<uint8_t> p;
  put(p, static_cast<uint32_t>(GgufValueType::kString));
  put<uint64_t>(p, values.size());
  for (const auto& v : values) put_string(p, v);
  set_raw(std::move(key), GgufValueType::kArray, std::move(p));
}

void GgufWriter::set_f32_array(std::string key, const std::vector<float>& values) {
  std::vector<uint8_t> p;
  put(p, static_cast<uint32_t>(GgufValueType::kFloat32));
  put<uint64_t>(p, values.size());
  for (float v : values) put(p, v);
  set_raw(std::move(key), GgufValueType::kArray, std::move(p));
}

void GgufWriter::set_i32_array(std::string key, const std::vector<int32_t>& values) {
  std::vector<uint8_t> p;
  put(p, static_cast<uint32_t>(GgufValueType::kInt32));
  put<uint64_t>(p, values.size());
  for (int32_t v : values) put(p, v);
  set_raw(std::move(key), GgufValueType::kArray, std::move(p));
}

void GgufWriter::add_tensor(std::string name, TensorType type, std::vector<int64_t> dims,
                            std::vector<uint8_t> data) {
  tensors_.push_back({std::move(name), type, std::move(dims), std::move(data)});
}

std::vector<uint8_t> GgufWriter::header_bytes() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, 0x46554747);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  const bool write_alignment = alignment_ != 32;
  put<uint64_t>(out, entries_.size() + (write_alignment ? 1 : 0));
  if (write_alignment) {
    put_string(out, "general.alignment");
    put(out, static_cast<uint32_t>(GgufValueType::kUint32));
    put(out, static_cast<uint32_t>(alignment_));
  }
  for (const auto& entry : entries_) {
    put_string(out, entry.key);
    put(out, static_cast<uint32_t>(entry.type));
    out.insert(out.end(), entry.payload.begin(), entry.payload.end());
  }
  uint64_t offset = 0;
  for (const auto& tensor : tensors_) {
    put_string(out, tensor.name);
    put<uint32_t>(out, static_cast<uint32_t>(tensor.dims.size()));
    for (int64_t d : tensor.dims) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(tensor.type));
    put<uint64_t>(out, offset);
    offset += (tensor.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  return out;
}

std::vector<uint8_t> GgufWriter::serialize() const {
  std::vector<uint8_t> out = header_bytes();
  for (const auto& tensor : tensors_) {
    out.insert(out.end(), tensor.data.begin(), tensor.data.end());
    out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  }
  return out;
}

Status GgufWriter::write_file(const std::string& path) const {
  // A per-process temporary name: concurrent writers of the same model never share a file,
  // and the final rename is atomic, so readers see a whole file or none.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return make_error(StatusCode::kIoError, "cannot create {}: {}", tmp, std::strerror(errno));
  }
  auto write = [f](const void* data, size_t n) { return std::fwrite(data, 1, n, f) == n; };
  // Stream tensors one by one rather than building the whole image: models can be gigabytes.
  const std::vector<uint8_t> out = header_bytes();
  bool ok = write(out.data(), out.size());
  static const uint8_t kZeros[256] = {};
  for (const auto& tensor : tensors_) {
    if (!ok) break;
    ok = write(tensor.data.data(), tensor.data.size());
    const size_t pad = (alignment_ - tensor.data.size() % alignment_) % alignment_;
    if (ok && pad) ok = write(kZeros, pad);
  }
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return make_error(StatusCode::kIoError, "failed writing {}", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return make_error(StatusCode::kIoError, "cannot rename {} to {}: {}", tmp, path, ec.message());
  return Status::ok();
}

}  // namespace infergrid
