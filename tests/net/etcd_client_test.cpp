#include "net/etcd_client.h"

#include <gtest/gtest.h>

namespace infergrid {
namespace {

TEST(EtcdClientTest, Base64RoundTripsEveryLengthAndRefusesGarbage) {
  std::string bytes;
  for (int n = 0; n < 40; ++n) {
    const std::string encoded = base64_encode(bytes);
    EXPECT_EQ(encoded.size() % 4, 0u);
    auto back = base64_decode(encoded);
    ASSERT_TRUE(back.is_ok()) << n;
    EXPECT_EQ(*back, bytes);
    bytes.push_back(static_cast<char>(n * 37 + 200));
  }
  EXPECT_EQ(base64_encode("/ig/a"), "L2lnL2E=");  // as etcd's gateway writes it
  EXPECT_FALSE(base64_decode("not base64!").is_ok());
}

TEST(EtcdClientTest, AnEtcdThatIsNotThereIsAnErrorNotAHang) {
  HttpClient http;
  auto url = Url::parse("http://127.0.0.1:1");
  ASSERT_TRUE(url.is_ok());
  EtcdClient etcd(http, *url);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(etcd.grant_lease_sync(5).is_ok());
  EXPECT_FALSE(etcd.range_prefix_sync("/x/").is_ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(11));
}

}  // namespace
}  // namespace infergrid
