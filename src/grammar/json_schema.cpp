#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "model/unicode_util.h"

namespace infergrid {

namespace {

using ojson = nlohmann::ordered_json;

constexpr int kMaxDepth = 64;
constexpr int kMaxRepeat = 10000;
// Unbounded integers stop at 18 digits: every value still validates, and a model cannot spend
// its whole budget on one number.
constexpr int64_t kIntegerCap = 999999999999999999;

const std::map<std::string, std::string>& primitives() {
  static const std::map<std::string, std::string> kRules = {
      {"space", R"(( " " | "\n" [ \t]{0,20} )?)"},
      {"char", R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ))"},
      {"string", R"("\"" char* "\"" space)"},
      {"integer", R"("-"? ( "0" | [1-9] [0-9]{0,17} ) space)"},
      {"number",
       R"("-"? ( "0" | [1-9] [0-9]{0,17} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? space)"},
      {"boolean", R"(( "true" | "false" ) space)"},
      {"null", R"("null" space)"},
      {"value", "object | array | string | number | boolean | null"},
      {"object",
       R"("{" space ( string ":" space value ( "," space string ":" space value )* )? "}" space)"},
      {"array", R"("[" space ( value ( "," space value )* )? "]" space)"},
      {"day28", R"("0" [1-9] | "1" [0-9] | "2" [0-8])"},
      {"day30", R"(day28 | "29" | "30")"},
      {"day31", R"(day30 | "31")"},
      // Year 0000 is valid RFC 3339 but not a date most validators (Python's, for one) accept.
      {"year", R"([1-9] [0-9]{3} | "0" ( [1-9] [0-9]{2} | "0" ( [1-9] [0-9] | "0" [1-9] ) ))"},
      {"date",
       R"(year "-" ( ( "0" [13578] | "1" [02] ) "-" day31 | ( "0" [469] | "11" ) "-" day30 | "02" "-" day28 ))"},
      {"time",
       R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))"},
      {"date-time", R"(date "T" time)"},
      {"uuid", R"([0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12})"},
  };
  return kRules;
}

// Which primitives each primitive uses, so defining one defines what it needs.
const std::map<std::string, std::vector<std::string>>& primitive_uses() {
  static const std::map<std::string, std::vector<std::string>> kUses = {
      {"string", {"char", "space"}},
      {"integer", {"space"}},
      {"number", {"space"}},
      {"boolean", {"space"}},
      {"null", {"space"}},
      {"value", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", {"space", "string", "value"}},
      {"array", {"space", "value"}},
      {"day30", {"day28"}},
      {"day31", {"day30"}},
      {"date", {"year", "day28", "day30", "day31"}},
      {"date-time", {"date", "time"}},
  };
  return kUses;
}

std::string escape_codepoint(uint32_t cp) {
  if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
    return std::string(1, static_cast<char>(cp));
  }
  if (cp < 0x100) return fmt::format("\\x{:02X}", cp);
  if (cp < 0x10000) return fmt::format("\\u{:04X}", cp);
  return fmt::format("\\U{:08X}", cp);
}

// A GBNF string literal matching exactly `text` (UTF-8).
// One GBNF expression for any of `items` (at least one): a group only when there is a choice.
std::string gbnf_alternatives(const std::vector<std::string>& items) {
  if (items.size() == 1) return items[0];
  std::string out = "(";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? " | " : " ") + items[i];
  return out + " )";
}

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02X}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

struct Range {
  uint32_t lo, hi;
};

std::vector<Range> normalized(std::vector<Range> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](Range a, Range b) { return a.lo < b.lo; });
  std::vector<Range> out;
  for (Range r : ranges) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<Range> complemented(const std::vector<Range>& ranges, uint32_t max_cp) {
  std::vector<Range> out;
  uint32_t next = 0;
  for (Range r : normalized(ranges)) {
    if (r.lo > max_cp) break;
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= max_cp) out.push_back({next, max_cp});
  return out;
}

