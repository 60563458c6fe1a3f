#include "grammar/schema_pattern.h"

#include <algorithm>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "grammar/gbnf_pieces.h"
#include "model/unicode_util.h"

namespace infergrid {

namespace {

using gbnf::complemented;
using gbnf::gbnf_alternatives;
using gbnf::gbnf_literal;
using gbnf::json_char_expression;
using gbnf::normalized;
using gbnf::Range;

using gbnf::kMaxDepth;
using gbnf::kMaxRepeat;

// A regular-expression subset (ECMA-262 as JSON Schema specifies it) to a GBNF expression over
// the JSON encoding of the matched string. Shorthand classes are read conservatively (\d is
// [0-9], \D and \W and \S only ASCII), so the output matches under every common regex dialect.
class PatternConverter {
 public:
  PatternConverter(std::string_view pattern, std::string where)
      : p_(pattern), where_(std::move(where)) {}

  Result<std::string> convert() {
    bool anchored_start = false;
    if (!p_.empty() && p_[0] == '^') {
      anchored_start = true;
      ++pos_;
    }
    bool top_level_alternation = false;
    IG_ASSIGN_OR_RETURN(std::string expr, alternation(0, &top_level_alternation));
    if (pos_ != p_.size()) return error("unbalanced ')'");
    if (top_level_alternation && (anchored_start || anchored_end_)) {
      return error("an anchor beside a top-level '|' (wrap the alternatives in a group)");
    }
    std::string out;
    if (!anchored_start) out += "char* ";
    out += "( " + expr + " )";
    if (!anchored_end_) out += " char*";
    return out;
  }

 private:
  Status error(std::string_view what) const {
    return make_error(StatusCode::kInvalidArgument,
                      "{}: the pattern \"{}\" is not supported: {} (at offset {})", where_, p_,
                      what, pos_);
  }

  Result<std::string> alternation(int depth, bool* several) {
    if (depth > kMaxDepth) return error("groups nested too deeply");
    std::vector<std::string> alternatives;
    while (true) {
      IG_ASSIGN_OR_RETURN(std::string s, sequence(depth));
      alternatives.push_back(s.empty() ? "\"\"" : s);
      if (pos_ < p_.size() && p_[pos_] == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    if (several) *several = alternatives.size() > 1;
    return gbnf_alternatives(alternatives);
  }

  Result<std::string> sequence(int depth) {
    std::string out;
    while (pos_ < p_.size()) {
      const char c = p_[pos_];
      if (c == '|' || c == ')') break;
      if (c == '$') {
        if (depth == 0 && pos_ + 1 == p_.size()) {
          anchored_end_ = true;
          ++pos_;
          break;
        }
        return error("'$' before the end of the pattern");
      }
      if (c == '^') return error("'^' after the start of the pattern");
      IG_ASSIGN_OR_RETURN(std::string atom_expr, atom(depth));
      IG_ASSIGN_OR_RETURN(std::string quantified, quantifier(std::move(atom_expr)));
      if (!out.empty()) out += " ";
      out += quantified;
    }
    return out;
  }

  Result<std::string> quantifier(std::string atom_expr) {
    if (pos_ >= p_.size()) return atom_expr;
    const char c = p_[pos_];
    std::string suffix;
    if (c == '*' || c == '+' || c == '?') {
      suffix = std::string(1, c);
      ++pos_;
    } else if (c == '{') {
      size_t p = pos_ + 1;
      auto number = [&](int& value) {
        const size_t start = p;
        int64_t v = 0;
        while (p < p_.size() && std::isdigit(static_cast<unsigned char>(p_[p]))) {
          v = std::min<int64_t>(v * 10 + (p_[p] - '0'), kMaxRepeat + 1);
          ++p;
        }
        value = static_cast<int>(v);
        return p > start;
      };
      int min = 0;
      int max = -1;
      if (!number(min)) return atom_expr;  // a literal '{', as regex dialects read it
      if (p < p_.size() && p_[p] == ',') {
        ++p;
        if (!number(max)) max = -1;
      } else {
        max = min;
      }
      if (p >= p_.size() || p_[p] != '}') return atom_expr;
      if (min > kMaxRepeat || max > kMaxRepeat) return error("a repetition count over 10000");
      if (max >= 0 && max < min) return error("a repetition {m,n} with n < m");
      pos_ = p + 1;
      suffix = max < 0 ? fmt::format("{{{},}}", min) : fmt::format("{{{},{}}}", min, max);
    } else {
      return atom_expr;
    }
    if (pos_ < p_.size() && p_[pos_] == '?') ++pos_;  // lazy: the same strings
    if (pos_ < p_.size() && (p_[pos_] == '+' || p_[pos_] == '*' || p_[pos_] == '{')) {
      return error("a quantifier after a quantifier");
    }
    return "( " + atom_expr + " )" + suffix;
  }

  Result<uint32_t> hex_escape(int digits) {
    uint32_t value = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= p_.size() || !std::isxdigit(static_cast<unsigned char>(p_[pos_]))) {
        return error("a malformed hex escape");
      }
      const char h = p_[pos_++];
      value = value * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : std::tolower(h) - 'a' + 10);
    }
    return value;
  }

