// The Kubernetes manifests of deploy/k8s, checked as far as a machine without a cluster can:
// tools/check_k8s_manifests on them (the containers' flags against this build's binary, the
// autoscaler's metric against a real serve's /metrics), kubectl's offline commands on the
// kustomization, and broken copies that each must be refused with the problem named.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = INFERGRID_SOURCE_DIR;
const fs::path kManifests = kSource / "deploy" / "k8s";

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout, and stderr unless the command redirects it
};

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    r.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

fs::path work_dir() {
  const fs::path dir =
      fs::temp_directory_path() / ("infergrid_k8s_test_" + std::to_string(getpid()));
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A scrape of a real serve's /metrics, taken once per test process: the autoscaler's metric
// must be one the server exports, or the HPA never scales.
fs::path metrics_scrape() {
  static const fs::path path = [] {
    ServerProcess server;
    std::string log;
    if (!server.start(test_server_args({}), log)) return fs::path();
    const HttpResult r = curl(server.url() + "/metrics");
    if (r.status != 200) return fs::path();
    const fs::path p = work_dir() / "metrics.txt";
    write_file(p, r.body);
    return p;
  }();
  return path;
}

CommandResult check_manifests(const fs::path& target) {
  return run("/usr/bin/python3 " + (kSource / "tools" / "check_k8s_manifests").string() +
             " --binary " + INFERGRID_BINARY + " --metrics " + metrics_scrape().string() + " " +
             target.string() + " 2>&1");
}

// kubectl with no kubeconfig: nothing here may reach a developer's real cluster.
std::string kubectl() {
  return "KUBECONFIG=" + (work_dir() / "no-kubeconfig").string() + " kubectl";
}

TEST(K8sManifests, CheckerAcceptsTheShippedManifests) {
  ASSERT_FALSE(metrics_scrape().empty()) << "could not scrape a test server's /metrics";
  const CommandResult r = check_manifests(kManifests);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(": OK"), std::string::npos) << r.output;
}

// Offline, kubectl can build the kustomization and decode what it built (`kubectl label
// --local`); `apply`/`create --dry-run=client` need a server even with --validate=false (API
// discovery), so they cannot run here.
TEST(K8sManifests, KubectlBuildsTheKustomizationOffline) {
  ASSERT_EQ(run("command -v kubectl >/dev/null 2>&1").exit_code, 0)
      << "kubectl is missing: run tools/setup (it installs Debian's kubernetes-client)";
  ASSERT_FALSE(metrics_scrape().empty());
  const fs::path rendered = work_dir() / "rendered.yaml";
  const fs::path errors = work_dir() / "kubectl.err";
  const CommandResult build = run(kubectl() + " kustomize " + kManifests.string() + " > " +
                                  rendered.string() + " 2> " + errors.string());
  ASSERT_EQ(build.exit_code, 0) << read_file(errors);

  const CommandResult listed =
      run(kubectl() + " label --local -f " + rendered.string() +
          " infergrid.dev/checked=true -o jsonpath='{.kind}/{.metadata.name} "
          "{.metadata.namespace}{\"\\n\"}' 2> " +
          errors.string());
  ASSERT_EQ(listed.exit_code, 0) << read_file(errors);
  std::set<std::string> objects;
  std::istringstream lines(listed.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    const std::string object = line.substr(0, line.find(' '));
    const std::string ns =
        line.find(' ') == std::string::npos ? "" : line.substr(line.find(' ') + 1);
    // Every object but the namespace itself lands in it (kustomization.yaml sets it).
    EXPECT_EQ(ns, object.rfind("Namespace/", 0) == 0 ? "" : "infergrid") << line;
    EXPECT_TRUE(objects.insert(object).second) << object << " twice";
  }
  const std::set<std::string> expected = {"Namespace/infergrid",
                                          "Deployment/etcd",
                                          "Service/etcd",
                                          "Deployment/infergrid-instance",
                                          "Service/infergrid-instance",
                                          "Deployment/infergrid-router",
                                          "Service/infergrid",
                                          "HorizontalPodAutoscaler/infergrid-instance"};
  EXPECT_EQ(objects, expected) << listed.output;

  // What `kubectl apply -k` would send passes the same checks as the files.
  const CommandResult checked = check_manifests(rendered);
  EXPECT_EQ(checked.exit_code, 0) << checked.output;

  // And kubectl refuses a kustomization whose resource is missing.
  const fs::path broken = work_dir() / "missing-resource";
  fs::remove_all(broken);
  fs::copy(kManifests, broken, fs::copy_options::recursive);
  fs::remove(broken / "hpa.yaml");
  const CommandResult refused = run(kubectl() + " kustomize " + broken.string() + " 2>&1");
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("hpa.yaml"), std::string::npos) << refused.output;
}

