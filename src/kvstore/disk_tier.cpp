#include "kvstore/disk_tier.h"

#include <fcntl.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace infergrid {

namespace {

constexpr uint64_t kMagic = 0x6b76626c6b494731ULL;  // "1GIklbvk": infergrid KV block
constexpr uint32_t kFormatVersion = 1;

struct FileHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t n_tokens;
  uint64_t key;
  uint64_t parent_key;
  uint64_t layout_tag;
  uint64_t payload_bytes;
  uint64_t checksum;  // XXH3 over the header (this field zero), tokens and payload
};
static_assert(sizeof(FileHeader) == 56);

uint64_t checksum_of(FileHeader header, std::span<const int32_t> tokens,
                     std::span<const uint8_t> payload) {
  header.checksum = 0;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, &header, sizeof(header));
  XXH3_64bits_update(state, tokens.data(), tokens.size_bytes());
  XXH3_64bits_update(state, payload.data(), payload.size());
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return sum;
}

bool write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

DiskTier::DiskTier(std::filesystem::path dir, uint64_t capacity_bytes, uint64_t layout_tag,
                   int block_tokens)
    : dir_(std::move(dir)),
      capacity_bytes_(capacity_bytes),
      layout_tag_(layout_tag),
      block_tokens_(block_tokens) {
  stats_.capacity_bytes = capacity_bytes;
}

std::filesystem::path DiskTier::path_for(uint64_t key) const {
  return dir_ / fmt::format("{:016x}.kvb", key);
}

size_t DiskTier::file_bytes(size_t payload_bytes) const {
  return sizeof(FileHeader) + static_cast<size_t>(block_tokens_) * sizeof(int32_t) + payload_bytes;
}

Status DiskTier::open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec)
    return make_error(StatusCode::kIoError, "cannot create {}: {}", dir_.string(), ec.message());
  std::lock_guard lock(mutex_);
  index_.clear();
  lru_.clear();
  // Oldest first by modification time, so the LRU order survives a restart approximately.
  std::vector<std::pair<std::filesystem::file_time_type, std::filesystem::path>> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const auto& path = entry.path();
    if (path.extension() == ".tmp") {
      std::filesystem::remove(path, ec);  // an interrupted write: never a valid block
      continue;
    }
    if (path.extension() != ".kvb") continue;
    files.emplace_back(entry.last_write_time(ec), path);
  }
  std::sort(files.begin(), files.end());
  for (const auto& [time, path] : files) {
    // Only the header is checked here (cheap); the checksum is verified on every read.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    FileHeader h{};
    const bool ok = fd >= 0 && read_all(fd, &h, sizeof(h)) && h.magic == kMagic &&
                    h.version == kFormatVersion && h.layout_tag == layout_tag_ &&
                    h.n_tokens == static_cast<uint32_t>(block_tokens_) &&
                    path.filename() == path_for(h.key).filename() &&
                    std::filesystem::file_size(path, ec) == file_bytes(h.payload_bytes);
    if (fd >= 0) ::close(fd);
    if (!ok) {
      // Blocks of another layout (another model, quantization or block size) are stale here;
      // anything else that fails is damaged.
      const bool other_layout = h.magic == kMagic && h.layout_tag != layout_tag_;
      std::filesystem::remove(path, ec);
      if (!other_layout) ++stats_.dropped_corrupt;
      continue;
    }
    const uint64_t bytes = file_bytes(h.payload_bytes);
    lru_.push_front(h.key);
    index_[h.key] = {bytes, h.parent_key, 0, lru_.begin()};
    stats_.used_bytes += bytes;
  }
  for (const auto& [key, entry] : index_) add_child_locked(entry.parent_key, key);
  while (stats_.used_bytes > capacity_bytes_ && evict_one_locked(std::nullopt)) {
  }
  stats_.blocks = index_.size();
  return Status::ok();
}

bool DiskTier::contains(uint64_t key) {
  std::lock_guard lock(mutex_);
  return index_.count(key) > 0;
}

void DiskTier::set_event_observer(EventObserver observer) {
  std::lock_guard lock(mutex_);
  observer_ = std::move(observer);
  if (observer_) {
    for (const auto& [key, entry] : index_) observer_(true, key);
  }
}

void DiskTier::erase_locked(uint64_t key, bool count_as_eviction) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  std::error_code ec;
  std::filesystem::remove(path_for(key), ec);
  stats_.used_bytes -= it->second.bytes;
  if (it->second.children == 0) lru_.erase(it->second.lru);
  const uint64_t parent_key = it->second.parent_key;
  index_.erase(it);
  if (observer_) observer_(false, key);
  remove_child_locked(parent_key, key);
  if (count_as_eviction) ++stats_.evicted;
  stats_.blocks = index_.size();
}

bool DiskTier::evict_one_locked(std::optional<uint64_t> keep) {
  if (!lru_.empty()) {
    auto victim = std::prev(lru_.end());
    if (*victim == keep) {
      if (victim == lru_.begin()) return false;  // the only leaf is the one to keep
      --victim;
    }
    erase_locked(*victim, true);
    return true;
  }
  // No leaf but blocks left (parent links that form a cycle, which only damage or a hash
  // collision can make): any block goes rather than none.
  for (const auto& [key, entry] : index_) {
    if (key != keep) {
      erase_locked(key, true);
      return true;
    }
  }
  return false;
}