  // One escape after '\' (pos_ at the letter). Shorthand classes set *cls.
  Result<std::vector<Range>> escape(bool in_class) {
    if (pos_ >= p_.size()) return error("a trailing '\\'");
    const char c = p_[pos_++];
    static const std::vector<Range> kDigit = {{'0', '9'}};
    static const std::vector<Range> kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const std::vector<Range> kSpace = {{'\t', '\r'}, {' ', ' '}};
    static const std::vector<Range> kAllSpace = {{'\t', '\r'}, {0x1C, ' '}};
    switch (c) {
      case 'd':
        return kDigit;
      case 'w':
        return kWord;
      case 's':
        return kSpace;
      case 'D':
        return complemented(kDigit, 0x7F);
      case 'W':
        return complemented(kWord, 0x7F);
      case 'S':
        return complemented(kAllSpace, 0x7F);
      case 'n':
        return std::vector<Range>{{'\n', '\n'}};
      case 't':
        return std::vector<Range>{{'\t', '\t'}};
      case 'r':
        return std::vector<Range>{{'\r', '\r'}};
      case 'f':
        return std::vector<Range>{{'\f', '\f'}};
      case 'v':
        return std::vector<Range>{{'\v', '\v'}};
      case '0':
        return std::vector<Range>{{0, 0}};
      case 'x': {
        IG_ASSIGN_OR_RETURN(const uint32_t v, hex_escape(2));
        return std::vector<Range>{{v, v}};
      }
      case 'u': {
        IG_ASSIGN_OR_RETURN(const uint32_t v, hex_escape(4));
        if (v >= 0xD800 && v <= 0xDFFF) return error("a surrogate escape");
        return std::vector<Range>{{v, v}};
      }
      case 'b':
        if (in_class) return std::vector<Range>{{'\b', '\b'}};
        return error("a word boundary '\\b'");
      default:
        if (std::isalnum(static_cast<unsigned char>(c))) {
          return error(fmt::format("the escape '\\{}'", c));
        }
        return std::vector<Range>{{static_cast<uint32_t>(static_cast<unsigned char>(c)),
                                   static_cast<uint32_t>(static_cast<unsigned char>(c))}};
    }
  }

  Result<uint32_t> literal_codepoint() {
    size_t length = 0;
    auto cp = decode_utf8(p_, pos_, &length);
    if (!cp) return error("invalid UTF-8");
    pos_ += length;
    return *cp;
  }

