#include "kvstore/kv_transfer_frame.h"

#include <cstring>

#include <xxhash.h>

#include "kvstore/block_key.h"

namespace infergrid {
namespace {

constexpr size_t kMaxTransferIdBytes = 256;
constexpr size_t kMaxErrorBytes = 4096;
constexpr size_t kBlockFixedBytes = 4 + 8 + 8 + 8 + 4 + 4 + 8;
constexpr uint32_t kMaxBlockTokens = 1u << 16;

class Writer {
 public:
  explicit Writer(KvFrameType type) : type_(type), bytes_(kKvFrameHeaderBytes, 0) {}
  // Writes into `reuse`'s memory (its capacity is kept: no allocation for a frame that fits).
  Writer(KvFrameType type, std::vector<uint8_t>&& reuse) : type_(type), bytes_(std::move(reuse)) {
    bytes_.assign(kKvFrameHeaderBytes, 0);
  }
  template <typename T>
  void put(T value) {
    put_bytes(&value, sizeof(T));
  }
  void reserve(size_t n) { bytes_.reserve(n); }
  void put_bytes(const void* data, size_t n) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), bytes, bytes + n);
  }
  std::vector<uint8_t> finish() {
    const auto body_bytes = static_cast<uint32_t>(bytes_.size() - kKvFrameHeaderBytes);
    const uint64_t checksum = XXH3_64bits(bytes_.data() + kKvFrameHeaderBytes, body_bytes);
    uint8_t* h = bytes_.data();
    std::memcpy(h, &kKvFrameMagic, 4);
    h[4] = kKvFrameVersion;
    h[5] = static_cast<uint8_t>(type_);
    h[6] = h[7] = 0;
    std::memcpy(h + 8, &body_bytes, 4);
    std::memcpy(h + 12, &checksum, 8);
    return std::move(bytes_);
  }

 private:
  KvFrameType type_;
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  template <typename T>
  bool get(T& out) {
    if (bytes_.size() - at_ < sizeof(T)) return false;
    std::memcpy(&out, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  bool get_bytes(void* out, size_t n) {
    if (bytes_.size() - at_ < n) return false;
    if (n > 0) std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
    return true;
  }
  size_t left() const { return bytes_.size() - at_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

Status malformed(const char* what) {
  return make_error(StatusCode::kCorrupt, "malformed KV transfer frame: {}", what);
}

std::vector<uint8_t> count_frame(KvFrameType type, uint32_t n) {
  Writer w(type);
  w.put(n);
  return w.finish();
}

}  // namespace

std::vector<uint8_t> encode_hello(const KvTransferHello& hello) {
  Writer w(KvFrameType::kHello);
  w.put(hello.layout_tag);
  w.put(hello.block_size);
  w.put(hello.lease_ms);
  const std::string_view id = std::string_view(hello.transfer_id).substr(0, kMaxTransferIdBytes);
  w.put(static_cast<uint32_t>(id.size()));
  w.put_bytes(id.data(), id.size());
  return w.finish();
}

std::vector<uint8_t> encode_hello_ok() {
  return Writer(KvFrameType::kHelloOk).finish();
}

std::vector<uint8_t> encode_error(std::string_view message) {
  Writer w(KvFrameType::kError);
  message = message.substr(0, kMaxErrorBytes);
  w.put(static_cast<uint32_t>(message.size()));
  w.put_bytes(message.data(), message.size());
  return w.finish();
}

std::vector<uint8_t> encode_block(uint32_t seq, uint64_t key, uint64_t parent_key,
                                  uint64_t layout_tag, std::span<const int32_t> tokens,
                                  std::span<const uint8_t> payload, std::vector<uint8_t> reuse) {
  Writer w(KvFrameType::kBlock, std::move(reuse));
  w.reserve(kKvFrameHeaderBytes + kBlockFixedBytes + tokens.size_bytes() + payload.size());
  w.put(seq);
  w.put(key);
  w.put(parent_key);
  w.put(layout_tag);
  w.put(static_cast<uint32_t>(tokens.size()));
  w.put(static_cast<uint32_t>(payload.size()));
  w.put(kv_block_checksum(key, tokens, payload));
  w.put_bytes(tokens.data(), tokens.size_bytes());
  w.put_bytes(payload.data(), payload.size());
  return w.finish();
}

std::vector<uint8_t> encode_ack(const KvAck& ack) {
  Writer w(KvFrameType::kAck);
  w.put(ack.seq);
  w.put(static_cast<uint8_t>(ack.accepted ? 1 : 0));
  return w.finish();
}

std::vector<uint8_t> encode_end(uint32_t n_blocks) {
  return count_frame(KvFrameType::kEnd, n_blocks);
}
std::vector<uint8_t> encode_done(uint32_t n_stored) {
  return count_frame(KvFrameType::kDone, n_stored);
}

Result<KvFrameHeader> decode_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kKvFrameHeaderBytes) return malformed("short header");
  uint32_t magic = 0;
  std::memcpy(&magic, bytes.data(), 4);
  if (magic != kKvFrameMagic) return malformed("bad magic (not an infergrid KV transfer)");
  if (bytes[4] != kKvFrameVersion) return malformed("unknown protocol version");
  if (bytes[6] != 0 || bytes[7] != 0) return malformed("reserved header bytes are set");
  const uint8_t type = bytes[5];
  if (type < static_cast<uint8_t>(KvFrameType::kHello) ||
      type > static_cast<uint8_t>(KvFrameType::kDone)) {
    return malformed("unknown frame type");
  }
  KvFrameHeader h;
  h.type = static_cast<KvFrameType>(type);
  std::memcpy(&h.body_bytes, bytes.data() + 8, 4);
  std::memcpy(&h.body_checksum, bytes.data() + 12, 8);
  if (h.body_bytes > kMaxFrameBodyBytes) return malformed("body over the frame size limit");
  return h;
}

