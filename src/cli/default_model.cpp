#include "cli/default_model.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include <fmt/format.h>

// The GGUF is assembled into .rodata; 64-byte alignment keeps it as aligned as a mapped file.
__asm__(
    ".section .rodata\n"
    ".balign 64\n"
    ".global infergrid_default_model_begin\n"
    "infergrid_default_model_begin:\n"
    ".incbin \"" INFERGRID_DEFAULT_MODEL_FILE
    "\"\n"
    ".global infergrid_default_model_end\n"
    "infergrid_default_model_end:\n"
    ".previous\n");
extern "C" const unsigned char infergrid_default_model_begin[];
extern "C" const unsigned char infergrid_default_model_end[];

namespace infergrid {

std::span<const unsigned char> embedded_default_model() {
  return {infergrid_default_model_begin,
          static_cast<size_t>(infergrid_default_model_end - infergrid_default_model_begin)};
}

std::string default_model_path() {
  if (const char* env = std::getenv("INFERGRID_DEFAULT_MODEL"); env != nullptr && *env) return env;
  std::filesystem::path dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg) {
    dir = xdg;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home) {
    dir = std::filesystem::path(home) / ".cache";
  } else {
    dir = std::filesystem::temp_directory_path();
  }
  const std::span<const unsigned char> bytes = embedded_default_model();
  const auto hash = XXH3_64bits(bytes.data(), bytes.size());
  return (dir / "infergrid" / fmt::format("infergrid-default-{:016x}.gguf", hash)).string();
}

namespace {

bool file_holds(const std::string& path, std::span<const unsigned char> bytes) {
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) != bytes.size() || ec) return false;
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(1 << 20);
  size_t offset = 0;
  while (in && offset < bytes.size()) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto n = static_cast<size_t>(in.gcount());
    if (n == 0 || std::memcmp(chunk.data(), bytes.data() + offset, n) != 0) return false;
    offset += n;
  }
  return offset == bytes.size();
}

}  // namespace

Result<std::string> resolve_model_path(const std::string& requested) {
  if (!requested.empty()) return requested;
  const std::string path = default_model_path();
  const std::span<const unsigned char> bytes = embedded_default_model();
  // A file the user named is theirs: used as it is, written only when absent. Our own cached
  // copy is compared with the embedded bytes, so a damaged one is replaced rather than served.
  const char* env = std::getenv("INFERGRID_DEFAULT_MODEL");
  const bool user_named = env != nullptr && *env;
  if (user_named ? std::filesystem::exists(path) : file_holds(path, bytes)) return path;
  spdlog::info("writing the default model to {}", path);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  // Written under a temporary name and renamed, so a crash never leaves half a model.
  const std::string temporary = path + fmt::format(".tmp{}", static_cast<long>(::getpid()));
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) {
      std::filesystem::remove(temporary, ec);
      return make_error(StatusCode::kIoError, "cannot write the default model to '{}'", path);
    }
  }
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    std::filesystem::remove(temporary, ec);
    return make_error(StatusCode::kIoError, "cannot write the default model to '{}'", path);
  }
  return path;
}

}  // namespace infergrid
