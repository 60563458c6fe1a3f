#include "model/jinja_value.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace infergrid::jinja {

Value Value::boolean(bool b) {
  Value v(Kind::kBool);
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v(Kind::kInt);
  v.i_ = i;
  return v;
}
Value Value::floating(double f) {
  Value v(Kind::kFloat);
  v.f_ = f;
  return v;
}
Value Value::string(std::string s) {
  Value v(Kind::kString);
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::array(Array items) {
  Value v(Kind::kArray);
  v.array_ = std::make_shared<Array>(std::move(items));
  return v;
}
Value Value::object(Object items, bool is_namespace) {
  Value v(Kind::kObject);
  v.object_ = std::make_shared<Object>(std::move(items));
  v.namespace_ = is_namespace;
  return v;
}
Value Value::function(Function fn) {
  Value v(Kind::kFunction);
  v.fn_ = std::make_shared<const Function>(std::move(fn));
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return none();
    case nlohmann::ordered_json::value_t::boolean:
      return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return integer(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return array(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object items;
      items.reserve(j.size());
      for (const auto& [k, e] : j.items()) items.emplace_back(k, from_json(e));
      return object(std::move(items));
    }
    default:
      return none();
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !s_->empty();
    case Kind::kArray:
      return !array_->empty();
    case Kind::kObject:
      return namespace_ || !object_->empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

Value Value::get(const std::string& key) const {
  if (kind_ != Kind::kObject) return Value();
  for (const auto& [k, v] : *object_) {
    if (k == key) return v;
  }
  return Value();
}

void Value::set(const std::string& key, Value v) const {
  for (auto& [k, existing] : *object_) {
    if (k == key) {
      existing = std::move(v);
      return;
    }
  }
  object_->emplace_back(key, std::move(v));
}

std::string python_float(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  // repr's rule: the shortest digits that round-trip, in exponent form when the exponent is
  // below -4 or at least 16, else positional with at least one digit after the point.
  char buffer[64];
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, f, std::chars_format::scientific);
  const std::string scientific(buffer, written.ptr);
  const size_t e = scientific.find('e');
  std::string mantissa = scientific.substr(0, e);
  const int exponent = std::stoi(scientific.substr(e + 1));
  std::string out;
  if (!mantissa.empty() && mantissa[0] == '-') {
    out = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (const char c : mantissa) {
    if (c != '.') digits += c;
  }
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    const int magnitude = std::abs(exponent);
    out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', magnitude);
  } else if (exponent >= 0) {
    const auto whole = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= whole) {
      out += digits + std::string(whole - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, whole) + "." + digits.substr(whole);
    }
  } else {
    out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  }
  return out;
}

namespace {

std::string python_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kString:
      return python_repr_string(*s_);
    default:
      return str();
  }
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return b_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat:
      return python_float(f_);
    case Kind::kString:
      return *s_;
    case Kind::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < array_->size(); ++i) {
        if (i) out += ", ";
        out += (*array_)[i].repr();
      }
      return out + "]";
    }
    case Kind::kObject: {
      if (namespace_) return "<Namespace>";
      std::string out = "{";
      for (size_t i = 0; i < object_->size(); ++i) {
        if (i) out += ", ";
        out += python_repr_string((*object_)[i].first) + ": " + (*object_)[i].second.repr();
      }
      return out + "}";
    }
    case Kind::kFunction:
      return "<function>";
  }
  return "";
}

void Value::dump_json(std::string& out, int indent, int depth) const {
  const auto newline = [&](int d) {
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  switch (kind_) {
    case Kind::kUndefined:
      throw Error("tojson: the value is undefined");
    case Kind::kNone:
      out += "null";
      return;
    case Kind::kBool:
      out += b_ ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(i_);
      return;
    case Kind::kFloat:
      if (std::isnan(f_)) {
        out += "NaN";
      } else if (std::isinf(f_)) {
        out += f_ > 0 ? "Infinity" : "-Infinity";
      } else {
        out += python_float(f_);
      }
      return;
    case Kind::kString:
      json_string(out, *s_);
      return;
    case Kind::kArray:
      if (array_->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < array_->size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        (*array_)[i].dump_json(out, indent, depth + 1);
      }
      if (indent >= 0) newline(depth);
      out += ']';
      return;
    case Kind::kObject:
      if (object_->empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < object_->size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        json_string(out, (*object_)[i].first);
        out += ": ";
        (*object_)[i].second.dump_json(out, indent, depth + 1);
      }
      if (indent >= 0) newline(depth);
      out += '}';
      return;
    case Kind::kFunction:
      throw Error("tojson: a function is not JSON serializable");
  }
}

std::string Value::to_json(int indent) const {
  std::string out;
  dump_json(out, indent, 0);
  return out;
}

nlohmann::ordered_json Value::json() const {
  switch (kind_) {
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_;
    case Kind::kFloat:
      return f_;
    case Kind::kString:
      return *s_;
    case Kind::kArray: {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const Value& v : *array_) out.push_back(v.json());
      return out;
    }
    case Kind::kObject: {
      nlohmann::ordered_json out = nlohmann::ordered_json::object();
      for (const auto& [k, v] : *object_) out[k] = v.json();
      return out;
    }
    default:
      return nullptr;
  }
}

bool Value::equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (kind_ == Kind::kInt && other.kind_ == Kind::kInt) return i_ == other.i_;
    return as_number() == other.as_number();
  }
  if (kind_ == Kind::kBool && other.is_number()) return (b_ ? 1.0 : 0.0) == other.as_number();
  if (is_number() && other.kind_ == Kind::kBool) return other.equals(*this);
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kBool:
      return b_ == other.b_;
    case Kind::kString:
      return *s_ == *other.s_;
    case Kind::kArray:
      if (array_->size() != other.array_->size()) return false;
      for (size_t i = 0; i < array_->size(); ++i) {
        if (!(*array_)[i].equals((*other.array_)[i])) return false;
      }
      return true;
    case Kind::kObject:
      if (namespace_ || other.namespace_) return object_ == other.object_;
      if (object_->size() != other.object_->size()) return false;
      for (const auto& [k, v] : *object_) {
        const Value o = other.get(k);
        if (o.is_undefined() || !v.equals(o)) return false;
      }
      return true;
    case Kind::kFunction:
      return fn_ == other.fn_;
    default:
      return false;
  }
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kArray:
      return "list";
    case Kind::kObject:
      return namespace_ ? "Namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

}  // namespace infergrid::jinja
