// Facecast reference client: a minimal blocking RFC 6455 WebSocket client over POSIX sockets, for the CLI
// and tests (Unreal uses its own WebSockets module instead).
//
// ws:// only (no TLS), client frames masked, fragmented messages reassembled, pings answered with pongs,
// the closing handshake completed. No extensions (the server is asked for none).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facecast/client.h"

namespace facecast {

class WebSocketClient final : public Transport {
 public:
  enum class Result { Text, Binary, Timeout, Closed, Error };

  WebSocketClient() = default;
  ~WebSocketClient() override;
  WebSocketClient(const WebSocketClient&) = delete;
  WebSocketClient& operator=(const WebSocketClient&) = delete;

  /// Connects to `url` (ws://HOST[:PORT][/PATH][?QUERY]) and completes the opening handshake, with the
  /// extra request `headers` (e.g. Authorization). On failure returns false and `error()` says why.
  bool connect(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
               int timeout_ms = 5000);

  bool send_text(std::string_view text) override;
  bool send_binary(const std::uint8_t* data, std::size_t size) override;

  /// Waits up to `timeout_ms` for the next complete message and puts its payload in `payload`. Pings are
  /// answered on the way; a close frame is answered and returns Closed (`close_code()` holds its code).
  Result receive(std::vector<std::uint8_t>& payload, int timeout_ms);

  /// Starts the closing handshake (if open) and waits up to `timeout_ms` for the server's close frame.
  void close(std::uint16_t code = 1000, int timeout_ms = 1000);

  bool is_open() const { return fd_ >= 0 && !closed_; }
  std::uint16_t close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }
  const std::string& error() const { return error_; }

 private:
  bool send_frame(std::uint8_t opcode, const std::uint8_t* data, std::size_t size);
  bool write_all(const std::uint8_t* data, std::size_t size);
  /// Reads more bytes into the buffer, waiting until `deadline_ms` (a monotonic time in ms). 0: timeout.
  int fill(long long deadline_ms);
  bool fail(const std::string& why);
  Result broken(const std::string& why);
  void shutdown_socket();

  int fd_ = -1;
  bool closed_ = false;
  bool close_sent_ = false;
  std::uint16_t close_code_ = 0;
  std::string close_reason_;
  std::string error_;
  std::vector<std::uint8_t> inbox_;  ///< received bytes not parsed yet
  std::vector<std::uint8_t> partial_;  ///< fragments of the message being received
  std::uint8_t partial_opcode_ = 0;
};

}  // namespace facecast
