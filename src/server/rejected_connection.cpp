#include "server/rejected_connection.h"

#include <memory>

#include <fmt/format.h>
#include <boost/beast.hpp>

#include "server/linger_close.h"
#include "server/openai_api.h"

namespace infergrid {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

// A connection over --max-connections: told 503 at once, then closed.
class RejectedConnection : public std::enable_shared_from_this<RejectedConnection> {
 public:
  RejectedConnection(tcp::socket socket, ServerContext& server)
      : stream_(std::move(socket)), server_(server) {
    ++server_.rejecting_connections;
  }
  ~RejectedConnection() { --server_.rejecting_connections; }

  void start() {
    auto res =
        std::make_shared<http::response<http::string_body>>(http::status::service_unavailable, 11);
    res->set(http::field::server, "infergrid");
    res->set(http::field::content_type, "application/json");
    res->set(http::field::retry_after, "1");
    res->keep_alive(false);
    res->body() =
        api_error(503, fmt::format("the server has {} open connections (its limit); retry "
                                   "later",
                                   server_.max_connections))
            .to_json();
    res->prepare_payload();
    stream_.expires_after(kLingerTime);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec) return;
                        linger_close(self, self->stream_);
                      });
  }

 private:
  beast::tcp_stream stream_;
  ServerContext& server_;
};

}  // namespace

void reject_connection(tcp::socket socket, ServerContext& server) {
  std::make_shared<RejectedConnection>(std::move(socket), server)->start();
}

}  // namespace infergrid