// The JSON encodings of one character from `ranges`: raw where JSON allows it, an escape for
// the quote, the backslash and control characters.
std::string json_char_expression(const std::vector<Range>& ranges) {
  std::vector<Range> raw;
  std::vector<std::string> escaped;
  auto add_escape = [&](uint32_t cp) {
    switch (cp) {
      case '"':
        escaped.push_back(R"("\\\"")");
        break;
      case '\\':
        escaped.push_back(R"("\\\\")");
        break;
      case '\n':
        escaped.push_back(R"("\\n")");
        break;
      case '\t':
        escaped.push_back(R"("\\t")");
        break;
      case '\r':
        escaped.push_back(R"("\\r")");
        break;
      default:
        escaped.push_back(fmt::format("\"\\\\u{:04x}\"", cp));
        break;
    }
  };
  for (Range r : normalized(ranges)) {
    for (uint32_t cp = r.lo; cp <= std::min<uint32_t>(r.hi, 0x5C); ++cp) {
      if (cp < 0x20 || cp == '"' || cp == '\\') add_escape(cp);
    }
    // The raw part: the range minus 0x00-0x1F, '"' and '\'.
    uint32_t lo = std::max<uint32_t>(r.lo, 0x20);
    for (uint32_t cut : {uint32_t{'"'}, uint32_t{'\\'}}) {
      if (lo <= cut && cut <= r.hi) {
        if (lo < cut) raw.push_back({lo, cut - 1});
        lo = cut + 1;
      }
    }
    if (lo <= r.hi) raw.push_back({lo, r.hi});
  }
  std::vector<std::string> alternatives;
  if (!raw.empty()) {
    std::string cls = "[";
    for (Range r : raw) {
      cls += escape_codepoint(r.lo);
      if (r.hi != r.lo) {
        cls.push_back('-');
        cls += escape_codepoint(r.hi);
      }
    }
    alternatives.push_back(cls + "]");
  }
  alternatives.insert(alternatives.end(), escaped.begin(), escaped.end());
  return gbnf_alternatives(alternatives);
}

// Canonical decimal integers from a to b, both with the same number of digits.
std::string same_length_range(const std::string& a, const std::string& b) {
  if (a == b) return gbnf_literal(a);
  if (a.size() == 1) return fmt::format("[{}-{}]", a[0], b[0]);
  if (a[0] == b[0]) {
    return gbnf_literal(a.substr(0, 1)) + " " + same_length_range(a.substr(1), b.substr(1));
  }
  std::vector<std::string> alternatives;
  const std::string a_rest = a.substr(1);
  const std::string b_rest = b.substr(1);
  char first_lo = a[0];
  char first_hi = b[0];
  if (a_rest.find_first_not_of('0') != std::string::npos) {
    alternatives.push_back(gbnf_literal(a.substr(0, 1)) + " " +
                           same_length_range(a_rest, std::string(a_rest.size(), '9')));
    ++first_lo;
  }
  std::string upper;
  if (b_rest.find_first_not_of('9') != std::string::npos) {
    upper = gbnf_literal(b.substr(0, 1)) + " " +
            same_length_range(std::string(b_rest.size(), '0'), b_rest);
    --first_hi;
  }
  if (first_lo <= first_hi) {
    alternatives.push_back(fmt::format("[{}-{}] [0-9]{{{}}}", first_lo, first_hi, a_rest.size()));
  }
  if (!upper.empty()) alternatives.push_back(upper);
  return gbnf_alternatives(alternatives);
}

// Canonical decimal integers from lo to hi (0 <= lo <= hi).
std::string unsigned_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  int64_t start = lo;
  while (start <= hi) {
    const std::string s = std::to_string(start);
    int64_t length_max = 9;
    for (size_t i = 1; i < s.size(); ++i) length_max = length_max * 10 + 9;
    const int64_t end = std::min(hi, length_max);
    alternatives.push_back(same_length_range(s, std::to_string(end)));
    if (end == hi) break;
    start = end + 1;
  }
  return gbnf_alternatives(alternatives);
}

std::string integer_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  if (lo < 0) alternatives.push_back("\"-\" " + unsigned_range(hi < 0 ? -hi : 1, -lo));
  if (hi >= 0) alternatives.push_back(unsigned_range(std::max<int64_t>(lo, 0), hi));
  return gbnf_alternatives(alternatives);
}

bool is_annotation_or_structural(const std::string& key) {
  static const std::set<std::string> kIgnored = {
      "$schema",  "$id",          "$comment",         "$defs",           "definitions",
      "title",    "description",  "examples",         "default",         "deprecated",
      "readOnly", "writeOnly",    "contentMediaType", "contentEncoding", "$anchor",
      "strict",   "discriminator"};
  return kIgnored.count(key) > 0;
}

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

class SchemaConverter {
 public:
  explicit SchemaConverter(const ojson& root) : root_(root) {}

