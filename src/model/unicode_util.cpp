#include "model/unicode_util.h"

namespace infergrid {
namespace {

constexpr bool is_gpt2_printable(int b) {
  return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

struct Gpt2Tables {
  std::array<uint16_t, 256> byte_to_cp{};
  std::array<int16_t, 256 + 68> cp_to_byte{};  // every mapped code point is below 324
  std::array<uint8_t, 256> rank_to_byte{};
  std::array<std::array<char, 2>, 256> utf8{};
  std::array<uint8_t, 256> utf8_len{};
};

constexpr Gpt2Tables make_gpt2_tables() {
  Gpt2Tables t;
  for (auto& v : t.cp_to_byte) v = -1;
  int n_other = 0;
  int rank = 0;
  for (int b = 0; b < 256; ++b) {
    if (is_gpt2_printable(b)) t.rank_to_byte[rank++] = static_cast<uint8_t>(b);
  }
  for (int b = 0; b < 256; ++b) {
    uint16_t cp = 0;
    if (is_gpt2_printable(b)) {
      cp = static_cast<uint16_t>(b);
    } else {
      cp = static_cast<uint16_t>(256 + n_other++);
      t.rank_to_byte[rank++] = static_cast<uint8_t>(b);
    }
    t.byte_to_cp[b] = cp;
    t.cp_to_byte[cp] = static_cast<int16_t>(b);
    if (cp < 0x80) {
      t.utf8[b] = {static_cast<char>(cp), 0};
      t.utf8_len[b] = 1;
    } else {
      t.utf8[b] = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
      t.utf8_len[b] = 2;
    }
  }
  return t;
}

constexpr Gpt2Tables kGpt2 = make_gpt2_tables();

}  // namespace

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::optional<uint32_t> decode_utf8(std::string_view text, size_t pos, size_t* length) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  size_t n = 0;
  uint32_t cp = 0;
  uint32_t min_cp = 0;
  if (lead < 0x80) {
    *length = 1;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    n = 2, cp = lead & 0x1F, min_cp = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    n = 3, cp = lead & 0x0F, min_cp = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    n = 4, cp = lead & 0x07, min_cp = 0x10000;
  } else {
    return std::nullopt;
  }
  if (pos + n > text.size()) return std::nullopt;
  for (size_t i = 1; i < n; ++i) {
    const uint8_t c = byte(pos + i);
    if ((c & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  *length = n;
  return cp;
}

bool is_valid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = 0;
    if (!decode_utf8(text, pos, &n)) return false;
    pos += n;
  }
  return true;
}

size_t utf8_complete_prefix_length(std::string_view bytes) {
  // Only the last three bytes can start an unfinished sequence (sequences are <= 4 bytes).
  const size_t size = bytes.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    const size_t pos = size - back;
    const uint8_t c = static_cast<uint8_t>(bytes[pos]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0) {
      need = 2;
    } else if ((c & 0xF0) == 0xE0) {
      need = 3;
    } else if ((c & 0xF8) == 0xF0) {
      need = 4;
    }
    // An incomplete sequence is held only while it is a well-formed beginning: lead byte
    // followed by continuation bytes only (checked by the loop above), fewer than needed.
    return (need > back) ? pos : size;
  }
  return size;
}

uint32_t gpt2_byte_to_codepoint(uint8_t byte) {
  return kGpt2.byte_to_cp[byte];
}

std::optional<uint8_t> gpt2_codepoint_to_byte(uint32_t cp) {
  if (cp >= kGpt2.cp_to_byte.size() || kGpt2.cp_to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(kGpt2.cp_to_byte[cp]);
}

std::string_view gpt2_byte_to_utf8(uint8_t byte) {
  return std::string_view(kGpt2.utf8[byte].data(), kGpt2.utf8_len[byte]);
}

std::string gpt2_encode_bytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out.append(gpt2_byte_to_utf8(static_cast<uint8_t>(c)));
  return out;
}

uint8_t gpt2_byte_at_rank(int rank) {
  return kGpt2.rank_to_byte[static_cast<size_t>(rank)];
}

}  // namespace infergrid