size_t block_fixed_bytes() {
  return kBlockFixedBytes;
}

Result<KvBlockFrame> decode_block_fixed(std::span<const uint8_t> fixed, uint32_t body_bytes) {
  if (fixed.size() != kBlockFixedBytes || body_bytes < kBlockFixedBytes) {
    return malformed("short block");
  }
  Reader r(fixed);
  KvBlockFrame b;
  uint32_t n_tokens = 0, payload_bytes = 0;
  (void)(r.get(b.seq) && r.get(b.key) && r.get(b.parent_key) && r.get(b.layout_tag) &&
         r.get(n_tokens) && r.get(payload_bytes) && r.get(b.block_checksum));
  if (n_tokens > kMaxBlockTokens ||
      static_cast<uint64_t>(n_tokens) * 4 + payload_bytes != body_bytes - kBlockFixedBytes) {
    return malformed("block lengths disagree with the frame");
  }
  b.tokens.resize(n_tokens);
  b.payload.resize(payload_bytes);
  return b;
}

bool body_intact(const KvFrameHeader& header, std::span<const uint8_t> body) {
  return body.size() == header.body_bytes &&
         XXH3_64bits(body.data(), body.size()) == header.body_checksum;
}

Result<KvTransferHello> decode_hello(std::span<const uint8_t> body) {
  Reader r(body);
  KvTransferHello h;
  uint32_t id_bytes = 0;
  if (!r.get(h.layout_tag) || !r.get(h.block_size) || !r.get(h.lease_ms) || !r.get(id_bytes)) {
    return malformed("short hello");
  }
  if (id_bytes > kMaxTransferIdBytes || id_bytes != r.left()) return malformed("bad transfer id");
  h.transfer_id.resize(id_bytes);
  if (!r.get_bytes(h.transfer_id.data(), id_bytes)) return malformed("short transfer id");
  return h;
}

Result<std::string> decode_error(std::span<const uint8_t> body) {
  Reader r(body);
  uint32_t n = 0;
  if (!r.get(n) || n > kMaxErrorBytes || n != r.left()) return malformed("bad error message");
  std::string message(n, '\0');
  if (!r.get_bytes(message.data(), n)) return malformed("short error message");
  return message;
}

Result<KvBlockFrame> decode_block(std::span<const uint8_t> body) {
  if (body.size() < kBlockFixedBytes) return malformed("short block");
  auto b = decode_block_fixed(body.first(kBlockFixedBytes), static_cast<uint32_t>(body.size()));
  if (!b.is_ok()) return b;
  // decode_block_fixed sized tokens and payload to exactly the rest of the body.
  Reader r(body.subspan(kBlockFixedBytes));
  (void)(r.get_bytes(b->tokens.data(), b->tokens.size() * sizeof(int32_t)) &&
         r.get_bytes(b->payload.data(), b->payload.size()));
  return b;
}

Result<KvAck> decode_ack(std::span<const uint8_t> body) {
  Reader r(body);
  KvAck a;
  uint8_t accepted = 0;
  if (!r.get(a.seq) || !r.get(accepted) || r.left() != 0 || accepted > 1) {
    return malformed("bad ack");
  }
  a.accepted = accepted == 1;
  return a;
}

Result<uint32_t> decode_count(std::span<const uint8_t> body) {
  Reader r(body);
  uint32_t n = 0;
  if (!r.get(n) || r.left() != 0) return malformed("bad count");
  return n;
}

}  // namespace infergrid