  Result<std::string> convert() {
    IG_ASSIGN_OR_RETURN(std::string expr, visit(root_, "root", "#", 0));
    std::string out = "root ::= " + expr + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

 private:
  Status refuse(const std::string& where, std::string_view what) const {
    return make_error(StatusCode::kInvalidArgument, "schema at '{}': {}", where, what);
  }

  std::string primitive(const std::string& name) {
    if (defined_.insert(name).second) {
      rules_.emplace_back(name, primitives().at(name));
      auto uses = primitive_uses().find(name);
      if (uses != primitive_uses().end()) {
        for (const std::string& used : uses->second) primitive(used);
      }
    }
    return name;
  }

  std::string unique_name(const std::string& hint) {
    std::string base;
    for (char c : hint) {
      base +=
          std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
    }
    if (base.empty() || base.size() > 48) base = base.empty() ? "rule" : base.substr(0, 48);
    // Names beginning with "root" are left to callers that wrap this grammar in their own rules.
    if (base.rfind("root", 0) == 0) base = "r-" + base;
    std::string name = base;
    for (int i = 1; defined_.count(name) || primitives().count(name); ++i) {
      name = fmt::format("{}-{}", base, i);
    }
    defined_.insert(name);
    return name;
  }

  std::string add_rule(const std::string& hint, std::string body) {
    std::string name = unique_name(hint);
    rules_.emplace_back(name, std::move(body));
    return name;
  }

  std::string literal(const ojson& value) {
    return gbnf_literal(value.dump()) + " " + primitive("space");
  }

  Result<const ojson*> resolve(const std::string& ref, const std::string& where) const {
    if (ref.empty() || ref[0] != '#') {
      return refuse(where, fmt::format("$ref '{}' points outside this schema", ref));
    }
    const ojson* node = &root_;
    std::string pointer = ref.substr(1);
    size_t at = 0;
    while (at < pointer.size()) {
      if (pointer[at] != '/') return refuse(where, fmt::format("$ref '{}' is malformed", ref));
      const size_t next = pointer.find('/', at + 1);
      const size_t end = next == std::string::npos ? pointer.size() : next;
      // RFC 6901 unescaping in one pass, so "~01" is "~1" and not "/".
      std::string token;
      for (size_t i = at + 1; i < end; ++i) {
        if (pointer[i] == '~' && i + 1 < end && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
          token.push_back(pointer[i + 1] == '0' ? '~' : '/');
          ++i;
        } else {
          token.push_back(pointer[i]);
        }
      }
      if (node->is_object() && node->contains(token)) {
        node = &(*node)[token];
      } else if (node->is_array() && !token.empty() && token.size() <= 9 &&
                 token.find_first_not_of("0123456789") == std::string::npos &&
                 std::stoull(token) < node->size()) {
        node = &(*node)[std::stoull(token)];
      } else {
        return refuse(where, fmt::format("$ref '{}' points at nothing", ref));
      }
      at = next == std::string::npos ? pointer.size() : next;
    }
    return node;
  }

  Result<std::string> visit(const ojson& schema, const std::string& hint, const std::string& where,
                            int depth) {
    if (depth > kMaxDepth) return refuse(where, "nested too deeply");
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return primitive("value");
      return refuse(where, "the schema false matches nothing");
    }
    if (!schema.is_object()) return refuse(where, "a schema must be an object or a boolean");
    static const std::set<std::string> kRefused = {"not",
                                                   "if",
                                                   "then",
                                                   "else",
                                                   "dependentRequired",
                                                   "dependentSchemas",
                                                   "dependencies",
                                                   "patternProperties",
                                                   "propertyNames",
                                                   "unevaluatedProperties",
                                                   "unevaluatedItems",
                                                   "contains",
                                                   "minContains",
                                                   "maxContains",
                                                   "$dynamicRef",
                                                   "$recursiveRef"};
    for (const auto& [key, value] : schema.items()) {
      if (kRefused.count(key)) return refuse(where, fmt::format("'{}' is not supported", key));
    }
    if (auto unique = schema.find("uniqueItems"); unique != schema.end() && *unique != false) {
      return refuse(where, "'uniqueItems' is not supported");
    }
    if (auto ref = schema.find("$ref"); ref != schema.end()) {
      if (!ref->is_string()) return refuse(where, "'$ref' must be a string");
      const std::string target = ref->get<std::string>();
      auto named = ref_rules_.find(target);
      if (named != ref_rules_.end()) return named->second;
      IG_ASSIGN_OR_RETURN(const ojson* node, resolve(target, where));
      // Named before it is visited, so a recursive reference finds it.
      const size_t slash = target.rfind('/');
      const std::string name = unique_name(slash == std::string::npos || slash + 1 == target.size()
                                               ? "ref"
                                               : target.substr(slash + 1));
      ref_rules_.emplace(target, name);
      const size_t index = rules_.size();
      rules_.emplace_back(name, "");
      IG_ASSIGN_OR_RETURN(std::string body, visit(*node, name, target, depth + 1));
      rules_[index].second = std::move(body);
      return name;
    }
    IG_ASSIGN_OR_RETURN(std::string expr, visit_constraints(schema, hint, where, depth));
    if (auto nullable = schema.find("nullable"); nullable != schema.end() && *nullable == true) {
      return "( " + expr + " | " + primitive("null") + " )";
    }
    return expr;
  }

