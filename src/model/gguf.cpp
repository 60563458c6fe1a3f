#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

namespace infergrid {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxDims = 4;             // ggml's GGML_MAX_DIMS
// Sanity limits so a corrupt count cannot make us allocate the world before bounds checks
// catch it; real files are far below these.
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 30;

// Bounds-checked little-endian reader over the mapping.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size) : base_(base), size_(size) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return size_ - offset_; }

  template <typename T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) {
      return make_error(StatusCode::kCorrupt, "truncated while reading {} at offset {}", what,
                        offset_);
    }
    std::memcpy(out, base_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return Status::ok();
  }

  Status read_string(std::string_view* out, const char* what) {
    uint64_t length = 0;
    IG_RETURN_IF_ERROR(read(&length, what));
    if (length > kMaxStringBytes || length > remaining()) {
      return make_error(StatusCode::kCorrupt, "{} at offset {} claims {} bytes but only {} remain",
                        what, offset_ - 8, length, remaining());
    }
    *out = std::string_view(reinterpret_cast<const char*>(base_ + offset_), length);
    offset_ += length;
    return Status::ok();
  }

  Status skip(uint64_t bytes, const char* what) {
    if (bytes > remaining()) {
      return make_error(StatusCode::kCorrupt,
                        "truncated in {} at offset {}: needs {} bytes, {} remain", what, offset_,
                        bytes, remaining());
    }
    offset_ += bytes;
    return Status::ok();
  }

  const uint8_t* here() const { return base_ + offset_; }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t offset_ = 0;
};

bool valid_value_type(uint32_t raw) {
  return raw <= static_cast<uint32_t>(GgufValueType::kFloat64);
}

Status read_scalar(Cursor& cursor, GgufValueType type, GgufValue* value) {
  value->type = type;
  switch (type) {
    case GgufValueType::kUint8: {
      uint8_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "uint8 value"));
      value->u64 = v;
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kInt8: {
      int8_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "int8 value"));
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kUint16: {
      uint16_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "uint16 value"));
      value->u64 = v;
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kInt16: {
      int16_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "int16 value"));
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kUint32: {
      uint32_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "uint32 value"));
      value->u64 = v;
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kInt32: {
      int32_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "int32 value"));
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kUint64: {
      uint64_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "uint64 value"));
      value->u64 = v;
      value->i64 = static_cast<int64_t>(v);
      return Status::ok();
    }
    case GgufValueType::kInt64: {
      int64_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "int64 value"));
      value->i64 = v;
      return Status::ok();
    }
    case GgufValueType::kFloat32: {
      float v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "float32 value"));
      value->f64 = v;
      return Status::ok();
    }
    case GgufValueType::kFloat64: {
      double v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "float64 value"));
      value->f64 = v;
      return Status::ok();
    }
    case GgufValueType::kBool: {
      uint8_t v;
      IG_RETURN_IF_ERROR(cursor.read(&v, "bool value"));
      value->boolean = v != 0;
      return Status::ok();
    }
    case GgufValueType::kString:
      return cursor.read_string(&value->str, "string value");
    case GgufValueType::kArray:
      break;
  }
  return make_error(StatusCode::kCorrupt, "unexpected value type {}", static_cast<uint32_t>(type));
}

Status read_value(Cursor& cursor, GgufValueType type, GgufValue* value) {
  if (type != GgufValueType::kArray) return read_scalar(cursor, type, value);
  value->type = GgufValueType::kArray;
  uint32_t raw_elem_type = 0;
  IG_RETURN_IF_ERROR(cursor.read(&raw_elem_type, "array element type"));
  if (!valid_value_type(raw_elem_type)) {
    return make_error(StatusCode::kCorrupt, "array element type {} is not a GGUF type",
                      raw_elem_type);
  }
  value->array_type = static_cast<GgufValueType>(raw_elem_type);
  if (value->array_type == GgufValueType::kArray) {
    return Status(StatusCode::kUnsupported, "nested arrays are not supported");
  }
  IG_RETURN_IF_ERROR(cursor.read(&value->array_count, "array length"));
  value->array_data = cursor.here();
  if (value->array_type == GgufValueType::kString) {
    // Each string needs at least its 8-byte length: reject absurd counts before reserving.
    if (value->array_count > cursor.remaining() / 8) {
      return make_error(StatusCode::kCorrupt, "string array of {} entries exceeds the file",
                        value->array_count);
    }
    value->array_strings.reserve(value->array_count);
    for (uint64_t i = 0; i < value->array_count; ++i) {
      std::string_view s;
      IG_RETURN_IF_ERROR(cursor.read_string(&s, "array string"));
      value->array_strings.push_back(s);
    }
    return Status::ok();
  }
  const uint64_t elem = gguf_scalar_size(value->array_type);
  if (value->array_count > cursor.remaining() / elem) {
    return make_error(StatusCode::kCorrupt, "array of {} x {}-byte entries exceeds the file",
                      value->array_count, elem);
  }
  return cursor.skip(value->array_count * elem, "array data");
}

