// Byte-level BPE encoding (llama.cpp "BPE" with a GPT-2 style vocabulary): pre-tokenize, map
// every byte of a piece to GPT-2's printable code point, then repeatedly merge the adjacent pair
// with the lowest merge rank (leftmost on ties) until no listed merge applies.
//
// Every byte has a single-character token in a well-formed byte-level vocabulary, so encoding
// never loses input; if a vocabulary lacks one, the unknown token stands in (llama.cpp would
// drop the byte instead).
#include <queue>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/unicode_util.h"

namespace infergrid {
namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;  // byte offset into the encoded piece
  uint32_t n;      // byte length; 0 once merged into its left neighbour
};

struct Bigram {
  int32_t left;
  int32_t right;
  int32_t rank;
  uint32_t left_n;  // symbol lengths when queued, to recognise stale entries
  uint32_t right_n;
};

struct BigramOrder {
  // Lowest rank first, then leftmost.
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces;
  pre_tokenizer_->split(text, pieces);
  std::string encoded;
  for (std::string_view piece : pieces) {
    encoded.clear();
    for (char c : piece) encoded.append(gpt2_byte_to_utf8(static_cast<uint8_t>(c)));
    encode_bpe_word(encoded, out);
  }
}

void Tokenizer::encode_bpe_word(std::string_view encoded, std::vector<int32_t>& out) const {
  if (encoded.empty()) return;
  if (ignore_merges_) {
    const int32_t id = lookup(encoded);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(encoded.size());
  for (size_t offset = 0; offset < encoded.size();) {
    const size_t n = std::min(utf8_sequence_length(static_cast<uint8_t>(encoded[offset])),
                              encoded.size() - offset);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, offset + n == encoded.size() ? -1 : index + 1,
                       static_cast<uint32_t>(offset), static_cast<uint32_t>(n)});
    offset += n;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  std::string key;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<size_t>(left)];
    const Symbol& r = symbols[static_cast<size_t>(right)];
    key.assign(encoded.substr(l.start, l.n));
    key.push_back(' ');
    key.append(encoded.substr(r.start, r.n));
    const auto it = merge_rank_.find(std::string_view(key));
    if (it == merge_rank_.end()) return;
    queue.push({left, right, it->second, l.n, r.n});
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(bigram.left)];
    Symbol& right = symbols[static_cast<size_t>(bigram.right)];
    if (left.n == 0 || right.n == 0 || left.n != bigram.left_n || right.n != bigram.right_n) {
      continue;
    }
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& symbol = symbols[static_cast<size_t>(i)];
    const std::string_view piece = encoded.substr(symbol.start, symbol.n);
    const int32_t id = lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A merge produced text that is not a token: fall back to one token per byte.
    for (size_t pos = 0; pos < piece.size();) {
      const size_t n =
          std::min(utf8_sequence_length(static_cast<uint8_t>(piece[pos])), piece.size() - pos);
      const int32_t char_id = lookup(piece.substr(pos, n));
      const int32_t fallback = char_id >= 0 ? char_id : vocab_.unk_id;
      if (fallback >= 0) out.push_back(fallback);
      pos += n;
    }
  }
}

}  // namespace infergrid
