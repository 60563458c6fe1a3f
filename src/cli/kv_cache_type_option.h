// The --kv-cache-type option, one definition for every command that allocates a KV cache
// (serve, generate, bench decode, bench engine), so the names and the default agree.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "core/kv_type.h"

namespace infergrid {

// Binds --kv-cache-type to `type`; CLI11 rejects any other name before the command runs.
inline CLI::Option* add_kv_cache_type_option(CLI::App& command, KvType& type) {
  return command
      .add_option_function<std::string>(
          "--kv-cache-type",
          [&type](const std::string& name) { type = parse_kv_type(name).value_or(type); },
          "Element type of the KV cache: f16 (default, as in llama.cpp), bf16, or f32 "
          "(exact, twice the memory and attention reads)")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}))
      ->default_str(std::string(kv_type_name(type)));
}

}  // namespace infergrid