template <typename T>
T load_unaligned(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double array_element_as_double(const GgufValue& v, uint64_t i) {
  const uint8_t* p = v.array_data + i * gguf_scalar_size(v.array_type);
  switch (v.array_type) {
    case GgufValueType::kUint8:
      return load_unaligned<uint8_t>(p);
    case GgufValueType::kInt8:
      return load_unaligned<int8_t>(p);
    case GgufValueType::kUint16:
      return load_unaligned<uint16_t>(p);
    case GgufValueType::kInt16:
      return load_unaligned<int16_t>(p);
    case GgufValueType::kUint32:
      return load_unaligned<uint32_t>(p);
    case GgufValueType::kInt32:
      return load_unaligned<int32_t>(p);
    case GgufValueType::kUint64:
      return static_cast<double>(load_unaligned<uint64_t>(p));
    case GgufValueType::kInt64:
      return static_cast<double>(load_unaligned<int64_t>(p));
    case GgufValueType::kFloat32:
      return load_unaligned<float>(p);
    case GgufValueType::kFloat64:
      return load_unaligned<double>(p);
    case GgufValueType::kBool:
      return load_unaligned<uint8_t>(p) != 0;
    default:
      return 0;
  }
}

int64_t array_element_as_int(const GgufValue& v, uint64_t i) {
  const uint8_t* p = v.array_data + i * gguf_scalar_size(v.array_type);
  switch (v.array_type) {
    case GgufValueType::kUint64:
      return static_cast<int64_t>(load_unaligned<uint64_t>(p));
    case GgufValueType::kInt64:
      return load_unaligned<int64_t>(p);
    default:
      return static_cast<int64_t>(array_element_as_double(v, i));
  }
}

bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

}  // namespace

size_t gguf_scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "u8";
    case GgufValueType::kInt8:
      return "i8";
    case GgufValueType::kUint16:
      return "u16";
    case GgufValueType::kInt16:
      return "i16";
    case GgufValueType::kUint32:
      return "u32";
    case GgufValueType::kInt32:
      return "i32";
    case GgufValueType::kFloat32:
      return "f32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "str";
    case GgufValueType::kArray:
      return "arr";
    case GgufValueType::kUint64:
      return "u64";
    case GgufValueType::kInt64:
      return "i64";
    case GgufValueType::kFloat64:
      return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  return is_integer_type(type);
}

