// Jinja parsing: the template is cut into text, {{ }} and {% %} segments (whitespace control
// applied as Jinja2 does with trim_blocks and lstrip_blocks), each tag's inside is tokenized,
// and a recursive-descent parser with Jinja2's operator precedence builds the node tree.
#include "model/jinja.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <optional>

#include "model/jinja_ast.h"
#include "model/unicode_util.h"

namespace infergrid {

using jinja::Error;
using jinja::Value;
using Type = JinjaNode::Type;

namespace {

constexpr size_t kMaxTemplateBytes = 1 << 20;
constexpr int kMaxNesting = 64;

struct Segment {
  enum class Kind { kText, kExpression, kStatement } kind;
  std::string text;  // the text, or the tag's inside
  int line = 0;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

int line_at(std::string_view s, size_t pos) {
  int line = 1;
  for (size_t i = 0; i < pos && i < s.size(); ++i) line += s[i] == '\n';
  return line;
}

std::vector<Segment> split_segments(std::string_view src) {
  std::vector<Segment> out;
  // Whether the text that follows the last tag must lose its leading whitespace ('-') or its
  // first newline (trim_blocks, after %} and #}).
  enum class Trim { kNone, kNewline, kAll } trim_next = Trim::kNone;
  size_t pos = 0;
  // Jinja2's line_starting: the text begins a line (the template's start, or the previous tag
  // consumed a newline), which lets lstrip_blocks strip a tag's indentation with no newline in
  // the text itself.
  bool template_start = true;
  const auto push_text = [&](std::string text, bool strip_tail_all, bool lstrip_block) {
    bool line_starting = template_start;
    template_start = false;
    if (trim_next == Trim::kAll) {
      size_t i = 0;
      while (i < text.size() && is_space(text[i])) ++i;
      line_starting = i > 0 && text[i - 1] == '\n';
      text.erase(0, i);
    } else if (trim_next == Trim::kNewline) {
      if (text.rfind("\r\n", 0) == 0) {
        text.erase(0, 2);
        line_starting = true;
      } else if (!text.empty() && text[0] == '\n') {
        text.erase(0, 1);
        line_starting = true;
      }
    }
    if (strip_tail_all) {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (lstrip_block) {
      const size_t newline = text.rfind('\n');
      const size_t line_begin = newline == std::string::npos ? 0 : newline + 1;
      if (newline != std::string::npos || line_starting) {
        bool blank = true;
        for (size_t i = line_begin; i < text.size(); ++i) blank = blank && is_space(text[i]);
        if (blank) text.erase(line_begin);
      }
    }
    trim_next = Trim::kNone;
    if (!text.empty()) out.push_back({Segment::Kind::kText, std::move(text), 0});
  };
  while (pos <= src.size()) {
    const size_t open = src.find('{', pos);
    size_t tag = std::string_view::npos;
    for (size_t p = open; p != std::string_view::npos && p + 1 < src.size();
         p = src.find('{', p + 1)) {
      const char c = src[p + 1];
      if (c == '{' || c == '%' || c == '#') {
        tag = p;
        break;
      }
    }
    if (tag == std::string_view::npos) {
      push_text(std::string(src.substr(pos)), false, false);
      break;
    }
    const char kind = src[tag + 1];
    size_t inner = tag + 2;
    const bool minus_open = inner < src.size() && src[inner] == '-';
    const bool plus_open = inner < src.size() && src[inner] == '+';
    if (minus_open || plus_open) ++inner;
    const bool block_like = kind == '%' || kind == '#';
    // The text before the tag: a preceding text segment shares its trim with this tag.
    const int line = line_at(src, tag);
    push_text(std::string(src.substr(pos, tag - pos)), minus_open, block_like && !plus_open);

    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t end = std::string_view::npos;
    if (kind == '#') {
      end = src.find("#}", inner);
    } else {
      // A closing delimiter inside a string literal does not end the tag.
      char quote = 0;
      for (size_t p = inner; p + 1 < src.size(); ++p) {
        const char c = src[p];
        if (quote) {
          if (c == '\\') {
            ++p;
          } else if (c == quote) {
            quote = 0;
          }
        } else if (c == '\'' || c == '"') {
          quote = c;
        } else if (c == close[0] && src[p + 1] == '}') {
          end = p;
          break;
        }
      }
    }
    if (end == std::string_view::npos) {
      throw Error(fmt::format("line {}: '{{{}' is never closed with '{}'", line, kind, close));
    }
    size_t inner_end = end;
    const bool minus_close = inner_end > inner && src[inner_end - 1] == '-';
    if (minus_close) --inner_end;
    std::string body(src.substr(inner, inner_end - inner));
    pos = end + 2;

    if (kind == '%') {
      // {% raw %}...{% endraw %}: the text between, untouched.
      size_t b = 0;
      while (b < body.size() && is_space(body[b])) ++b;
      size_t e = body.size();
      while (e > b && is_space(body[e - 1])) --e;
      if (body.substr(b, e - b) == "raw") {
        size_t p = pos;
        size_t raw_end = std::string_view::npos, after = 0;
        while ((p = src.find("{%", p)) != std::string_view::npos) {
          size_t q = p + 2;
          if (q < src.size() && (src[q] == '-' || src[q] == '+')) ++q;
          while (q < src.size() && is_space(src[q])) ++q;
          if (src.substr(q, 6) == "endraw") {
            const size_t close_at = src.find("%}", q);
            if (close_at == std::string_view::npos) break;
            raw_end = p;
            after = close_at + 2;
            break;
          }
          p += 2;
        }
        if (raw_end == std::string_view::npos) {
          throw Error(fmt::format("line {}: {{% raw %}} without {{% endraw %}}", line));
        }
        trim_next = minus_close ? Trim::kAll : Trim::kNewline;
        push_text(std::string(src.substr(pos, raw_end - pos)), false, false);
        pos = after;
        trim_next = Trim::kNewline;
        continue;
      }
    }
    if (kind != '#') {
      out.push_back({kind == '{' ? Segment::Kind::kExpression : Segment::Kind::kStatement,
                     std::move(body), line});
    }
    trim_next = minus_close ? Trim::kAll : block_like ? Trim::kNewline : Trim::kNone;
    if (pos >= src.size()) break;
  }
  return out;
}

// ---- Tokens inside a tag ----

struct Token {
  enum class Kind { kName, kInt, kFloat, kString, kOp, kEnd } kind;
  std::string text;
  int64_t i = 0;
  double f = 0;
};

std::vector<Token> tokenize(const std::string& s, int line) {
  std::vector<Token> out;
  size_t i = 0;
  const auto fail = [&](const std::string& what) {
    throw Error(fmt::format("line {}: {}", line, what));
  };
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::Kind::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      bool is_float = false;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) {
          is_float = true;
          j = k;
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
      }
      std::string digits;
      for (size_t k = i; k < j; ++k) {
        if (s[k] != '_') digits += s[k];
      }
      Token t{is_float ? Token::Kind::kFloat : Token::Kind::kInt, digits};
      if (is_float) {
        t.f = std::strtod(digits.c_str(), nullptr);
      } else {
        errno = 0;
        t.i = std::strtoll(digits.c_str(), nullptr, 10);
        if (errno == ERANGE) fail("integer literal out of range: " + digits);
      }
      out.push_back(t);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string value;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          value += s[j];
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n':
            value += '\n';
            break;
          case 't':
            value += '\t';
            break;
          case 'r':
            value += '\r';
            break;
          case '0':
            value += '\0';
            break;
          case '\\':
          case '\'':
          case '"':
            value += e;
            break;
          case 'x':
          case 'u':
          case 'U': {
            const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (j + n >= s.size() + 0 && j + n > s.size() - 1) fail("truncated escape in string");
            uint32_t cp = 0;
            for (size_t k = 1; k <= n; ++k) {
              const char h = s[j + k];
              if (!std::isxdigit(static_cast<unsigned char>(h))) fail("bad escape in string");
              cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                       ? h - '0'
                                                       : (std::tolower(h) - 'a' + 10));
            }
            if (cp > 0x10FFFF) fail("escape beyond Unicode in string");
            append_utf8(cp, value);
            j += n;
            break;
          }
          default:
            value += '\\';
            value += e;
        }
      }
      if (j >= s.size()) fail("unterminated string literal");
      out.push_back({Token::Kind::kString, value});
      i = j + 1;
    } else {
      static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                   "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                   "]",  "{",  "}",  ",",  ".",  ":",  "|"};
      bool matched = false;
      for (const char* op : kOps) {
        const size_t n = std::char_traits<char>::length(op);
        if (s.compare(i, n, op) == 0) {
          out.push_back({Token::Kind::kOp, op});
          i += n;
          matched = true;
          break;
        }
      }
      if (!matched) fail(fmt::format("unexpected character '{}'", c));
    }
  }
  out.push_back({Token::Kind::kEnd, ""});
  return out;
}

