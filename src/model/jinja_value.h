// The values a Jinja template computes with, shaped like the Python objects Jinja2 sees:
// undefined, None, bool, int, float, str, list, dict (insertion-ordered), namespace and
// callables. Lists, dicts and namespaces are shared by reference, as in Python, so
// `set ns.x = ...` is seen through every name bound to that namespace.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace infergrid::jinja {

// Raised inside the interpreter; JinjaTemplate turns it into a Status at its boundary.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
  bool from_template = false;  // raise_exception: the message is the template's own
};

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};
using Function = std::function<Value(CallArgs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kFunction };

  Value() = default;  // undefined
  static Value none() { return Value(Kind::kNone); }
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double f);
  static Value string(std::string s);
  static Value array(Array items = {});
  static Value object(Object items = {}, bool is_namespace = false);
  static Value function(Function fn);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_namespace() const { return kind_ == Kind::kObject && namespace_; }
  bool is_function() const { return kind_ == Kind::kFunction; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_number() const { return kind_ == Kind::kInt ? static_cast<double>(i_) : f_; }
  const std::string& as_string() const { return *s_; }
  Array& items() const { return *array_; }
  Object& entries() const { return *object_; }
  const Function& fn() const { return *fn_; }

  // Python's truth: empty strings, lists, dicts, 0, None and undefined are false.
  bool truthy() const;
  // A dict's value for key, or undefined.
  Value get(const std::string& key) const;
  void set(const std::string& key, Value v) const;

  // str(x) as Python prints it ("None", "True", "['a', 1]"); undefined is "".
  std::string str() const;
  // repr(x): strings quoted as Python quotes them.
  std::string repr() const;
  // json.dumps(x, ensure_ascii=False, indent=indent) (indent < 0: one line, ", " and ": ").
  std::string to_json(int indent = -1) const;
  nlohmann::ordered_json json() const;

  bool equals(const Value& other) const;
  std::string type_name() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  void dump_json(std::string& out, int indent, int depth) const;

  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool namespace_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
  std::shared_ptr<const Function> fn_;
};

// repr() of a float as Python writes it ("1.0", "0.1", "1e+16").
std::string python_float(double f);

}  // namespace infergrid::jinja
