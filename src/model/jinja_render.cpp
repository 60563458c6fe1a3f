// Jinja rendering: walks the node tree of jinja.cpp over jinja::Values with Jinja2's semantics
// (Python's operators and truth, undefined names that render as "" and iterate as nothing,
// scopes per for loop and macro call, namespaces shared by reference). Filters, tests and the
// string and dict methods are those real chat templates call; anything else is an error naming
// it, never silently wrong output.
//
// Invariants: every loop iteration, macro call and range element counts against one budget and
// the output against a size cap, so rendering always ends; errors carry the template line.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <unordered_map>

#include "model/jinja.h"
#include "model/jinja_ast.h"
#include "model/unicode_util.h"

namespace infergrid {

using jinja::Array;
using jinja::CallArgs;
using jinja::Error;
using jinja::Object;
using jinja::Value;
using Type = JinjaNode::Type;
using Kind = Value::Kind;

namespace {

constexpr size_t kMaxOutputBytes = size_t{32} << 20;
constexpr int64_t kMaxSteps = 4'000'000;
constexpr int kMaxCallDepth = 100;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// The string's code points, each as its UTF-8 bytes (Python indexes strings by code point).
std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t n_announced = utf8_sequence_length(static_cast<uint8_t>(s[i]));
    const size_t n = std::min(n_announced, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string strip(const std::string& s, bool left, bool right, const Value& chars) {
  const auto strip_char = [&](char c) {
    if (chars.is_string()) return chars.as_string().find(c) != std::string::npos;
    return is_space(c);
  };
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e && strip_char(s[b])) ++b;
  }
  if (right) {
    while (e > b && strip_char(s[e - 1])) --e;
  }
  return s.substr(b, e - b);
}

std::string ascii_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool word_start = true;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      c = static_cast<char>(word_start ? std::toupper(u) : std::tolower(u));
      word_start = false;
    } else {
      word_start = !(u >= 0x80 || std::isdigit(u) || c == '\'');
    }
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` around every code point.
    const auto cps = code_points(s);
    int64_t done = 0;
    for (const auto& cp : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += cp;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  for (;;) {
    const size_t at = s.find(from, pos);
    if (at == std::string::npos || (count >= 0 && done >= count)) break;
    out.append(s, pos, at - pos);
    out += to;
    pos = at + from.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Python's comparison for sorting and <, <=, >, >=: numbers with numbers, strings with
// strings, lists element-wise; anything else is a TypeError.
int compare(const Value& a, const Value& b) {
  const auto numeric = [](const Value& v) { return v.is_number() || v.kind() == Kind::kBool; };
  const auto number = [](const Value& v) {
    return v.kind() == Kind::kBool ? (v.as_bool() ? 1.0 : 0.0) : v.as_number();
  };
  if (numeric(a) && numeric(b)) {
    if (a.kind() == Kind::kInt && b.kind() == Kind::kInt) {
      return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
    }
    const double x = number(a), y = number(b);
    return x < y ? -1 : x > y;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0;
  }
  if (a.is_array() && b.is_array()) {
    const size_t n = std::min(a.items().size(), b.items().size());
    for (size_t i = 0; i < n; ++i) {
      const int c = compare(a.items()[i], b.items()[i]);
      if (c) return c;
    }
    return a.items().size() < b.items().size() ? -1 : a.items().size() > b.items().size();
  }
  throw Error(fmt::format("comparison not supported between instances of '{}' and '{}'",
                          a.type_name(), b.type_name()));
}

int64_t negate(int64_t v) {
  if (v == INT64_MIN) throw Error("integer overflow");
  return -v;
}

// Python's floor division and modulo (the result takes the divisor's sign).
int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) throw Error("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) throw Error("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) throw Error("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// A named argument, else the positional one at `index`, else undefined.
Value arg(const CallArgs& args, size_t index, const char* name) {
  for (const auto& [k, v] : args.named) {
    if (k == name) return v;
  }
  return index < args.positional.size() ? args.positional[index] : Value();
}

using Scope = std::unordered_map<std::string, Value>;
enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const JinjaOptions& options) : options_(options) { install_globals(); }

  void run(const JinjaNode& root, const nlohmann::ordered_json& context, std::string& out) {
    auto globals = std::make_shared<Scope>();
    if (context.is_object()) {
      for (const auto& [k, v] : context.items()) (*globals)[k] = Value::from_json(v);
    }
    scopes_.push_back(std::move(globals));
    exec(root, out);
  }

  int line() const { return line_; }

 private:
  const JinjaOptions& options_;
  Scope builtins_;
  std::vector<std::shared_ptr<Scope>> scopes_;
  int line_ = 0;
  int64_t steps_ = 0;
  int call_depth_ = 0;

  [[noreturn]] static void fail(const std::string& what) { throw Error(what); }

  void step(int64_t n = 1) {
    steps_ += n;
    if (steps_ > kMaxSteps) fail("the template ran too long (loop or recursion without end?)");
  }

  void emit(std::string& out, const std::string& text) {
    if (out.size() + text.size() > kMaxOutputBytes) {
      fail(fmt::format("the rendered prompt exceeds {} bytes", kMaxOutputBytes));
    }
    out += text;
  }

  void install_globals() {
    builtins_["raise_exception"] = Value::function([](CallArgs& args) -> Value {
      Error e(arg(args, 0, "message").str());
      e.from_template = true;
      throw e;
    });
    builtins_["strftime_now"] = Value::function([this](CallArgs& args) -> Value {
      const Value format = arg(args, 0, "format");
      if (!format.is_string()) fail("strftime_now takes a format string");
      const time_t now = options_.now ? static_cast<time_t>(options_.now()) : time(nullptr);
      struct tm parts {};
      gmtime_r(&now, &parts);
      char buffer[256];
      const size_t n = strftime(buffer, sizeof buffer, format.as_string().c_str(), &parts);
      return Value::string(std::string(buffer, n));
    });
    builtins_["range"] = Value::function([this](CallArgs& args) -> Value {
      int64_t start = 0, stop = 0, stride = 1;
      const auto integer = [](const Value& v) {
        if (v.kind() != Kind::kInt) fail("range() takes integers");
        return v.as_int();
      };
      if (args.positional.size() == 1) {
        stop = integer(args.positional[0]);
      } else if (args.positional.size() == 2 || args.positional.size() == 3) {
        start = integer(args.positional[0]);
        stop = integer(args.positional[1]);
        if (args.positional.size() == 3) stride = integer(args.positional[2]);
      } else {
        fail("range() takes 1 to 3 arguments");
      }
      if (stride == 0) fail("range() step must not be zero");
      Array items;
      for (int64_t i = start; stride > 0 ? i < stop : i > stop; i += stride) {
        step();
        items.push_back(Value::integer(i));
      }
      return Value::array(std::move(items));
    });
    builtins_["namespace"] = Value::function([](CallArgs& args) -> Value {
      Object entries;
      for (const Value& v : args.positional) {
        if (!v.is_object()) fail("namespace() takes a dict or keyword arguments");
        for (const auto& e : v.entries()) entries.push_back(e);
      }
      for (auto& e : args.named) entries.push_back(e);
      return Value::object(std::move(entries), /*is_namespace=*/true);
    });
    builtins_["dict"] = Value::function([](CallArgs& args) -> Value {
      Value out = Value::object();
      for (const Value& v : args.positional) {
        if (!v.is_object()) fail("dict() takes a dict or keyword arguments");
        for (const auto& [k, e] : v.entries()) out.set(k, e);
      }
      for (auto& [k, v] : args.named) out.set(k, v);
      return out;
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto found = (*it)->find(name);
      if (found != (*it)->end()) return found->second;
    }
    const auto found = builtins_.find(name);
    return found == builtins_.end() ? Value() : found->second;
  }

  void assign(const std::string& name, Value v) { (*scopes_.back())[name] = std::move(v); }

  // ---- Statements ----

  Flow exec(const JinjaNode& n, std::string& out) {
    line_ = n.line;
    switch (n.type) {
      case Type::kBody:
        for (const auto& child : n.children) {
          const Flow flow = exec(*child, out);
          if (flow != Flow::kNormal) return flow;
        }
        return Flow::kNormal;
      case Type::kText:
        emit(out, n.name);
        return Flow::kNormal;
      case Type::kOutput:
        emit(out, eval(*n.children[0]).str());
        return Flow::kNormal;
      case Type::kIf:
        for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
          if (eval(*n.children[i]).truthy()) return exec(*n.children[i + 1], out);
          line_ = n.line;
        }
        if (n.has_else) return exec(*n.children.back(), out);
        return Flow::kNormal;
      case Type::kFor:
        exec_for(n, out);
        return Flow::kNormal;
      case Type::kSet:
        exec_set(n);
        return Flow::kNormal;
      case Type::kMacro:
        define_macro(n);
        return Flow::kNormal;
      case Type::kBreak:
        return Flow::kBreak;
      case Type::kContinue:
        return Flow::kContinue;
      default:
        fail("internal: an expression where a statement belongs");
    }
  }

  Array iterate(const Value& v) {
    switch (v.kind()) {
      case Kind::kUndefined:
        return {};
      case Kind::kArray:
        return v.items();
      case Kind::kObject: {
        if (v.is_namespace()) break;
        Array keys;
        for (const auto& [k, e] : v.entries()) keys.push_back(Value::string(k));
        return keys;
      }
      case Kind::kString: {
        Array chars;
        for (auto& cp : code_points(v.as_string())) chars.push_back(Value::string(std::move(cp)));
        return chars;
      }
      default:
        break;
    }
    fail(fmt::format("'{}' object is not iterable", v.type_name()));
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      assign(targets[0], item);
      return;
    }
    if (!item.is_array() || item.items().size() != targets.size()) {
      fail(fmt::format("cannot unpack {} into {} names", item.repr(), targets.size()));
    }
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], item.items()[i]);
  }

  void exec_for(const JinjaNode& n, std::string& out) {
    Array items = iterate(eval(*n.children[0]));
    const JinjaNode* body = n.children[1].get();
    const JinjaNode* else_body = n.children[2].get();
    const JinjaNode* filter = n.children[3].get();
    scopes_.push_back(std::make_shared<Scope>());
    if (filter) {
      Array kept;
      for (const Value& item : items) {
        step();
        bind_targets(n.targets, item);
        if (eval(*filter).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      step();
      bind_targets(n.targets, items[i]);
      Value loop = Value::object();
      loop.set("index", Value::integer(i + 1));
      loop.set("index0", Value::integer(i));
      loop.set("revindex", Value::integer(length - i));
      loop.set("revindex0", Value::integer(length - i - 1));
      loop.set("first", Value::boolean(i == 0));
      loop.set("last", Value::boolean(i == length - 1));
      loop.set("length", Value::integer(length));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      if (i > 0) loop.set("previtem", items[i - 1]);
      if (i + 1 < length) loop.set("nextitem", items[i + 1]);
      loop.set("cycle", Value::function([i](CallArgs& args) -> Value {
                 if (args.positional.empty()) fail("loop.cycle() takes at least one value");
                 return args.positional[static_cast<size_t>(i) % args.positional.size()];
               }));
      assign("loop", loop);
      const Flow flow = exec(*body, out);
      if (flow == Flow::kBreak) break;
    }
    if (length == 0 && else_body) exec(*else_body, out);
    scopes_.pop_back();
  }

  void exec_set(const JinjaNode& n) {
    if (n.block_set) {
      std::string text;
      exec(*n.children[0], text);
      assign(n.targets[0], Value::string(std::move(text)));
      return;
    }
    Value v = eval(*n.children[0]);
    if (!n.attribute.empty()) {
      const Value target = lookup(n.targets[0]);
      if (!target.is_namespace()) {
        fail(fmt::format("cannot assign attribute '{}' of '{}': not a namespace", n.attribute,
                         n.targets[0]));
      }
      target.set(n.attribute, std::move(v));
      return;
    }
    bind_targets(n.targets, v);
  }

  void define_macro(const JinjaNode& n) {
    const JinjaNode* macro = &n;
    std::vector<std::shared_ptr<Scope>> captured = scopes_;
    assign(n.name, Value::function([this, macro, captured](CallArgs& args) -> Value {
             if (call_depth_ >= kMaxCallDepth) fail("macro calls nested too deeply");
             step();
             const auto& params = macro->targets;
             if (args.positional.size() > params.size()) {
               fail(fmt::format("macro '{}' takes {} arguments, {} given", macro->name,
                                params.size(), args.positional.size()));
             }
             for (const auto& [name, v] : args.named) {
               if (std::find(params.begin(), params.end(), name) == params.end()) {
                 fail(fmt::format("macro '{}' has no argument '{}'", macro->name, name));
               }
             }
             auto saved = std::move(scopes_);
             const int saved_line = line_;
             scopes_ = captured;
             scopes_.push_back(std::make_shared<Scope>());
             for (size_t i = 0; i < params.size(); ++i) {
               Value v;
               const JinjaNode* fallback = macro->children[1 + i].get();
               if (i < args.positional.size()) {
                 v = args.positional[i];
               } else if (has_named(args, params[i])) {
                 v = arg(args, args.positional.size(), params[i].c_str());
               } else if (fallback) {
                 v = eval(*fallback);
               }
               assign(params[i], v);
             }
             ++call_depth_;
             std::string text;
             exec(*macro->children[0], text);
             --call_depth_;
             scopes_ = std::move(saved);
             line_ = saved_line;
             return Value::string(std::move(text));
           }));
  }

  static bool has_named(const CallArgs& args, const std::string& name) {
    for (const auto& [k, v] : args.named) {
      if (k == name) return true;
    }
    return false;
  }

  // ---- Expressions ----

  CallArgs eval_args(const JinjaNode& n, size_t first) {
    CallArgs args;
    for (size_t i = first; i < n.children.size(); ++i) {
      args.positional.push_back(eval(*n.children[i]));
    }
    for (const auto& [name, e] : n.named) args.named.emplace_back(name, eval(*e));
    return args;
  }

  Value eval(const JinjaNode& n) {
    line_ = n.line;
    switch (n.type) {
      case Type::kLiteral:
        return n.value;
      case Type::kName:
        return lookup(n.name);
      case Type::kAttribute:
        return attribute(eval(*n.children[0]), n.name);
      case Type::kItem:
        return item(eval(*n.children[0]), eval(*n.children[1]));
      case Type::kSlice:
        return slice(eval(*n.children[0]), n.children[1] ? eval(*n.children[1]) : Value(),
                     n.children[2] ? eval(*n.children[2]) : Value(),
                     n.children[3] ? eval(*n.children[3]) : Value());
      case Type::kCall: {
        const Value callee = eval(*n.children[0]);
        CallArgs args = eval_args(n, 1);
        line_ = n.line;
        if (!callee.is_function()) {
          fail(fmt::format("'{}' is not callable", describe(*n.children[0])));
        }
        return callee.fn()(args);
      }
      case Type::kFilter: {
        Value subject = eval(*n.children[0]);
        CallArgs args = eval_args(n, 1);
        line_ = n.line;
        return filter(n.name, subject, args);
      }
      case Type::kTest: {
        const Value subject = eval(*n.children[0]);
        CallArgs args = eval_args(n, 1);
        line_ = n.line;
        return Value::boolean(test(n.name, subject, args) != n.negated);
      }
      case Type::kBinary:
        return binary(n);
      case Type::kUnary: {
        const Value v = eval(*n.children[0]);
        if (n.name == "not") return Value::boolean(!v.truthy());
        if (v.kind() == Kind::kInt) {
          return n.name == "-" ? Value::integer(negate(v.as_int())) : v;
        }
        if (v.kind() == Kind::kFloat) return n.name == "-" ? Value::floating(-v.as_number()) : v;
        if (v.kind() == Kind::kBool)
          return Value::integer(n.name == "-" ? -v.as_bool() : v.as_bool());
        fail(fmt::format("bad operand type for unary {}: '{}'", n.name, v.type_name()));
      }
      case Type::kConditional:
        if (eval(*n.children[0]).truthy()) return eval(*n.children[1]);
        return n.children[2] ? eval(*n.children[2]) : Value();
      case Type::kList:
      case Type::kTuple: {
        Array items;
        for (const auto& c : n.children) items.push_back(eval(*c));
        return Value::array(std::move(items));
      }
      case Type::kDict: {
        Value out = Value::object();
        for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
          const Value key = eval(*n.children[i]);
          out.set(key.is_string() ? key.as_string() : key.str(), eval(*n.children[i + 1]));
        }
        return out;
      }
      default:
        fail("internal: a statement where an expression belongs");
    }
  }

  static std::string describe(const JinjaNode& n) {
    if (n.type == Type::kName) return n.name;
    if (n.type == Type::kAttribute) return describe(*n.children[0]) + "." + n.name;
    return "the expression";
  }

  Value binary(const JinjaNode& n) {
    const std::string& op = n.name;
    if (op == "and") {
      Value l = eval(*n.children[0]);
      return l.truthy() ? eval(*n.children[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*n.children[0]);
      return l.truthy() ? l : eval(*n.children[1]);
    }
    const Value l = eval(*n.children[0]);
    const Value r = eval(*n.children[1]);
    line_ = n.line;
    if (op == "==") return Value::boolean(l.equals(r));
    if (op == "!=") return Value::boolean(!l.equals(r));
    if (op == "<") return Value::boolean(compare(l, r) < 0);
    if (op == "<=") return Value::boolean(compare(l, r) <= 0);
    if (op == ">") return Value::boolean(compare(l, r) > 0);
    if (op == ">=") return Value::boolean(compare(l, r) >= 0);
    if (op == "in") return Value::boolean(contains(r, l));
    if (op == "not in") return Value::boolean(!contains(r, l));
    if (op == "~") {
      std::string s = l.str() + r.str();
      if (s.size() > kMaxOutputBytes) fail("string too long");
      return Value::string(std::move(s));
    }
    return arithmetic(op, l, r);
  }

  bool contains(const Value& container, const Value& needle) {
    switch (container.kind()) {
      case Kind::kString:
        if (!needle.is_string()) {
          fail(fmt::format("'in <string>' requires a string, not '{}'", needle.type_name()));
        }
        return container.as_string().find(needle.as_string()) != std::string::npos;
      case Kind::kArray:
        for (const Value& v : container.items()) {
          if (v.equals(needle)) return true;
        }
        return false;
      case Kind::kObject:
        return needle.is_string() && !container.get(needle.as_string()).is_undefined();
      case Kind::kUndefined:
        return false;
      default:
        fail(fmt::format("argument of type '{}' is not iterable", container.type_name()));
    }
  }

  Value arithmetic(const std::string& op, const Value& l, const Value& r) {
    const auto numeric = [](const Value& v) { return v.is_number() || v.kind() == Kind::kBool; };
    const auto as_int = [](const Value& v) {
      return v.kind() == Kind::kBool ? int64_t{v.as_bool()} : v.as_int();
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        if (l.as_string().size() + r.as_string().size() > kMaxOutputBytes) fail("string too long");
        return Value::string(l.as_string() + r.as_string());
      }
      if (l.is_array() && r.is_array()) {
        step(static_cast<int64_t>(r.items().size()));
        Array items = l.items();
        items.insert(items.end(), r.items().begin(), r.items().end());
        return Value::array(std::move(items));
      }
    }
    if (op == "*") {
      const Value* seq = l.is_string() || l.is_array()   ? &l
                         : r.is_string() || r.is_array() ? &r
                                                         : nullptr;
      const Value* count = seq == &l ? &r : &l;
      if (seq && count->kind() == Kind::kInt) {
        const int64_t times = std::max<int64_t>(0, count->as_int());
        if (seq->is_string()) {
          if (static_cast<double>(seq->as_string().size()) * static_cast<double>(times) >
              static_cast<double>(kMaxOutputBytes)) {
            fail("string too long");
          }
          std::string out;
          for (int64_t i = 0; i < times; ++i) out += seq->as_string();
          return Value::string(std::move(out));
        }
        step(times * static_cast<int64_t>(seq->items().size()));
        Array items;
        for (int64_t i = 0; i < times; ++i) {
          items.insert(items.end(), seq->items().begin(), seq->items().end());
        }
        return Value::array(std::move(items));
      }
    }
    if (!numeric(l) || !numeric(r)) {
      fail(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, l.type_name(),
                       r.type_name()));
    }
    const bool integers = l.kind() != Kind::kFloat && r.kind() != Kind::kFloat;
    if (integers && op != "/") {
      const int64_t a = as_int(l), b = as_int(r);
      int64_t v = 0;
      if (op == "+") {
        if (__builtin_add_overflow(a, b, &v)) fail("integer overflow");
        return Value::integer(v);
      }
      if (op == "-") {
        if (__builtin_sub_overflow(a, b, &v)) fail("integer overflow");
        return Value::integer(v);
      }
      if (op == "*") {
        if (__builtin_mul_overflow(a, b, &v)) fail("integer overflow");
        return Value::integer(v);
      }
      if (op == "//") return Value::integer(floor_div(a, b));
      if (op == "%") return Value::integer(floor_mod(a, b));
      if (op == "**") {
        if (b < 0) return Value::floating(std::pow(static_cast<double>(a), static_cast<double>(b)));
        int64_t result = 1;
        for (int64_t i = 0; i < b; ++i) {
          if (__builtin_mul_overflow(result, a, &result)) fail("integer overflow");
          if (result == 0 || result == 1) break;
        }
        return Value::integer(result);
      }
    }
    const double a = l.kind() == Kind::kBool ? as_int(l) : l.as_number();
    const double b = r.kind() == Kind::kBool ? as_int(r) : r.as_number();
    if (op == "+") return Value::floating(a + b);
    if (op == "-") return Value::floating(a - b);
    if (op == "*") return Value::floating(a * b);
    if (op == "**") return Value::floating(std::pow(a, b));
    if (b == 0) fail("division by zero");
    if (op == "/") return Value::floating(a / b);
    if (op == "//") return Value::floating(std::floor(a / b));
    if (op == "%") {
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value::floating(m);
    }
    fail(fmt::format("unknown operator '{}'", op));
  }

  Value item(const Value& container, const Value& key) {
    if (container.is_object() && key.is_string()) return container.get(key.as_string());
    if ((container.is_array() || container.is_string()) &&
        (key.kind() == Kind::kInt || key.kind() == Kind::kBool)) {
      int64_t i = key.kind() == Kind::kBool ? key.as_bool() : key.as_int();
      if (container.is_array()) {
        const auto n = static_cast<int64_t>(container.items().size());
        if (i < 0) i += n;
        return i >= 0 && i < n ? container.items()[static_cast<size_t>(i)] : Value();
      }
      const auto cps = code_points(container.as_string());
      const auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      return i >= 0 && i < n ? Value::string(cps[static_cast<size_t>(i)]) : Value();
    }
    if (key.is_string()) return attribute(container, key.as_string());
    return Value();
  }

  Value slice(const Value& container, const Value& lo, const Value& hi, const Value& stride) {
    const auto bound = [](const Value& v, const char* what) -> std::optional<int64_t> {
      if (v.is_undefined() || v.is_none()) return std::nullopt;
      if (v.kind() != Kind::kInt) fail(fmt::format("slice {} must be an integer", what));
      return v.as_int();
    };
    const int64_t s = bound(stride, "step").value_or(1);
    if (s == 0) fail("slice step cannot be zero");
    std::vector<std::string> cps;
    int64_t n = 0;
    if (container.is_array()) {
      n = static_cast<int64_t>(container.items().size());
    } else if (container.is_string()) {
      cps = code_points(container.as_string());
      n = static_cast<int64_t>(cps.size());
    } else {
      fail(fmt::format("'{}' object is not subscriptable", container.type_name()));
    }
    // Python's slice.indices().
    const auto clamp = [&](std::optional<int64_t> v, int64_t if_absent) {
      if (!v) return if_absent;
      int64_t x = *v;
      if (x < 0) x += n;
      if (s > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t start = clamp(bound(lo, "start"), s > 0 ? 0 : n - 1);
    const int64_t stop = clamp(bound(hi, "stop"), s > 0 ? n : -1);
    Array items;
    std::string text;
    for (int64_t i = start; s > 0 ? i < stop : i > stop; i += s) {
      if (container.is_array()) {
        items.push_back(container.items()[static_cast<size_t>(i)]);
      } else {
        text += cps[static_cast<size_t>(i)];
      }
    }
    if (container.is_array()) return Value::array(std::move(items));
    return Value::string(std::move(text));
  }

  // ---- Attributes and methods ----

  Value attribute(const Value& v, const std::string& name) {
    if (v.is_string()) return string_method(v, name);
    if (v.is_object() && !v.is_namespace()) {
      if (name == "items" || name == "keys" || name == "values" || name == "get") {
        return dict_method(v, name);
      }
    }
    if (v.is_object()) return v.get(name);
    return Value();
  }

  Value dict_method(const Value& dict, const std::string& name) {
    return Value::function([dict, name](CallArgs& args) -> Value {
      if (name == "get") {
        const Value key = arg(args, 0, "key");
        const Value found = key.is_string() ? dict.get(key.as_string()) : Value();
        if (!found.is_undefined()) return found;
        const Value fallback = arg(args, 1, "default");
        return fallback.is_undefined() ? Value::none() : fallback;
      }
      Array out;
      for (const auto& [k, e] : dict.entries()) {
        if (name == "items") {
          out.push_back(Value::array({Value::string(k), e}));
        } else if (name == "keys") {
          out.push_back(Value::string(k));
        } else {
          out.push_back(e);
        }
      }
      return Value::array(std::move(out));
    });
  }

  Value string_method(const Value& str, const std::string& name) {
    static const char* kMethods[] = {
        "split",      "strip",   "lstrip",  "rstrip",     "upper",  "lower", "startswith",
        "endswith",   "replace", "title",   "capitalize", "find",   "count", "join",
        "splitlines", "isdigit", "isspace", "isalpha",    "isalnum"};
    if (std::find_if(std::begin(kMethods), std::end(kMethods),
                     [&](const char* m) { return name == m; }) == std::end(kMethods)) {
      return Value();
    }
    return Value::function([this, str, name](CallArgs& args) -> Value {
      const std::string& s = str.as_string();
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        return Value::string(strip(s, name != "rstrip", name != "lstrip", arg(args, 0, "chars")));
      }
      if (name == "upper") return Value::string(ascii_upper(s));
      if (name == "lower") return Value::string(ascii_lower(s));
      if (name == "title") return Value::string(title(s));
      if (name == "capitalize") return Value::string(capitalize(s));
      if (name == "startswith" || name == "endswith") {
        const Value affix = arg(args, 0, name == "startswith" ? "prefix" : "suffix");
        Array options = affix.is_array() ? affix.items() : Array{affix};
        for (const Value& o : options) {
          if (!o.is_string()) fail(fmt::format("{} takes a string", name));
          const std::string& a = o.as_string();
          if (name == "startswith"
                  ? s.rfind(a, 0) == 0
                  : s.size() >= a.size() && s.compare(s.size() - a.size(), a.size(), a) == 0) {
            return Value::boolean(true);
          }
        }
        return Value::boolean(false);
      }
      if (name == "replace") {
        const Value from = arg(args, 0, "old"), to = arg(args, 1, "new"), n = arg(args, 2, "count");
        if (!from.is_string() || !to.is_string()) fail("replace takes two strings");
        return Value::string(replace_all(s, from.as_string(), to.as_string(),
                                         n.kind() == Kind::kInt ? n.as_int() : -1));
      }
      if (name == "split") return split(s, arg(args, 0, "sep"), arg(args, 1, "maxsplit"));
      if (name == "splitlines") {
        Array lines;
        size_t pos = 0;
        while (pos < s.size()) {
          const size_t nl = s.find('\n', pos);
          const size_t end = nl == std::string::npos ? s.size() : nl;
          std::string line = s.substr(pos, end - pos);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          lines.push_back(Value::string(std::move(line)));
          pos = nl == std::string::npos ? s.size() : nl + 1;
        }
        return Value::array(std::move(lines));
      }
      if (name == "find" || name == "count") {
        const Value needle = arg(args, 0, "sub");
        if (!needle.is_string()) fail(fmt::format("{} takes a string", name));
        if (name == "find") {
          const size_t at = s.find(needle.as_string());
          return Value::integer(
              at == std::string::npos ? -1 : static_cast<int64_t>(utf8_length(s.substr(0, at))));
        }
        if (needle.as_string().empty()) return Value::integer(int64_t(utf8_length(s)) + 1);
        int64_t count = 0;
        for (size_t at = s.find(needle.as_string()); at != std::string::npos;
             at = s.find(needle.as_string(), at + needle.as_string().size())) {
          ++count;
        }
        return Value::integer(count);
      }
      if (name == "join") {
        std::string out;
        const Array parts = iterate(arg(args, 0, "iterable"));
        for (size_t i = 0; i < parts.size(); ++i) {
          if (!parts[i].is_string()) fail("str.join takes strings");
          if (i) out += s;
          out += parts[i].as_string();
        }
        return Value::string(std::move(out));
      }
      bool all = !s.empty();
      for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (name == "isdigit") all = all && std::isdigit(u);
        if (name == "isspace") all = all && is_space(c);
        if (name == "isalpha") all = all && std::isalpha(u);
        if (name == "isalnum") all = all && std::isalnum(u);
      }
      return Value::boolean(all);
    });
  }

  static Value split(const std::string& s, const Value& sep, const Value& maxsplit_value) {
    const int64_t maxsplit = maxsplit_value.kind() == Kind::kInt ? maxsplit_value.as_int() : -1;
    Array out;
    if (sep.is_undefined() || sep.is_none()) {
      size_t i = 0;
      int64_t splits = 0;
      while (i < s.size()) {
        while (i < s.size() && is_space(s[i])) ++i;
        if (i >= s.size()) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          size_t e = s.size();
          while (e > i && is_space(s[e - 1])) --e;
          out.push_back(Value::string(s.substr(i, e - i)));
          break;
        }
        size_t j = i;
        while (j < s.size() && !is_space(s[j])) ++j;
        out.push_back(Value::string(s.substr(i, j - i)));
        ++splits;
        i = j;
      }
      return Value::array(std::move(out));
    }
    if (!sep.is_string() || sep.as_string().empty()) fail("split takes a non-empty separator");
    const std::string& d = sep.as_string();
    size_t pos = 0;
    int64_t splits = 0;
    for (;;) {
      const size_t at = s.find(d, pos);
      if (at == std::string::npos || (maxsplit >= 0 && splits >= maxsplit)) break;
      out.push_back(Value::string(s.substr(pos, at - pos)));
      pos = at + d.size();
      ++splits;
    }
    out.push_back(Value::string(s.substr(pos)));
    return Value::array(std::move(out));
  }

  // ---- Filters ----

  // Jinja2's make_attrgetter: "a.b.0" walks attributes and indexes.
  Value get_path(const Value& v, const std::string& path) {
    Value cur = v;
    size_t pos = 0;
    while (pos <= path.size()) {
      const size_t dot = path.find('.', pos);
      const std::string part =
          path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      });
      cur = digits ? item(cur, Value::integer(std::stoll(part))) : item(cur, Value::string(part));
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
    return cur;
  }

  // select/reject/selectattr/rejectattr: args are (test name, test args...) after the
  // attribute for the *attr forms.
  Value select(const Value& seq, CallArgs& args, bool by_attribute, bool keep_if) {
    size_t next = 0;
    std::string attr;
    if (by_attribute) {
      if (args.positional.empty() || !args.positional[0].is_string()) {
        fail("selectattr/rejectattr take an attribute name");
      }
      attr = args.positional[next++].as_string();
    }
    std::string test_name;
    if (next < args.positional.size()) {
      if (!args.positional[next].is_string()) fail("the test name must be a string");
      test_name = args.positional[next++].as_string();
    }
    CallArgs test_args;
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next),
                                args.positional.end());
    Array out;
    for (const Value& element : iterate(seq)) {
      step();
      const Value subject = by_attribute ? get_path(element, attr) : element;
      const bool passed =
          test_name.empty() ? subject.truthy() : test(test_name, subject, test_args);
      if (passed == keep_if) out.push_back(element);
    }
    return Value::array(std::move(out));
  }

  Value sorted(Array items, bool reverse, const Value& attribute_value, bool case_sensitive) {
    const std::string attr = attribute_value.is_string() ? attribute_value.as_string() : "";
    const auto key = [&](const Value& v) {
      Value k = attr.empty() ? v : get_path(v, attr);
      if (!case_sensitive && k.is_string()) k = Value::string(ascii_lower(k.as_string()));
      return k;
    };
    step(static_cast<int64_t>(items.size()));
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      const int c = compare(key(a), key(b));
      return reverse ? c > 0 : c < 0;
    });
    return Value::array(std::move(items));
  }

  Value filter(const std::string& name, const Value& v, CallArgs& args) {
    if (name == "tojson") {
      const Value indent = arg(args, 0, "indent");
      Value subject = v;
      if (arg(args, 1, "sort_keys").truthy()) subject = sort_keys(v);
      return Value::string(
          subject.to_json(indent.kind() == Kind::kInt
                              ? static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64))
                              : -1));
    }
    if (name == "trim") {
      if (!v.is_string()) return Value::string(strip(v.str(), true, true, arg(args, 0, "chars")));
      return Value::string(strip(v.as_string(), true, true, arg(args, 0, "chars")));
    }
    if (name == "length" || name == "count") {
      switch (v.kind()) {
        case Kind::kString:
          return Value::integer(static_cast<int64_t>(utf8_length(v.as_string())));
        case Kind::kArray:
          return Value::integer(static_cast<int64_t>(v.items().size()));
        case Kind::kObject:
          return Value::integer(static_cast<int64_t>(v.entries().size()));
        case Kind::kUndefined:
          return Value::integer(0);
        default:
          fail(fmt::format("object of type '{}' has no len()", v.type_name()));
      }
    }
    if (name == "string") return Value::string(v.str());
    if (name == "list") return Value::array(iterate(v));
    if (name == "join") {
      const Value sep = arg(args, 0, "d");
      const Value attr = arg(args, 1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& element : iterate(v)) {
        if (!first) out += sep.is_undefined() ? "" : sep.str();
        first = false;
        out += (attr.is_string() ? get_path(element, attr.as_string()) : element).str();
        if (out.size() > kMaxOutputBytes) fail("string too long");
      }
      return Value::string(std::move(out));
    }
    if (name == "selectattr") return select(v, args, true, true);
    if (name == "rejectattr") return select(v, args, true, false);
    if (name == "select") return select(v, args, false, true);
    if (name == "reject") return select(v, args, false, false);
    if (name == "map") {
      Array out;
      const Value attr = arg(args, 99, "attribute");
      for (const Value& element : iterate(v)) {
        step();
        if (attr.is_string()) {
          Value mapped = get_path(element, attr.as_string());
          if (mapped.is_undefined()) mapped = arg(args, 99, "default");
          out.push_back(mapped);
        } else {
          if (args.positional.empty() || !args.positional[0].is_string()) {
            fail("map takes a filter name or attribute=");
          }
          CallArgs rest;
          rest.positional.assign(args.positional.begin() + 1, args.positional.end());
          out.push_back(filter(args.positional[0].as_string(), element, rest));
        }
      }
      return Value::array(std::move(out));
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::array();
      if (!v.is_object()) fail("items takes a mapping");
      CallArgs none;
      return dict_method(v, "items").fn()(none);
    }
    if (name == "dictsort") {
      if (!v.is_object()) fail("dictsort takes a mapping");
      const bool case_sensitive = arg(args, 0, "case_sensitive").truthy();
      const Value by = arg(args, 1, "by");
      const bool by_value = by.is_string() && by.as_string() == "value";
      Array pairs;
      for (const auto& [k, e] : v.entries()) pairs.push_back(Value::array({Value::string(k), e}));
      return sorted(std::move(pairs), arg(args, 2, "reverse").truthy(),
                    Value::string(by_value ? "1" : "0"), case_sensitive);
    }
    if (name == "lower") return Value::string(ascii_lower(v.str()));
    if (name == "upper") return Value::string(ascii_upper(v.str()));
    if (name == "capitalize") return Value::string(capitalize(v.str()));
    if (name == "title") return Value::string(title(v.str()));
    if (name == "default" || name == "d") {
      const Value fallback = arg(args, 0, "default_value");
      const bool boolean = arg(args, 1, "boolean").truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) {
        return fallback.is_undefined() ? Value::string("") : fallback;
      }
      return v;
    }
    if (name == "first" || name == "last") {
      const Array items = iterate(v);
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    // The replace filter takes str.replace's arguments.
    if (name == "replace") return string_method(Value::string(v.str()), "replace").fn()(args);
    if (name == "int" || name == "float") {
      const Value fallback = arg(args, 0, "default");
      const auto fallback_or = [&](double d) {
        if (!fallback.is_undefined()) return fallback;
        return name == "int" ? Value::integer(static_cast<int64_t>(d)) : Value::floating(d);
      };
      double d = 0;
      if (v.is_number() || v.kind() == Kind::kBool) {
        d = v.kind() == Kind::kBool ? v.as_bool() : v.as_number();
        if (name == "int" && v.kind() == Kind::kInt) return v;
      } else if (v.is_string()) {
        const std::string s = strip(v.as_string(), true, true, Value());
        char* end = nullptr;
        d = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) return fallback_or(0);
      } else {
        return fallback_or(0);
      }
      if (name == "int") {
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback_or(0);
        return Value::integer(static_cast<int64_t>(d));
      }
      return Value::floating(d);
    }
    if (name == "abs") {
      if (v.kind() == Kind::kInt)
        return Value::integer(v.as_int() < 0 ? negate(v.as_int()) : v.as_int());
      if (v.kind() == Kind::kFloat) return Value::floating(std::fabs(v.as_number()));
      fail(fmt::format("bad operand type for abs(): '{}'", v.type_name()));
    }
    if (name == "round") {
      if (!v.is_number()) fail("round takes a number");
      const Value precision = arg(args, 0, "precision");
      const Value method = arg(args, 1, "method");
      const double scale = std::pow(
          10.0, precision.kind() == Kind::kInt ? static_cast<double>(precision.as_int()) : 0.0);
      const std::string how = method.is_string() ? method.as_string() : "common";
      double x = v.as_number() * scale;
      x = how == "ceil" ? std::ceil(x) : how == "floor" ? std::floor(x) : std::round(x);
      return Value::floating(x / scale);
    }
    if (name == "unique") {
      Array out;
      for (const Value& element : iterate(v)) {
        step();
        if (std::none_of(out.begin(), out.end(),
                         [&](const Value& o) { return o.equals(element); })) {
          out.push_back(element);
        }
      }
      return Value::array(std::move(out));
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto cps = code_points(v.as_string());
        std::string out;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
        return Value::string(std::move(out));
      }
      Array items = iterate(v);
      std::reverse(items.begin(), items.end());
      return Value::array(std::move(items));
    }
    if (name == "sort") {
      return sorted(iterate(v), arg(args, 0, "reverse").truthy(), arg(args, 2, "attribute"),
                    arg(args, 1, "case_sensitive").truthy());
    }
    if (name == "min" || name == "max") {
      const Array items = iterate(v);
      if (items.empty()) return Value();
      Value best = items[0];
      for (const Value& element : items) {
        const int c = compare(element, best);
        if (name == "min" ? c < 0 : c > 0) best = element;
      }
      return best;
    }
    if (name == "sum") {
      const Value attr = arg(args, 0, "attribute");
      Value total = arg(args, 1, "start");
      if (total.is_undefined()) total = Value::integer(0);
      for (const Value& element : iterate(v)) {
        total = arithmetic("+", total,
                           attr.is_string() ? get_path(element, attr.as_string()) : element);
      }
      return total;
    }
    if (name == "indent") {
      const Value width_value = arg(args, 0, "width");
      const bool indent_first = arg(args, 1, "first").truthy();
      const bool blank = arg(args, 2, "blank").truthy();
      std::string pad =
          width_value.is_string()
              ? width_value.as_string()
              : std::string(
                    static_cast<size_t>(std::clamp<int64_t>(
                        width_value.kind() == Kind::kInt ? width_value.as_int() : 4, 0, 256)),
                    ' ');
      const std::string s = v.str();
      std::string out;
      size_t pos = 0;
      bool first_line = true;
      while (pos <= s.size()) {
        const size_t nl = s.find('\n', pos);
        const std::string line =
            s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        if ((first_line ? indent_first : true) && (blank || !line.empty())) out += pad;
        out += line;
        first_line = false;
        if (nl == std::string::npos) break;
        out += '\n';
        pos = nl + 1;
        if (out.size() > kMaxOutputBytes) fail("string too long");
      }
      return Value::string(std::move(out));
    }
    if (name == "safe") return v;
    if (name == "escape" || name == "e" || name == "forceescape")
      return Value::string(html_escape(v.str()));
    if (name == "wordcount")
      return Value::integer(static_cast<int64_t>(split(v.str(), Value(), Value()).items().size()));
    fail(fmt::format("no filter named '{}'", name));
  }

  Value sort_keys(const Value& v) {
    if (v.is_array()) {
      Array items;
      for (const Value& e : v.items()) items.push_back(sort_keys(e));
      return Value::array(std::move(items));
    }
    if (!v.is_object()) return v;
    Object entries;
    for (const auto& [k, e] : v.entries()) entries.emplace_back(k, sort_keys(e));
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return Value::object(std::move(entries));
  }

  // ---- Tests ----

  bool test(const std::string& name, const Value& v, const CallArgs& args) {
    const Value other = arg(args, 0, "value");
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind() == Kind::kInt;
    if (name == "float") return v.kind() == Kind::kFloat;
    if (name == "boolean") return v.kind() == Kind::kBool;
    if (name == "true") return v.kind() == Kind::kBool && v.as_bool();
    if (name == "false") return v.kind() == Kind::kBool && !v.as_bool();
    if (name == "mapping") return v.is_object() && !v.is_namespace();
    if (name == "iterable")
      return v.is_array() || v.is_string() || (v.is_object() && !v.is_namespace());
    if (name == "sequence")
      return v.is_array() || v.is_string() || (v.is_object() && !v.is_namespace());
    if (name == "callable") return v.is_function();
    if (name == "lower") return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
    if (name == "upper") return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
    if (name == "equalto" || name == "eq" || name == "==" || name == "sameas")
      return v.equals(other);
    if (name == "ne" || name == "!=") return !v.equals(other);
    if (name == "lt" || name == "lessthan" || name == "<") return compare(v, other) < 0;
    if (name == "le" || name == "<=") return compare(v, other) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, other) > 0;
    if (name == "ge" || name == ">=") return compare(v, other) >= 0;
    if (name == "in") return contains(other, v);
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.kind() != Kind::kInt) fail(fmt::format("the '{}' test takes an integer", name));
      if (name == "odd") return floor_mod(v.as_int(), 2) == 1;
      if (name == "even") return floor_mod(v.as_int(), 2) == 0;
      const Value divisor = arg(args, 0, "num");
      if (divisor.kind() != Kind::kInt) fail("divisibleby takes an integer");
      return floor_mod(v.as_int(), divisor.as_int()) == 0;
    }
    fail(fmt::format("no test named '{}'", name));
  }
};

}  // namespace

Result<std::string> JinjaTemplate::render(const nlohmann::ordered_json& context,
                                          const JinjaOptions& options) const {
  if (!root_) return make_error(StatusCode::kInvalidArgument, "chat template: not parsed");
  Renderer renderer(options);
  std::string out;
  try {
    renderer.run(*root_, context, out);
  } catch (const Error& e) {
    if (e.from_template) return make_error(StatusCode::kInvalidArgument, "{}", e.what());
    return make_error(StatusCode::kInvalidArgument, "chat template: line {}: {}", renderer.line(),
                      e.what());
  }
  return out;
}

}  // namespace infergrid
