// Test helpers: a real `infergrid serve` process on a free loopback port, and real clients
// (curl) talking to it. The server is started with --port 0 and its port read from the line it
// prints once listening.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/synth.h"

extern char** environ;

namespace infergrid::testing {

// A small synthetic model shared by the tests of one binary.
inline std::string test_model_path() {
  static const std::string path = [] {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("infergrid_server_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string p = (dir / "model.gguf").string();
    SynthOptions o;
    o.size = "1m";
    o.type = TensorType::kQ8_0;
    o.n_ctx = 16384;  // long enough that a generation outlasts an impatient client
    if (!synthesize_model(o, p, 2).is_ok()) return std::string();
    return p;
  }();
  return path;
}

// The arguments of a test server on test_model_path(): `extra`, with a 64 MiB KV pool unless it
// sets --kv-cache-bytes, served as "tiny" on one compute thread.
inline std::vector<std::string> test_server_args(std::vector<std::string> extra) {
  if (std::find(extra.begin(), extra.end(), "--kv-cache-bytes") == extra.end()) {
    extra.insert(extra.begin(), {"--kv-cache-bytes", "64MiB"});
  }
  extra.insert(extra.begin(),
               {"--model", test_model_path(), "--served-model-name", "tiny", "--threads", "1"});
  return extra;
}

class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (drain_.joinable()) drain_.join();  // the pipe reached EOF when the process died
    if (out_ != nullptr) std::fclose(out_);
  }

  // Starts `infergrid serve --port 0 <args>` and waits until it listens. Returns false (with
  // the output so far in `log`) if it exits or does not listen within the timeout.
  // `max_open_files` > 0: the server's soft RLIMIT_NOFILE (set around the spawn, so the child
  // inherits it from its first instruction).
  // `subcommand`: "serve", or "route" for a router (it prints the same "listening on" line).
  bool start(const std::vector<std::string>& args, std::string& log, rlim_t max_open_files = 0,
             const std::string& subcommand = "serve") {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    // INFERGRID_TEST_BINARY runs the same tests against another build (an older one, to show
    // a test fails without the fix it covers).
    const char* override_binary = std::getenv("INFERGRID_TEST_BINARY");
    const std::string binary = override_binary != nullptr ? override_binary : INFERGRID_BINARY;
    std::vector<std::string> argv_strings = launcher_;
    argv_strings.insert(argv_strings.end(), {binary, subcommand, "--port", "0", "--host", host_});
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    rlimit saved{};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    if (max_open_files > 0) {
      rlimit lowered = saved;
      lowered.rlim_cur = max_open_files;
      ::setrlimit(RLIMIT_NOFILE, &lowered);
    }
    const int rc = launcher_.empty()
                       ? posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ)
                       : posix_spawnp(&pid_, launcher_.front().c_str(), &actions, nullptr,
                                      argv.data(), environ);
    if (max_open_files > 0) ::setrlimit(RLIMIT_NOFILE, &saved);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      pid_ = -1;
      return false;
    }
    out_ = ::fdopen(fds[0], "r");
    std::array<char, 4096> line{};
    while (std::fgets(line.data(), line.size(), out_) != nullptr) {
      log += line.data();
      const std::string s(line.data());
      const auto at = s.find("listening on http://");
      if (at != std::string::npos) {
        port_ = std::stoi(s.substr(s.rfind(':') + 1));
        // Keep draining the server's output so it never blocks on a full pipe.
        drain_ = std::thread([this] {
          std::array<char, 4096> buf{};
          while (std::fgets(buf.data(), buf.size(), out_) != nullptr) {
            output_bytes_ += std::strlen(buf.data());
          }
        });
        return true;
      }
    }
    return false;
  }

  // Before start(): the address to listen on (and reach it at), and a command that runs the
  // server (one that execs it, such as `ip netns exec NAME`, so signals reach the server).
  void set_host(std::string host) { host_ = std::move(host); }
  void set_launcher(std::vector<std::string> launcher) { launcher_ = std::move(launcher); }

  int port() const { return port_; }
  // Bytes the server has written to stdout and stderr since it started listening.
  size_t output_bytes() const { return output_bytes_; }
  // User plus system CPU seconds the server has used, from /proc.
  double cpu_seconds() const {
    FILE* f = std::fopen(("/proc/" + std::to_string(pid_) + "/stat").c_str(), "r");
    if (f == nullptr) return -1;
    std::array<char, 4096> buf{};
    const size_t n = std::fread(buf.data(), 1, buf.size() - 1, f);
    std::fclose(f);
    const std::string stat(buf.data(), n);
    // Fields after the command (which may hold spaces) start after the last ')'.
    size_t at = stat.rfind(')') + 2;
    for (int field = 3; field < 14; ++field) at = stat.find(' ', at) + 1;
    unsigned long long utime = 0, stime = 0;
    std::sscanf(stat.c_str() + at, "%llu %llu", &utime, &stime);
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }

  void signal(int sig) const { ::kill(pid_, sig); }

  // Waits for the process to exit; its exit code, or -1 on timeout or death by signal.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        if (drain_.joinable()) drain_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string host_ = "127.0.0.1";
  std::vector<std::string> launcher_;
  FILE* out_ = nullptr;
  std::thread drain_;
  std::atomic<size_t> output_bytes_{0};
};

struct HttpResult {
  int status = 0;
  std::string headers;
  std::string body;
};

// One request with the real curl client. `extra` is passed to curl as is.
inline HttpResult curl(const std::string& url, const std::string& body = "",
                       const std::string& extra = "") {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string tag = std::to_string(::getpid()) + "_" +
                          std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  const std::string body_file = (dir / ("ig_curl_body_" + tag)).string();
  const std::string header_file = (dir / ("ig_curl_headers_" + tag)).string();
  std::string command =
      "curl -s -N -o " + body_file + " -D " + header_file + " -w '%{http_code}' " + extra + " ";
  if (!body.empty()) {
    const std::string request_file = (dir / ("ig_curl_request_" + tag)).string();
    FILE* f = std::fopen(request_file.c_str(), "wb");
    std::fwrite(body.data(), 1, body.size(), f);
    std::fclose(f);
    command += "-H 'Content-Type: application/json' --data-binary @" + request_file + " ";
  }
  command += "'" + url + "' 2>/dev/null";
  HttpResult r;
  FILE* pipe = popen(command.c_str(), "r");
  std::array<char, 64> code{};
  if (pipe != nullptr) {
    if (std::fgets(code.data(), code.size(), pipe) != nullptr) r.status = std::atoi(code.data());
    pclose(pipe);
  }
  auto slurp = [](const std::string& path) {
    std::string s;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
      std::array<char, 4096> buf{};
      size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) s.append(buf.data(), n);
      std::fclose(f);
    }
    return s;
  };
  r.body = slurp(body_file);
  r.headers = slurp(header_file);
  return r;
}

// The value of an unlabelled Prometheus sample in /metrics text, or nullopt.
inline std::optional<double> metric(const std::string& text, const std::string& name) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string::npos) {
    const bool line_start = at == 0 || text[at - 1] == '\n';
    const size_t after = at + name.size();
    if (line_start && after < text.size() && (text[after] == ' ' || text[after] == '{')) {
      const size_t space = text.find(' ', after);
      return std::stod(text.substr(space + 1));
    }
    at = after;
  }
  return std::nullopt;
}

}  // namespace infergrid::testing