// ---- Parser ----

class Parser {
 public:
  explicit Parser(std::vector<Segment> segments) : segments_(std::move(segments)) {}

  JinjaNodePtr parse_template() {
    std::string end;
    JinjaNodePtr body = parse_body({}, end);
    return body;
  }

 private:
  // Tag-level state.
  std::vector<Segment> segments_;
  size_t seg_ = 0;
  int depth_ = 0;
  // Token-level state (the current tag).
  std::vector<Token> toks_;
  size_t tok_ = 0;
  int line_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("line {}: {}", line_, what));
  }

  std::shared_ptr<JinjaNode> node(Type type) const {
    auto n = std::make_shared<JinjaNode>();
    n->type = type;
    n->line = line_;
    return n;
  }

  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(tok_ + ahead, toks_.size() - 1)];
  }
  bool at_op(const char* op) const { return peek().kind == Token::Kind::kOp && peek().text == op; }
  bool at_name(const char* name) const {
    return peek().kind == Token::Kind::kName && peek().text == name;
  }
  bool accept_op(const char* op) {
    if (!at_op(op)) return false;
    ++tok_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!at_name(name)) return false;
    ++tok_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(fmt::format("expected '{}', found '{}'", op, peek().text));
  }
  std::string expect_identifier() {
    if (peek().kind != Token::Kind::kName) {
      fail(fmt::format("expected a name, found '{}'", peek().text));
    }
    return toks_[tok_++].text;
  }
  void expect_end() {
    if (peek().kind != Token::Kind::kEnd) fail(fmt::format("unexpected '{}'", peek().text));
  }
  void load_tag(const Segment& s) {
    toks_ = tokenize(s.text, s.line);
    tok_ = 0;
    line_ = s.line;
  }

  // Statements until one whose keyword is in `ends` (returned in end_keyword, its tag loaded
  // with the keyword consumed); at the top level, until the segments run out.
  JinjaNodePtr parse_body(const std::vector<std::string>& ends, std::string& end_keyword) {
    if (++depth_ > kMaxNesting) fail("blocks nested too deeply");
    auto body = node(Type::kBody);
    while (seg_ < segments_.size()) {
      const Segment& s = segments_[seg_++];
      if (s.kind == Segment::Kind::kText) {
        auto text = node(Type::kText);
        text->name = s.text;
        body->children.push_back(text);
        continue;
      }
      load_tag(s);
      if (s.kind == Segment::Kind::kExpression) {
        auto out = node(Type::kOutput);
        out->children.push_back(parse_expression());
        expect_end();
        body->children.push_back(out);
        continue;
      }
      const std::string keyword = expect_identifier();
      for (const std::string& e : ends) {
        if (keyword == e) {
          end_keyword = keyword;
          --depth_;
          return body;
        }
      }
      body->children.push_back(parse_statement(keyword));
    }
    if (!ends.empty()) fail(fmt::format("missing {{% {} %}}", ends.back()));
    --depth_;
    return body;
  }

  JinjaNodePtr parse_statement(const std::string& keyword) {
    if (keyword == "if") return parse_if();
    if (keyword == "for") return parse_for();
    if (keyword == "set") return parse_set();
    if (keyword == "macro") return parse_macro();
    if (keyword == "break" || keyword == "continue") {
      expect_end();
      return node(keyword == "break" ? Type::kBreak : Type::kContinue);
    }
    if (keyword == "generation") {
      // transformers' {% generation %} marks the assistant's text; it renders through.
      expect_end();
      std::string end;
      return parse_body({"endgeneration"}, end);
    }
    fail(fmt::format("unknown tag '{}'", keyword));
  }

  JinjaNodePtr parse_if() {
    auto n = node(Type::kIf);
    n->children.push_back(parse_expression());
    expect_end();
    for (;;) {
      std::string end;
      n->children.push_back(parse_body({"elif", "else", "endif"}, end));
      if (end == "endif") {
        expect_end();
        return n;
      }
      if (end == "else") {
        expect_end();
        n->has_else = true;
        n->children.push_back(parse_body({"endif"}, end));
        expect_end();
        return n;
      }
      n->children.push_back(parse_expression());
      expect_end();
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    const bool paren = accept_op("(");
    names.push_back(expect_identifier());
    while (accept_op(",")) names.push_back(expect_identifier());
    if (paren) expect_op(")");
    return names;
  }

  JinjaNodePtr parse_for() {
    auto n = node(Type::kFor);
    n->targets = parse_targets();
    if (!accept_name("in")) fail("expected 'in' in the for loop");
    n->children.push_back(parse_expression(/*allow_conditional=*/false));
    JinjaNodePtr filter;
    if (accept_name("if")) filter = parse_expression();
    accept_name("recursive");
    expect_end();
    std::string end;
    n->children.push_back(parse_body({"else", "endfor"}, end));
    JinjaNodePtr else_body;
    if (end == "else") {
      expect_end();
      else_body = parse_body({"endfor"}, end);
    }
    expect_end();
    n->children.push_back(else_body);
    n->children.push_back(filter);
    return n;
  }

  JinjaNodePtr parse_set() {
    auto n = node(Type::kSet);
    n->targets.push_back(expect_identifier());
    if (accept_op(".")) {
      n->attribute = expect_identifier();
    } else {
      while (accept_op(",")) n->targets.push_back(expect_identifier());
    }
    if (accept_op("=")) {
      n->children.push_back(parse_tuple_or_expression());
      expect_end();
      return n;
    }
    expect_end();
    if (n->targets.size() != 1 || !n->attribute.empty()) fail("a block set takes one name");
    n->block_set = true;
    std::string end;
    n->children.push_back(parse_body({"endset"}, end));
    expect_end();
    return n;
  }

  JinjaNodePtr parse_macro() {
    auto n = node(Type::kMacro);
    n->name = expect_identifier();
    expect_op("(");
    std::vector<JinjaNodePtr> defaults;
    while (!at_op(")")) {
      n->targets.push_back(expect_identifier());
      defaults.push_back(accept_op("=") ? parse_expression() : nullptr);
      if (!accept_op(",")) break;
    }
    expect_op(")");
    expect_end();
    std::string end;
    n->children.push_back(parse_body({"endmacro"}, end));
    expect_end();
    for (auto& d : defaults) n->children.push_back(d);
    return n;
  }

  // ---- Expressions, in Jinja2's precedence ----

  JinjaNodePtr parse_tuple_or_expression() {
    JinjaNodePtr first = parse_expression();
    if (!at_op(",")) return first;
    auto t = node(Type::kTuple);
    t->children.push_back(first);
    while (accept_op(",")) {
      if (peek().kind == Token::Kind::kEnd) break;
      t->children.push_back(parse_expression());
    }
    return t;
  }

  JinjaNodePtr parse_expression(bool allow_conditional = true) {
    if (++depth_ > kMaxNesting * 4) fail("expression nested too deeply");
    JinjaNodePtr e = parse_or();
    while (allow_conditional && at_name("if")) {
      ++tok_;
      auto c = node(Type::kConditional);
      c->children.push_back(parse_or());
      c->children.push_back(e);
      c->children.push_back(accept_name("else") ? parse_expression() : nullptr);
      e = c;
    }
    --depth_;
    return e;
  }

  JinjaNodePtr binary(const std::string& op, JinjaNodePtr l, JinjaNodePtr r) {
    auto b = node(Type::kBinary);
    b->name = op;
    b->children = {std::move(l), std::move(r)};
    return b;
  }

  JinjaNodePtr parse_or() {
    JinjaNodePtr l = parse_and();
    while (accept_name("or")) l = binary("or", l, parse_and());
    return l;
  }
  JinjaNodePtr parse_and() {
    JinjaNodePtr l = parse_not();
    while (accept_name("and")) l = binary("and", l, parse_not());
    return l;
  }
  JinjaNodePtr parse_not() {
    if (at_name("not")) {
      ++tok_;
      auto u = node(Type::kUnary);
      u->name = "not";
      if (++depth_ > kMaxNesting * 4) fail("expression nested too deeply");
      u->children.push_back(parse_not());
      --depth_;
      return u;
    }
    return parse_compare();
  }
  JinjaNodePtr parse_compare() {
    JinjaNodePtr l = parse_math1();
    for (;;) {
      static const char* kCompare[] = {"==", "!=", "<", "<=", ">", ">="};
      bool matched = false;
      for (const char* op : kCompare) {
        if (accept_op(op)) {
          l = binary(op, l, parse_math1());
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (accept_name("in")) {
        l = binary("in", l, parse_math1());
      } else if (at_name("not") && peek(1).kind == Token::Kind::kName && peek(1).text == "in") {
        tok_ += 2;
        l = binary("not in", l, parse_math1());
      } else {
        return l;
      }
    }
  }
  JinjaNodePtr parse_math1() {
    JinjaNodePtr l = parse_concat();
    for (;;) {
      if (accept_op("+")) {
        l = binary("+", l, parse_concat());
      } else if (accept_op("-")) {
        l = binary("-", l, parse_concat());
      } else {
        return l;
      }
    }
  }
  JinjaNodePtr parse_concat() {
    JinjaNodePtr l = parse_math2();
    while (accept_op("~")) l = binary("~", l, parse_math2());
    return l;
  }
  JinjaNodePtr parse_math2() {
    JinjaNodePtr l = parse_pow();
    for (;;) {
      static const char* kOps[] = {"*", "/", "//", "%"};
      bool matched = false;
      for (const char* op : kOps) {
        if (accept_op(op)) {
          l = binary(op, l, parse_pow());
          matched = true;
          break;
        }
      }
      if (!matched) return l;
    }
  }
  JinjaNodePtr parse_pow() {
    JinjaNodePtr l = parse_unary();
    while (accept_op("**")) l = binary("**", l, parse_unary());
    return l;
  }
  JinjaNodePtr parse_unary() {
    if (at_op("-") || at_op("+")) {
      auto u = node(Type::kUnary);
      u->name = toks_[tok_++].text;
      if (++depth_ > kMaxNesting * 4) fail("expression nested too deeply");
      u->children.push_back(parse_unary());
      --depth_;
      return parse_filters_and_tests(u);
    }
    return parse_filters_and_tests(parse_postfix(parse_primary()));
  }

  void parse_call_args(JinjaNode& n) {
    // '(' already consumed.
    while (!at_op(")")) {
      if (peek().kind == Token::Kind::kName && peek(1).kind == Token::Kind::kOp &&
          peek(1).text == "=") {
        std::string key = toks_[tok_].text;
        tok_ += 2;
        n.named.emplace_back(std::move(key), parse_expression());
      } else {
        n.children.push_back(parse_expression());
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  JinjaNodePtr parse_postfix(JinjaNodePtr e) {
    for (;;) {
      if (accept_op(".")) {
        auto a = node(Type::kAttribute);
        if (peek().kind == Token::Kind::kInt) {
          // x.0 is x[0] in Jinja.
          a->type = Type::kItem;
          auto index = node(Type::kLiteral);
          index->value = Value::integer(toks_[tok_++].i);
          a->children = {e, index};
        } else {
          a->name = expect_identifier();
          a->children.push_back(e);
        }
        e = a;
      } else if (accept_op("[")) {
        JinjaNodePtr lo, hi, step;
        bool slice = false;
        if (!at_op(":")) lo = parse_expression();
        if (accept_op(":")) {
          slice = true;
          if (!at_op("]") && !at_op(":")) hi = parse_expression();
          if (accept_op(":") && !at_op("]")) step = parse_expression();
        }
        expect_op("]");
        auto s = node(slice ? Type::kSlice : Type::kItem);
        s->children = {e, lo};
        if (slice) {
          s->children.push_back(hi);
          s->children.push_back(step);
        }
        e = s;
      } else if (accept_op("(")) {
        auto c = node(Type::kCall);
        c->children.push_back(e);
        parse_call_args(*c);
        e = c;
      } else {
        return e;
      }
    }
  }

  JinjaNodePtr parse_filters_and_tests(JinjaNodePtr e) {
    for (;;) {
      if (accept_op("|")) {
        auto f = node(Type::kFilter);
        f->name = expect_identifier();
        while (accept_op(".")) {
          f->name += '.';
          f->name += expect_identifier();
        }
        f->children.push_back(e);
        if (accept_op("(")) parse_call_args(*f);
        e = f;
      } else if (accept_name("is")) {
        auto t = node(Type::kTest);
        t->negated = accept_name("not");
        t->name = expect_identifier();
        t->children.push_back(e);
        if (accept_op("(")) {
          parse_call_args(*t);
        } else if (starts_test_argument()) {
          t->children.push_back(parse_postfix(parse_primary()));
        }
        e = t;
      } else {
        return e;
      }
    }
  }

  bool starts_test_argument() const {
    const Token& t = peek();
    if (t.kind == Token::Kind::kString || t.kind == Token::Kind::kInt ||
        t.kind == Token::Kind::kFloat) {
      return true;
    }
    if (t.kind == Token::Kind::kName) {
      static const char* kStop[] = {"and", "or", "else", "if", "in", "is", "not"};
      for (const char* s : kStop) {
        if (t.text == s) return false;
      }
      return true;
    }
    return t.kind == Token::Kind::kOp && (t.text == "[" || t.text == "{");
  }

  JinjaNodePtr parse_primary() {
    const Token& t = peek();
    auto lit = node(Type::kLiteral);
    switch (t.kind) {
      case Token::Kind::kInt:
        lit->value = Value::integer(t.i);
        ++tok_;
        return lit;
      case Token::Kind::kFloat:
        lit->value = Value::floating(t.f);
        ++tok_;
        return lit;
      case Token::Kind::kString: {
        std::string s = t.text;
        ++tok_;
        // Adjacent literals concatenate, as in Python.
        while (peek().kind == Token::Kind::kString) s += toks_[tok_++].text;
        lit->value = Value::string(std::move(s));
        return lit;
      }
      case Token::Kind::kName: {
        const std::string& name = t.text;
        if (name == "true" || name == "True") {
          lit->value = Value::boolean(true);
        } else if (name == "false" || name == "False") {
          lit->value = Value::boolean(false);
        } else if (name == "none" || name == "None") {
          lit->value = Value::none();
        } else {
          auto n = node(Type::kName);
          n->name = name;
          ++tok_;
          return n;
        }
        ++tok_;
        return lit;
      }
      case Token::Kind::kOp:
        if (accept_op("(")) {
          if (accept_op(")")) return node(Type::kTuple);
          JinjaNodePtr e = parse_expression();
          if (at_op(",")) {
            auto tuple = node(Type::kTuple);
            tuple->children.push_back(e);
            while (accept_op(",")) {
              if (at_op(")")) break;
              tuple->children.push_back(parse_expression());
            }
            e = tuple;
          }
          expect_op(")");
          return e;
        }
        if (accept_op("[")) {
          auto list = node(Type::kList);
          while (!at_op("]")) {
            list->children.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("]");
          return list;
        }
        if (accept_op("{")) {
          auto dict = node(Type::kDict);
          while (!at_op("}")) {
            dict->children.push_back(parse_expression());
            expect_op(":");
            dict->children.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("}");
          return dict;
        }
        break;
      case Token::Kind::kEnd:
        fail("unexpected end of the tag");
    }
    fail(fmt::format("unexpected '{}'", t.text));
  }
};

}  // namespace

Result<JinjaTemplate> JinjaTemplate::parse(std::string_view source) {
  if (source.size() > kMaxTemplateBytes) {
    return make_error(StatusCode::kInvalidArgument, "chat template of {} bytes (at most {})",
                      source.size(), kMaxTemplateBytes);
  }
  // Jinja2 drops one trailing newline of the source (keep_trailing_newline=False).
  if (!source.empty() && source.back() == '\n') {
    source.remove_suffix(1);
    if (!source.empty() && source.back() == '\r') source.remove_suffix(1);
  }
  try {
    Parser parser(split_segments(source));
    JinjaTemplate t;
    t.root_ = parser.parse_template();
    return t;
  } catch (const Error& e) {
    return make_error(StatusCode::kInvalidArgument, "chat template: {}", e.what());
  }
}

}  // namespace infergrid
