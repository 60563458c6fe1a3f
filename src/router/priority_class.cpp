#include "router/priority_class.h"

namespace infergrid {

std::optional<PriorityClass> priority_class_from_name(std::string_view name) {
  if (name == "interactive") return PriorityClass::kInteractive;
  if (name == "standard") return PriorityClass::kStandard;
  if (name == "batch") return PriorityClass::kBatch;
  return std::nullopt;
}

std::string_view priority_class_name(PriorityClass c) {
  switch (c) {
    case PriorityClass::kInteractive:
      return "interactive";
    case PriorityClass::kStandard:
      return "standard";
    case PriorityClass::kBatch:
      return "batch";
  }
  return "standard";
}

}  // namespace infergrid