std::string GgufValue::to_display_string(size_t max_array_items) const {
  switch (type) {
    case GgufValueType::kString: {
      std::string s(str.substr(0, 200));
      if (str.size() > 200) s += "...";
      return fmt::format("\"{}\"", s);
    }
    case GgufValueType::kBool:
      return boolean ? "true" : "false";
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64:
      return fmt::format("{}", f64);
    case GgufValueType::kArray: {
      std::string s = fmt::format("[{} x {}]", array_count, gguf_value_type_name(array_type));
      s += " [";
      const uint64_t n = std::min<uint64_t>(array_count, max_array_items);
      for (uint64_t i = 0; i < n; ++i) {
        if (i) s += ", ";
        if (array_type == GgufValueType::kString) {
          s += fmt::format("\"{}\"", array_strings[i].substr(0, 40));
        } else if (array_type == GgufValueType::kFloat32 || array_type == GgufValueType::kFloat64) {
          s += fmt::format("{}", array_element_as_double(*this, i));
        } else {
          s += fmt::format("{}", array_element_as_int(*this, i));
        }
      }
      if (array_count > n) s += ", ...";
      return s + "]";
    }
    default:
      return fmt::format("{}", i64);
  }
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

GgufFile::~GgufFile() {
  if (owns_mapping_ && base_ != nullptr) munmap(const_cast<uint8_t*>(base_), size_);
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(errno == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                      "cannot open {}: {}", path, std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error(StatusCode::kIoError, "cannot stat {}: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(StatusCode::kInvalidArgument, "{} is not a regular file", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return make_error(StatusCode::kCorrupt, "{} is empty, not a GGUF file", path);
  }
  void* mapping = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (mapping == MAP_FAILED) {
    return make_error(StatusCode::kIoError, "cannot mmap {}: {}", path, std::strerror(err));
  }
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->base_ = static_cast<const uint8_t*>(mapping);
  file->size_ = size;
  file->owns_mapping_ = true;
  Status status = file->parse_all();
  if (!status.is_ok()) return status.with_context(path);
  return file;
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(std::span<const uint8_t> bytes,
                                                  std::string source_name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(source_name);
  file->base_ = bytes.data();
  file->size_ = bytes.size();
  Status status = file->parse_all();
  if (!status.is_ok()) return status.with_context(file->path_);
  return file;
}

Status GgufFile::parse_all() {
  Cursor cursor(base_, size_);
  uint32_t magic = 0;
  IG_RETURN_IF_ERROR(cursor.read(&magic, "magic"));
  if (magic != kGgufMagic) {
    return make_error(StatusCode::kCorrupt, "not a GGUF file (magic {:#010x}, expected {:#010x})",
                      magic, kGgufMagic);
  }
  IG_RETURN_IF_ERROR(cursor.read(&version_, "version"));
  if (version_ != 2 && version_ != 3) {
    return make_error(StatusCode::kUnsupported,
                      "GGUF version {} is not supported (supported: 2 and 3)", version_);
  }
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
  IG_RETURN_IF_ERROR(cursor.read(&n_tensors, "tensor count"));
  IG_RETURN_IF_ERROR(cursor.read(&n_kv, "metadata count"));
  // Each entry takes at least 12 bytes (key length + type), each tensor info at least 24.
  if (n_kv > cursor.remaining() / 12 || n_tensors > cursor.remaining() / 24) {
    return make_error(StatusCode::kCorrupt,
                      "header claims {} metadata entries and {} tensors, "
                      "more than the file can hold",
                      n_kv, n_tensors);
  }

  metadata_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string_view key;
    IG_RETURN_IF_ERROR(cursor.read_string(&key, "metadata key"));
    uint32_t raw_type = 0;
    IG_RETURN_IF_ERROR(cursor.read(&raw_type, "metadata value type"));
    if (!valid_value_type(raw_type)) {
      return make_error(StatusCode::kCorrupt, "metadata '{}' has invalid value type {}", key,
                        raw_type);
    }
    GgufValue value;
    Status status = read_value(cursor, static_cast<GgufValueType>(raw_type), &value);
    if (!status.is_ok()) return status.with_context(fmt::format("metadata '{}'", key));
    std::string key_string(key);
    if (metadata_index_.count(key_string)) {
      return make_error(StatusCode::kCorrupt, "duplicate metadata key '{}'", key);
    }
    metadata_index_.emplace(key_string, metadata_.size());
    metadata_.emplace_back(std::move(key_string), std::move(value));
  }

  if (const GgufValue* align = find("general.alignment")) {
    if (!align->is_integer() || align->i64 <= 0 || (align->i64 & (align->i64 - 1)) != 0) {
      return Status(StatusCode::kCorrupt, "general.alignment must be a positive power of two");
    }
    alignment_ = static_cast<uint64_t>(align->i64);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo info;
    std::string_view name;
    IG_RETURN_IF_ERROR(cursor.read_string(&name, "tensor name"));
    info.name = std::string(name);
    uint32_t n_dims = 0;
    IG_RETURN_IF_ERROR(cursor.read(&n_dims, "tensor dimension count"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return make_error(StatusCode::kCorrupt, "tensor '{}' has {} dimensions (1..{} allowed)", name,
                        n_dims, kMaxDims);
    }
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      IG_RETURN_IF_ERROR(cursor.read(&dim, "tensor dimension"));
      if (dim == 0 || dim > (uint64_t{1} << 40) ||
          n_elements > std::numeric_limits<int64_t>::max() / dim) {
        return make_error(StatusCode::kCorrupt, "tensor '{}' has invalid dimension {}", name, dim);
      }
      n_elements *= dim;
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    IG_RETURN_IF_ERROR(cursor.read(&info.raw_type, "tensor type"));
    IG_RETURN_IF_ERROR(cursor.read(&info.offset, "tensor offset"));
    if (is_supported_tensor_type(info.raw_type)) {
      info.type = static_cast<TensorType>(info.raw_type);
      const auto traits = tensor_type_traits(info.type);
      if (info.dims[0] % traits->block_elems != 0) {
        return make_error(StatusCode::kCorrupt,
                          "tensor '{}' row length {} is not a multiple of the {} block size {}",
                          name, info.dims[0], traits->name, traits->block_elems);
      }
      info.n_bytes = n_elements / traits->block_elems * traits->block_bytes;
    }
    if (tensor_index_.count(info.name)) {
      return make_error(StatusCode::kCorrupt, "duplicate tensor name '{}'", name);
    }
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  data_offset_ = (cursor.offset() + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && n_tensors > 0) {
    return make_error(StatusCode::kCorrupt, "file ends before its tensor data section");
  }
  for (auto& info : tensors_) {
    if (info.offset % alignment_ != 0) {
      return make_error(StatusCode::kCorrupt, "tensor '{}' offset {} is not {}-byte aligned",
                        info.name, info.offset, alignment_);
    }
    // Unsupported types have unknown sizes: leave them unchecked here; the model loader
    // rejects them by name if it needs them.
    if (!is_supported_tensor_type(info.raw_type)) continue;
    if (info.offset > size_ - data_offset_ || info.n_bytes > size_ - data_offset_ - info.offset) {
      return make_error(StatusCode::kCorrupt,
                        "tensor '{}' data ({} bytes at offset {}) extends past the end of the "
                        "file (truncated?)",
                        info.name, info.n_bytes, data_offset_ + info.offset);
    }
    info.data = base_ + data_offset_ + info.offset;
  }
  return Status::ok();
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

void GgufFile::release_pages(const uint8_t* p, size_t n) const {
  if (!owns_mapping_ || p < base_ || p + n > base_ + size_) return;
  // Only whole pages inside the range: the pages at its ends may hold other tensors' bytes.
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status wrong_type(std::string_view key, const GgufValue& v, const char* wanted) {
  std::string got = gguf_value_type_name(v.type);
  if (v.type == GgufValueType::kArray)
    got += std::string(" of ") + gguf_value_type_name(v.array_type);
  return make_error(StatusCode::kCorrupt, "metadata '{}' is {}, expected {}", key, got, wanted);
}
}  // namespace

Result<std::optional<std::string_view>> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<std::string_view>();
  if (v->type != GgufValueType::kString) return wrong_type(key, *v, "a string");
  return std::optional<std::string_view>(v->str);
}

Result<std::optional<int64_t>> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->type == GgufValueType::kBool) return std::optional<int64_t>(v->boolean ? 1 : 0);
  if (!v->is_integer()) return wrong_type(key, *v, "an integer");
  return std::optional<int64_t>(v->i64);
}

Result<std::optional<double>> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<double>();
  if (v->is_float()) return std::optional<double>(v->f64);
  if (v->is_integer()) return std::optional<double>(static_cast<double>(v->i64));
  return wrong_type(key, *v, "a number");
}

Result<std::optional<bool>> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<bool>();
  if (v->type == GgufValueType::kBool) return std::optional<bool>(v->boolean);
  if (v->is_integer()) return std::optional<bool>(v->i64 != 0);
  return wrong_type(key, *v, "a bool");
}