  Result<std::string> visit_constraints(const ojson& schema, const std::string& hint,
                                        const std::string& where, int depth) {
    if (auto c = schema.find("const"); c != schema.end()) return literal(*c);
    if (auto e = schema.find("enum"); e != schema.end()) {
      if (!e->is_array() || e->empty()) return refuse(where, "'enum' must be a non-empty array");
      std::vector<std::string> items;
      for (const ojson& v : *e) items.push_back(literal(v));
      return gbnf_alternatives(items);
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto it = schema.find(key);
      if (it == schema.end()) continue;
      if (!it->is_array() || it->empty()) {
        return refuse(where, fmt::format("'{}' must be a non-empty array", key));
      }
      for (const auto& [k, v] : schema.items()) {
        if (k != key && k != "nullable" && !is_annotation_or_structural(k)) {
          return refuse(where, fmt::format("'{}' beside '{}' is not supported", k, key));
        }
      }
      std::vector<std::string> items;
      for (size_t i = 0; i < it->size(); ++i) {
        IG_ASSIGN_OR_RETURN(
            std::string item,
            visit((*it)[i], hint, fmt::format("{}/{}/{}", where, key, i), depth + 1));
        items.push_back(std::move(item));
      }
      return gbnf_alternatives(items);
    }
    if (auto all = schema.find("allOf"); all != schema.end()) {
      IG_ASSIGN_OR_RETURN(ojson merged, merge_all_of(schema, where));
      return visit(merged, hint, where, depth + 1);
    }

    std::vector<std::string> types;
    if (auto t = schema.find("type"); t != schema.end()) {
      if (t->is_string()) {
        types.push_back(t->get<std::string>());
      } else if (t->is_array() && !t->empty()) {
        for (const ojson& item : *t) {
          if (!item.is_string()) return refuse(where, "'type' must hold strings");
          types.push_back(item.get<std::string>());
        }
      } else {
        return refuse(where, "'type' must be a string or a non-empty array of strings");
      }
    } else if (schema.contains("properties") || schema.contains("required") ||
               schema.contains("additionalProperties")) {
      types.push_back("object");
    } else if (schema.contains("items") || schema.contains("prefixItems")) {
      types.push_back("array");
    } else if (schema.contains("pattern") || schema.contains("minLength") ||
               schema.contains("maxLength") || schema.contains("format")) {
      types.push_back("string");
    } else if (schema.contains("minimum") || schema.contains("maximum")) {
      types.push_back("number");
    } else {
      return primitive("value");
    }
    std::vector<std::string> items;
    for (const std::string& type : types) {
      IG_ASSIGN_OR_RETURN(std::string item, visit_type(schema, type, hint, where, depth));
      items.push_back(std::move(item));
    }
    return gbnf_alternatives(items);
  }