void DiskTier::add_child_locked(uint64_t parent_key, uint64_t child_key) {
  if (parent_key == child_key) return;
  auto it = index_.find(parent_key);
  if (it == index_.end()) return;
  if (it->second.children++ == 0) lru_.erase(it->second.lru);
}

void DiskTier::remove_child_locked(uint64_t parent_key, uint64_t child_key) {
  if (parent_key == child_key) return;
  auto it = index_.find(parent_key);
  if (it == index_.end() || it->second.children == 0) return;
  // A parent left without children is the next candidate: its chain is going cold from the end.
  if (--it->second.children == 0) it->second.lru = lru_.insert(lru_.end(), parent_key);
}

Status DiskTier::put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                     std::span<const uint8_t> payload) {
  if (static_cast<int>(tokens.size()) != block_tokens_) {
    return make_error(StatusCode::kInvalidArgument, "a block holds {} tokens, got {}",
                      block_tokens_, tokens.size());
  }
  const uint64_t bytes = file_bytes(payload.size());
  if (bytes > capacity_bytes_) return Status::ok();  // cannot fit at all: not stored
  {
    std::lock_guard lock(mutex_);
    if (index_.count(key)) return Status::ok();
  }
  FileHeader h{kMagic,
               kFormatVersion,
               static_cast<uint32_t>(tokens.size()),
               key,
               parent_key,
               layout_tag_,
               payload.size(),
               0};
  h.checksum = checksum_of(h, tokens, payload);
  // A unique temporary name per writer; only a complete, flushed file is renamed into place.
  const auto final_path = path_for(key);
  const auto tmp_path =
      dir_ / fmt::format("{:016x}.{}.{}.tmp", key, ::getpid(), reinterpret_cast<uintptr_t>(&h));
  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(StatusCode::kIoError, "cannot create {}: {}", tmp_path.string(),
                      std::strerror(errno));
  }
  const bool written = write_all(fd, &h, sizeof(h)) &&
                       write_all(fd, tokens.data(), tokens.size_bytes()) &&
                       write_all(fd, payload.data(), payload.size()) && ::fdatasync(fd) == 0;
  ::close(fd);
  std::error_code ec;
  if (!written) {
    std::filesystem::remove(tmp_path, ec);
    return make_error(StatusCode::kIoError, "cannot write {}: {}", tmp_path.string(),
                      std::strerror(errno));
  }
  std::lock_guard lock(mutex_);
  // The new block's parent is kept while anything else can go: evicting it would leave the
  // new block unreachable.
  while (stats_.used_bytes + bytes > capacity_bytes_ &&
         (evict_one_locked(parent_key) || evict_one_locked(std::nullopt))) {
  }
  std::filesystem::rename(tmp_path, final_path, ec);
  if (ec) {
    std::filesystem::remove(tmp_path, ec);
    return make_error(StatusCode::kIoError, "cannot rename into {}", final_path.string());
  }
  if (!index_.count(key)) {
    lru_.push_front(key);
    index_[key] = {bytes, parent_key, 0, lru_.begin()};
    stats_.used_bytes += bytes;
    add_child_locked(parent_key, key);
    if (observer_) observer_(true, key);
  }
  ++stats_.stored;
  stats_.bytes_written += bytes;
  stats_.blocks = index_.size();
  return Status::ok();
}

Result<bool> DiskTier::get(uint64_t key, std::span<const int32_t> tokens,
                           std::span<uint8_t> payload) {
  {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return false;
    }
    if (it->second.children == 0) lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  const auto path = path_for(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {  // evicted by another thread meanwhile
    std::lock_guard lock(mutex_);
    ++stats_.misses;
    return false;
  }
  FileHeader h{};
  std::vector<int32_t> stored_tokens(tokens.size());
  bool ok = read_all(fd, &h, sizeof(h)) && h.magic == kMagic && h.version == kFormatVersion &&
            h.key == key && h.layout_tag == layout_tag_ && h.n_tokens == tokens.size() &&
            h.payload_bytes == payload.size() &&
            read_all(fd, stored_tokens.data(), stored_tokens.size() * sizeof(int32_t)) &&
            read_all(fd, payload.data(), payload.size());
  ::close(fd);
  ok = ok && checksum_of(h, stored_tokens, payload) == h.checksum;
  std::lock_guard lock(mutex_);
  if (!ok) {
    ++stats_.dropped_corrupt;
    ++stats_.misses;
    erase_locked(key, false);
    return false;
  }
  if (!std::equal(stored_tokens.begin(), stored_tokens.end(), tokens.begin())) {
    ++stats_.misses;  // a key collision: intact, but not this block
    return false;
  }
  ++stats_.hits;
  stats_.bytes_read += file_bytes(payload.size());
  return true;
}

TierStats DiskTier::stats() {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace infergrid