Result<std::optional<std::vector<std::string_view>>> GgufFile::get_string_array(
    std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<std::vector<std::string_view>>();
  if (v->type != GgufValueType::kArray || v->array_type != GgufValueType::kString) {
    return wrong_type(key, *v, "an array of strings");
  }
  return std::optional<std::vector<std::string_view>>(v->array_strings);
}

Result<std::optional<std::vector<float>>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<std::vector<float>>();
  if (v->type != GgufValueType::kArray || v->array_type == GgufValueType::kString) {
    return wrong_type(key, *v, "an array of numbers");
  }
  std::vector<float> out(v->array_count);
  for (uint64_t i = 0; i < v->array_count; ++i) {
    out[i] = static_cast<float>(array_element_as_double(*v, i));
  }
  return std::optional<std::vector<float>>(std::move(out));
}

Result<std::optional<std::vector<int64_t>>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<std::vector<int64_t>>();
  if (v->type != GgufValueType::kArray || !is_integer_type(v->array_type)) {
    return wrong_type(key, *v, "an array of integers");
  }
  std::vector<int64_t> out(v->array_count);
  for (uint64_t i = 0; i < v->array_count; ++i) out[i] = array_element_as_int(*v, i);
  return std::optional<std::vector<int64_t>>(std::move(out));
}

}  // namespace infergrid
