// Priority classes of the router's admission (router_server.h): interactive, standard, batch.
#pragma once

#include <optional>
#include <string_view>

namespace infergrid {

enum class PriorityClass { kInteractive, kStandard, kBatch };

std::optional<PriorityClass> priority_class_from_name(std::string_view name);
std::string_view priority_class_name(PriorityClass c);

}  // namespace infergrid