// One deliberate mistake in a copy of deploy/k8s, and what the checker must say about it.
struct BrokenCase {
  const char* name;
  const char* file;
  const char* from;  // must occur in the shipped file: the case breaks if the manifests move on
  const char* to;
  const char* expected;
};
// Named in test output by its name, not by its bytes.
void PrintTo(const BrokenCase& c, std::ostream* os) { *os << c.name; }

class K8sManifestsBroken : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(K8sManifestsBroken, CheckerRefusesAndNamesTheProblem) {
  const BrokenCase& c = GetParam();
  ASSERT_FALSE(metrics_scrape().empty());
  const fs::path copy = work_dir() / c.name;
  fs::remove_all(copy);
  fs::copy(kManifests, copy, fs::copy_options::recursive);
  std::string text = read_file(copy / c.file);
  const size_t at = text.find(c.from);
  ASSERT_NE(at, std::string::npos) << c.file << " no longer contains: " << c.from;
  text.replace(at, std::string(c.from).size(), c.to);
  write_file(copy / c.file, text);

  const CommandResult r = check_manifests(copy);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(c.expected), std::string::npos) << "expected '" << c.expected << "' in:\n"
                                                          << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    OneMistakeEach, K8sManifestsBroken,
    ::testing::Values(
        BrokenCase{"ServiceSelectsNothing", "instances.yaml",
                   "    app.kubernetes.io/component: instance\n  ports:",
                   "    app.kubernetes.io/component: instanse\n  ports:", "matches no pod"},
        BrokenCase{"UnknownServeFlag", "instances.yaml", "- --etcd-ttl\n", "- --etcd-lease-ttl\n",
                   "--etcd-lease-ttl is not a flag of `infergrid serve`"},
        // route's help mentions this serve flag in a description; it is still not route's.
        BrokenCase{"ServeFlagOnTheRouter", "router.yaml",
                   "            - --policy\n            - cache_aware\n",
                   "            - --trust-request-priority\n",
                   "--trust-request-priority is not a flag of `infergrid route`"},
        BrokenCase{"TargetPortIsNoContainerPort", "router.yaml", "targetPort: http",
                   "targetPort: 8001", "targetPort 8001 is no containerPort"},
        BrokenCase{"ReadinessNotOnHealth", "instances.yaml",
                   "readinessProbe:\n            httpGet:\n              path: /health",
                   "readinessProbe:\n            httpGet:\n              path: /ready",
                   "readinessProbe with httpGet /health"},
        BrokenCase{"NoPreStop", "instances.yaml",
                   "preStop:", "postStart:", "needs a lifecycle.preStop hook"},
        BrokenCase{"GracePeriodShorterThanTheDrain", "instances.yaml",
                   "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30",
                   "terminationGracePeriodSeconds 30 is shorter"},
        BrokenCase{"PodIpNotDefined", "instances.yaml", "- name: POD_IP\n", "- name: MY_IP\n",
                   "uses $(POD_IP), which its env does not define"},
        BrokenCase{"RouterOnAnotherRegistry", "router.yaml", "- /infergrid/instances/",
                   "- /infergrid/other/", "serve and route use different registries"},
        BrokenCase{"EtcdServiceOnAnotherPort", "etcd.yaml", "- name: client\n      port: 2379",
                   "- name: client\n      port: 2380", "no Service etcd on port 2379"},
        BrokenCase{"AutoscalerTargetMissing", "hpa.yaml",
                   "    name: infergrid-instance\n  minReplicas",
                   "    name: infergrid-instances\n  minReplicas", "names no Deployment"},
        BrokenCase{"AutoscalerMetricNotExported", "hpa.yaml",
                   "name: infergrid_num_requests_waiting", "name: infergrid_requests_waiting",
                   "metric infergrid_requests_waiting is not in serve's /metrics"},
        BrokenCase{"ReplicasUnderAnAutoscaler", "instances.yaml", "spec:\n  # No `replicas`",
                   "spec:\n  replicas: 3\n  # No `replicas`", "sets replicas"},
        BrokenCase{"ManifestLeftOutOfTheKustomization", "kustomization.yaml", "  - hpa.yaml\n", "",
                   "does not list hpa.yaml"}),
    [](const ::testing::TestParamInfo<BrokenCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace infergrid::testing