  Result<std::string> atom(int depth) {
    const char c = p_[pos_];
    if (c == '(') {
      ++pos_;
      if (p_.substr(pos_, 2) == "?:") {
        pos_ += 2;
      } else if (p_.substr(pos_, 2) == "?<" && p_.substr(pos_, 3) != "?<=" &&
                 p_.substr(pos_, 3) != "?<!") {
        const size_t close = p_.find('>', pos_);
        if (close == std::string_view::npos) return error("an unterminated group name");
        pos_ = close + 1;
      } else if (pos_ < p_.size() && p_[pos_] == '?') {
        return error("lookaround or a group flag");
      }
      IG_ASSIGN_OR_RETURN(std::string inner, alternation(depth + 1, nullptr));
      if (pos_ >= p_.size() || p_[pos_] != ')') return error("a missing ')'");
      ++pos_;
      return "( " + inner + " )";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return json_char_expression(
          complemented({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}, 0x10FFFF));
    }
    if (c == '*' || c == '+' || c == '?') return error("a quantifier with nothing to repeat");
    if (c == '\\') {
      ++pos_;
      if (pos_ < p_.size() && std::isdigit(static_cast<unsigned char>(p_[pos_])) &&
          p_[pos_] != '0') {
        return error("a back-reference");
      }
      IG_ASSIGN_OR_RETURN(std::vector<Range> ranges, escape(false));
      return json_char_expression(ranges);
    }
    IG_ASSIGN_OR_RETURN(const uint32_t cp, literal_codepoint());
    return json_char_expression({{cp, cp}});
  }

  Result<std::string> char_class() {
    ++pos_;  // '['
    bool negated = false;
    if (pos_ < p_.size() && p_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<Range> ranges;
    bool shorthand = false;
    bool first = true;
    while (true) {
      if (pos_ >= p_.size()) return error("an unterminated character class");
      if (p_[pos_] == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      std::vector<Range> item;
      if (p_[pos_] == '\\') {
        ++pos_;
        const char letter = pos_ < p_.size() ? p_[pos_] : 0;
        shorthand |= std::string_view("dDwWsS").find(letter) != std::string_view::npos;
        IG_ASSIGN_OR_RETURN(item, escape(true));
      } else {
        IG_ASSIGN_OR_RETURN(const uint32_t cp, literal_codepoint());
        item = {{cp, cp}};
      }
      if (item.size() == 1 && item[0].lo == item[0].hi && pos_ + 1 < p_.size() && p_[pos_] == '-' &&
          p_[pos_ + 1] != ']') {
        ++pos_;
        std::vector<Range> upper;
        if (p_[pos_] == '\\') {
          ++pos_;
          IG_ASSIGN_OR_RETURN(upper, escape(true));
        } else {
          IG_ASSIGN_OR_RETURN(const uint32_t cp, literal_codepoint());
          upper = {{cp, cp}};
        }
        if (upper.size() != 1 || upper[0].lo != upper[0].hi) {
          return error("a range ending in a class");
        }
        if (upper[0].lo < item[0].lo) return error("a reversed range");
        item = {{item[0].lo, upper[0].lo}};
      }
      ranges.insert(ranges.end(), item.begin(), item.end());
    }
    if (negated) {
      // With a shorthand inside, dialects disagree about non-ASCII characters: stay in ASCII.
      ranges = complemented(ranges, shorthand ? 0x7F : 0x10FFFF);
      std::vector<Range> no_surrogates;
      for (Range r : ranges) {
        if (r.hi < 0xD800 || r.lo > 0xDFFF) {
          no_surrogates.push_back(r);
          continue;
        }
        if (r.lo < 0xD800) no_surrogates.push_back({r.lo, 0xD7FF});
        if (r.hi > 0xDFFF) no_surrogates.push_back({0xE000, r.hi});
      }
      ranges = std::move(no_surrogates);
    }
    if (ranges.empty()) return error("a class that matches nothing");
    return json_char_expression(ranges);
  }

  std::string_view p_;
  std::string where_;
  size_t pos_ = 0;
  bool anchored_end_ = false;
};

}  // namespace

Result<std::string> pattern_to_gbnf(std::string_view pattern, const std::string& where) {
  return PatternConverter(pattern, where).convert();
}

}  // namespace infergrid