  Result<ojson> merge_all_of(const ojson& schema, const std::string& where) {
    ojson merged = ojson::object();
    merged["type"] = "object";
    merged["properties"] = ojson::object();
    merged["required"] = ojson::array();
    std::vector<const ojson*> parts;
    for (const auto& [k, v] : schema.items()) {
      if (k != "allOf" && !is_annotation_or_structural(k)) parts.push_back(&v);
    }
    if (!parts.empty()) {
      // Sibling keywords form one more part.
      ojson siblings = ojson::object();
      for (const auto& [k, v] : schema.items()) {
        if (k != "allOf") siblings[k] = v;
      }
      ojson wrapped = ojson::array();
      wrapped.push_back(siblings);
      for (const ojson& part : schema["allOf"]) wrapped.push_back(part);
      ojson copy = ojson::object();
      copy["allOf"] = wrapped;
      return merge_all_of(copy, where);
    }
    const ojson& list = schema["allOf"];
    if (!list.is_array() || list.empty()) return refuse(where, "'allOf' must be a non-empty array");
    if (list.size() == 1) return list[0];
    for (size_t i = 0; i < list.size(); ++i) {
      const ojson* part = &list[i];
      const std::string part_where = fmt::format("{}/allOf/{}", where, i);
      if (part->is_object() && part->contains("$ref")) {
        const ojson& ref = (*part)["$ref"];
        if (!ref.is_string()) return refuse(part_where, "'$ref' must be a string");
        IG_ASSIGN_OR_RETURN(part, resolve(ref.get<std::string>(), part_where));
      }
      if (!part->is_object()) return refuse(part_where, "'allOf' of non-object schemas");
      for (const auto& [k, v] : part->items()) {
        if (k == "properties" && v.is_object()) {
          for (const auto& [name, property] : v.items()) {
            if (merged["properties"].contains(name)) {
              return refuse(part_where,
                            fmt::format("'allOf' constrains property '{}' twice", name));
            }
            merged["properties"][name] = property;
          }
        } else if (k == "required" && v.is_array()) {
          for (const ojson& name : v) merged["required"].push_back(name);
        } else if (k == "type" && v == "object") {
        } else if (k == "additionalProperties" && v == false) {
        } else if (!is_annotation_or_structural(k)) {
          return refuse(part_where, fmt::format("'{}' inside 'allOf' is not supported (only "
                                                "object properties and required merge)",
                                                k));
        }
      }
    }
    return merged;
  }

  Result<std::string> visit_type(const ojson& schema, const std::string& type,
                                 const std::string& hint, const std::string& where, int depth) {
    if (type == "string") return string_expression(schema, where);
    if (type == "integer") return integer_expression(schema, where);
    if (type == "number") return number_expression(schema, where);
    if (type == "boolean") return primitive("boolean");
    if (type == "null") return primitive("null");
    if (type == "object") return object_expression(schema, hint, where, depth);
    if (type == "array") return array_expression(schema, hint, where, depth);
    return refuse(where, fmt::format("unknown type '{}'", type));
  }

  Result<std::optional<int64_t>> read_count(const ojson& schema, const char* key,
                                            const std::string& where) {
    auto it = schema.find(key);
    if (it == schema.end()) return std::optional<int64_t>();
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return refuse(where, fmt::format("'{}' must be a non-negative integer", key));
    }
    if (it->get<int64_t>() > kMaxRepeat) {
      return refuse(where, fmt::format("'{}' over {} is not supported", key, kMaxRepeat));
    }
    return std::optional<int64_t>(it->get<int64_t>());
  }

  static std::string repeat_suffix(int64_t min, std::optional<int64_t> max) {
    if (!max) return min == 0 ? "*" : fmt::format("{{{},}}", min);
    if (min == *max) return fmt::format("{{{}}}", min);
    return fmt::format("{{{},{}}}", min, *max);
  }

  Result<std::string> string_expression(const ojson& schema, const std::string& where) {
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_length, read_count(schema, "minLength", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_length, read_count(schema, "maxLength", where));
    const std::string quote = R"("\"")";
    std::string format;
    if (auto f = schema.find("format"); f != schema.end() && f->is_string()) {
      format = f->get<std::string>();
      if (format != "date" && format != "time" && format != "date-time" && format != "uuid") {
        format.clear();  // an annotation only, as JSON Schema's default vocabulary has it
      }
    }
    const bool has_pattern = schema.contains("pattern");
    if ((!format.empty() || has_pattern) && (min_length || max_length)) {
      return refuse(where, "'minLength' or 'maxLength' together with a pattern or format");
    }
    if (!format.empty() && has_pattern) return refuse(where, "'pattern' together with 'format'");
    if (!format.empty()) {
      return quote + " " + primitive(format) + " " + quote + " " + primitive("space");
    }
    if (has_pattern) {
      const ojson& pattern = schema["pattern"];
      if (!pattern.is_string()) return refuse(where, "'pattern' must be a string");
      primitive("char");
      IG_ASSIGN_OR_RETURN(std::string body,
                          PatternConverter(pattern.get<std::string>(), where).convert());
      return quote + " " + add_rule("pattern", body) + " " + quote + " " + primitive("space");
    }
    if (!min_length && !max_length) return primitive("string");
    const int64_t min = min_length.value_or(0);
    if (max_length && *max_length < min) return refuse(where, "'maxLength' below 'minLength'");
    return quote + " " + primitive("char") + repeat_suffix(min, max_length) + " " + quote + " " +
           primitive("space");
  }

  // Reads a numeric bound; `exclusive` says whether it came from exclusiveMinimum/Maximum.
  Result<std::optional<double>> bound(const ojson& schema, const char* inclusive_key,
                                      const char* exclusive_key, bool& exclusive,
                                      const std::string& where) {
    std::optional<double> value;
    exclusive = false;
    if (auto it = schema.find(inclusive_key); it != schema.end()) {
      if (!it->is_number())
        return refuse(where, fmt::format("'{}' must be a number", inclusive_key));
      value = it->get<double>();
    }
    if (auto it = schema.find(exclusive_key); it != schema.end()) {
      if (it->is_boolean()) {  // draft 4: a flag on the inclusive bound
        exclusive = it->get<bool>() && value.has_value();
      } else if (it->is_number()) {
        const double v = it->get<double>();
        const bool is_min = std::string_view(inclusive_key) == "minimum";
        if (!value || (is_min ? v >= *value : v <= *value)) {
          value = v;
          exclusive = true;
        }
      } else {
        return refuse(where, fmt::format("'{}' must be a number", exclusive_key));
      }
    }
    if (value && std::abs(*value) > static_cast<double>(kIntegerCap)) {
      return refuse(where, fmt::format("'{}' beyond 18 digits is not supported", inclusive_key));
    }
    return value;
  }

  Status check_multiple_of(const ojson& schema, const std::string& where, bool integer) {
    auto it = schema.find("multipleOf");
    if (it == schema.end()) return Status::ok();
    if (integer && it->is_number() && it->get<double>() == 1.0) return Status::ok();
    return refuse(where, "'multipleOf' is not supported");
  }

  Result<std::string> integer_expression(const ojson& schema, const std::string& where) {
    IG_RETURN_IF_ERROR(check_multiple_of(schema, where, true));
    bool lo_exclusive = false;
    bool hi_exclusive = false;
    IG_ASSIGN_OR_RETURN(auto lo, bound(schema, "minimum", "exclusiveMinimum", lo_exclusive, where));
    IG_ASSIGN_OR_RETURN(auto hi, bound(schema, "maximum", "exclusiveMaximum", hi_exclusive, where));
    if (!lo && !hi) return primitive("integer");
    int64_t low = -kIntegerCap;
    int64_t high = kIntegerCap;
    if (lo)
      low = lo_exclusive ? static_cast<int64_t>(std::floor(*lo)) + 1
                         : static_cast<int64_t>(std::ceil(*lo));
    if (hi)
      high = hi_exclusive ? static_cast<int64_t>(std::ceil(*hi)) - 1
                          : static_cast<int64_t>(std::floor(*hi));
    if (low > high) return refuse(where, "no integer lies within its bounds");
    return integer_range(low, high) + " " + primitive("space");
  }

  Result<std::string> number_expression(const ojson& schema, const std::string& where) {
    IG_RETURN_IF_ERROR(check_multiple_of(schema, where, false));
    bool lo_exclusive = false;
    bool hi_exclusive = false;
    IG_ASSIGN_OR_RETURN(auto lo, bound(schema, "minimum", "exclusiveMinimum", lo_exclusive, where));
    IG_ASSIGN_OR_RETURN(auto hi, bound(schema, "maximum", "exclusiveMaximum", hi_exclusive, where));
    if (!lo && !hi) return primitive("number");
    if (lo_exclusive || hi_exclusive) {
      return refuse(where,
                    "exclusive bounds on a number are not supported (on an integer they are)");
    }
    for (const auto& b : {lo, hi}) {
      if (b && *b != std::floor(*b)) {
        return refuse(where, fmt::format("the bound {} on a number is not supported (only "
                                         "whole-number bounds are)",
                                         *b));
      }
    }
    const int64_t low = lo ? static_cast<int64_t>(*lo) : -kIntegerCap;
    const int64_t high = hi ? static_cast<int64_t>(*hi) : kIntegerCap;
    if (low > high) return refuse(where, "no number lies within its bounds");
    const std::string fraction = R"(( "." [0-9]{1,15} )?)";
    const std::string zeros = R"(( "." "0"{1,15} )?)";
    // |value| in [a, b] with a fractional part only below b.
    auto magnitude = [&](int64_t a, int64_t b) {
      std::vector<std::string> parts;
      if (a <= b - 1) parts.push_back(unsigned_range(a, b - 1) + " " + fraction);
      parts.push_back(gbnf_literal(std::to_string(b)) + " " + zeros);
      return gbnf_alternatives(parts);
    };
    std::vector<std::string> parts;
    if (low < 0) parts.push_back("\"-\" " + magnitude(high < 0 ? -high : 0, -low));
    if (high >= 0) parts.push_back(magnitude(std::max<int64_t>(low, 0), high));
    return gbnf_alternatives(parts) + " " + primitive("space");
  }

  Result<std::string> object_expression(const ojson& schema, const std::string& hint,
                                        const std::string& where, int depth) {
    struct Property {
      std::string name;
      const ojson* schema;
      bool required;
    };
    static const ojson kAnything = true;
    std::vector<Property> properties;
    std::set<std::string> required;
    if (auto r = schema.find("required"); r != schema.end()) {
      if (!r->is_array()) return refuse(where, "'required' must be an array of strings");
      for (const ojson& name : *r) {
        if (!name.is_string()) return refuse(where, "'required' must be an array of strings");
        required.insert(name.get<std::string>());
      }
    }
    if (auto p = schema.find("properties"); p != schema.end()) {
      if (!p->is_object()) return refuse(where, "'properties' must be an object");
      for (const auto& [name, property] : p->items()) {
        properties.push_back({name, &property, required.count(name) > 0});
      }
    }
    for (const std::string& name : required) {
      const bool listed = std::any_of(properties.begin(), properties.end(),
                                      [&](const Property& p) { return p.name == name; });
      if (!listed) properties.push_back({name, &kAnything, true});
    }
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_properties,
                        read_count(schema, "minProperties", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_properties,
                        read_count(schema, "maxProperties", where));
    const std::string open = R"("{" )" + primitive("space");
    const std::string close = R"("}" )" + primitive("space");
    const std::string comma = R"("," )" + primitive("space");

    if (properties.empty()) {
      auto additional = schema.find("additionalProperties");
      if (additional != schema.end() && *additional == false) {
        if (min_properties.value_or(0) > 0)
          return refuse(where, "'minProperties' above 0 with no properties allowed");
        return open + " " + close;
      }
      if (min_properties.value_or(0) > 0 || max_properties) {
        return refuse(where, "'minProperties' or 'maxProperties' on a map is not supported");
      }
      std::string value = primitive("value");
      if (additional != schema.end() && *additional != true) {
        IG_ASSIGN_OR_RETURN(
            value, visit(*additional, hint + "-value", where + "/additionalProperties", depth + 1));
      }
      const std::string entry = add_rule(
          hint + "-entry", primitive("string") + " \":\" " + primitive("space") + " " + value);
      return open + " ( " + entry + " ( " + comma + " " + entry + " )* )? " + close;
    }
    const int64_t n_required = static_cast<int64_t>(std::count_if(
        properties.begin(), properties.end(), [](const Property& p) { return p.required; }));
    if (min_properties.value_or(0) > n_required) {
      return refuse(where,
                    "'minProperties' above the number of required properties is not supported");
    }
    if (max_properties && *max_properties < static_cast<int64_t>(properties.size())) {
      return refuse(where, "'maxProperties' below the number of properties is not supported");
    }

    const size_t n = properties.size();
    std::vector<std::string> entries(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string property_hint = hint + "-" + properties[i].name;
      IG_ASSIGN_OR_RETURN(std::string value,
                          visit(*properties[i].schema, property_hint,
                                where + "/properties/" + properties[i].name, depth + 1));
      entries[i] = add_rule(property_hint + "-kv", gbnf_literal(ojson(properties[i].name).dump()) +
                                                       " " + primitive("space") + " \":\" " +
                                                       primitive("space") + " " + value);
    }
    // after[i]: properties i.. when one is already written (each preceded by a comma);
    // first[i]: properties i.. when none is written yet.
    std::vector<std::string> after(n + 1);
    for (size_t i = n; i-- > 0;) {
      std::string piece = comma + " " + entries[i];
      if (!properties[i].required) piece = "( " + piece + " )?";
      if (!after[i + 1].empty()) piece += " " + after[i + 1];
      after[i] = add_rule(hint + "-after", piece);
    }
    std::vector<std::string> first(n + 1);
    for (size_t i = n; i-- > 0;) {
      std::string with = entries[i] + (after[i + 1].empty() ? "" : " " + after[i + 1]);
      if (properties[i].required) {
        first[i] = with;
      } else {
        first[i] = add_rule(hint + "-first", with + " | " + first[i + 1]);
      }
      if (properties[i].required && i > 0) first[i] = add_rule(hint + "-first", first[i]);
    }
    return open + " " + first[0] + " " + close;
  }

  Result<std::string> array_expression(const ojson& schema, const std::string& hint,
                                       const std::string& where, int depth) {
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_items, read_count(schema, "minItems", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_items, read_count(schema, "maxItems", where));
    const int64_t min = min_items.value_or(0);
    if (max_items && *max_items < min) return refuse(where, "'maxItems' below 'minItems'");
    const std::string open = R"("[" )" + primitive("space");
    const std::string close = R"("]" )" + primitive("space");
    const std::string comma = R"("," )" + primitive("space");

    const ojson* prefix = nullptr;
    const ojson* rest = nullptr;  // the schema of items after the prefix; null: none allowed
    if (auto p = schema.find("prefixItems"); p != schema.end()) {
      if (!p->is_array()) return refuse(where, "'prefixItems' must be an array");
      prefix = &*p;
      if (auto it = schema.find("items"); it != schema.end() && *it != false) rest = &*it;
    } else if (auto it = schema.find("items"); it != schema.end() && it->is_array()) {
      prefix = &*it;  // draft 7's tuple form
      if (auto extra = schema.find("additionalItems"); extra != schema.end() && *extra != false) {
        rest = &*extra;
      }
    }
    static const ojson kAnything = true;
    if (!prefix) {
      auto it = schema.find("items");
      const ojson& item_schema = it == schema.end() ? kAnything : *it;
      if (item_schema == false) {
        if (min > 0) return refuse(where, "'minItems' above 0 with 'items': false");
        return open + " " + close;
      }
      IG_ASSIGN_OR_RETURN(std::string item_expr,
                          visit(item_schema, hint + "-item", where + "/items", depth + 1));
      const std::string item = add_rule(hint + "-item", item_expr);
      if (max_items && *max_items == 0) return open + " " + close;
      const std::string more = "( " + comma + " " + item + " )";
      const std::optional<int64_t> more_max =
          max_items ? std::optional<int64_t>(*max_items - 1) : std::nullopt;
      if (min == 0) {
        return open + " ( " + item + " " + more + repeat_suffix(0, more_max) + " )? " + close;
      }
      return open + " " + item + " " + more + repeat_suffix(min - 1, more_max) + " " + close;
    }
    const auto n_prefix = static_cast<int64_t>(prefix->size());
    if (max_items && *max_items < n_prefix) {
      return refuse(where, "'maxItems' below the number of prefix items is not supported");
    }
    std::string out = open;
    for (int64_t i = 0; i < n_prefix; ++i) {
      IG_ASSIGN_OR_RETURN(std::string item,
                          visit((*prefix)[static_cast<size_t>(i)], fmt::format("{}-{}", hint, i),
                                fmt::format("{}/prefixItems/{}", where, i), depth + 1));
      out += (i ? " " + comma + " " : " ") + add_rule(fmt::format("{}-{}", hint, i), item);
    }
    const int64_t extra_min = std::max<int64_t>(0, min - n_prefix);
    if (rest) {
      IG_ASSIGN_OR_RETURN(std::string item_expr,
                          visit(*rest, hint + "-item", where + "/items", depth + 1));
      const std::string item = add_rule(hint + "-item", item_expr);
      const std::optional<int64_t> extra_max =
          max_items ? std::optional<int64_t>(*max_items - n_prefix) : std::nullopt;
      if (n_prefix == 0) return refuse(where, "an empty 'prefixItems'");
      if (!extra_max || *extra_max > 0) {
        out += " ( " + comma + " " + item + " )" + repeat_suffix(extra_min, extra_max);
      }
    } else if (extra_min > 0) {
      return refuse(where, "'minItems' above the prefix items with no more items allowed");
    }
    return out + " " + close;
  }

  const ojson& root_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> defined_;
  std::map<std::string, std::string> ref_rules_;
};

}  // namespace

Result<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema) {
  try {
    return SchemaConverter(schema).convert();
  } catch (const nlohmann::json::exception& e) {  // a value of an unexpected type
    return make_error(StatusCode::kInvalidArgument, "the schema could not be read: {}", e.what());
  }
}

std::string json_object_gbnf() {
  std::string out = "root ::= object\n";
  for (const char* name :
       {"object", "value", "array", "string", "char", "number", "boolean", "null", "space"}) {
    out += fmt::format("{} ::= {}\n", name, primitives().at(name));
  }
  return out;
}

}  // namespace infergrid
