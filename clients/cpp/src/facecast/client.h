// Facecast reference client: one engine session over any WebSocket (docs/protocol.md).
//
// The client owns no socket and no thread. The application (the CLI, an Unreal component) gives it a
// Transport to send with, feeds it every message the socket receives, pulls the reply audio when its audio
// output wants more, and calls update() regularly (every frame, or every few milliseconds) so that the
// acknowledgements go out when the audio is heard. All calls on one thread (or under one lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facecast/playback.h"
#include "facecast/protocol.h"

namespace facecast {

/// Sends on the application's WebSocket. Each call is one complete WebSocket message.
class Transport {
 public:
  virtual ~Transport() = default;
  /// A text frame (UTF-8 JSON). Returns false when it could not be sent (not connected).
  virtual bool send_text(std::string_view text) = 0;
  /// A binary frame.
  virtual bool send_binary(const std::uint8_t* data, std::size_t size) = 0;
};

struct ClientOptions {
  Hello hello;                  ///< what this engine asks for (audio format, face, acks, turns, subject...)
  double prebuffer = 0.1;       ///< seconds buffered per utterance before it plays (PlaybackConfig::prebuffer)
  double output_latency = 0.0;  ///< seconds from render() to the speakers (PlaybackConfig::output_latency)
};

class Client {
 public:
  Client(Transport& transport, ClientOptions options);

  /// Sends the hello. Call once the socket is connected (Unreal: OnConnected).
  bool open();
  /// A text frame arrived: decodes it, updates the playback (utterance_start/end, clear_buffer, welcome)
  /// and returns it for the application (transcripts, reply text, emotion, errors, timing...). A frame that
  /// does not decode returns nothing (`last_error()` says why) and changes nothing.
  std::optional<ServerMessage> on_text(std::string_view text, double now);
  /// A complete binary frame arrived (reply audio or face frames). Returns false when it does not decode.
  bool on_binary(const std::uint8_t* data, std::size_t size, double now);

  /// The next `frames` frames of reply audio (interleaved PCM16 at hello.audio): see Player::render.
  std::size_t render(std::int16_t* out, std::size_t frames, double start_time);
  /// Sends the acknowledgements that are due by `now`; returns how many messages it sent.
  std::size_t update(double now);
  /// Socket face frames whose sample is heard by `now` (hello.face true).
  std::vector<FaceFrame> take_due_faces(double now) { return player_.take_due_faces(now); }
  /// The character's actions whose sample is heard by `now` (Player::take_due_actions): carry each out, then
  /// answer it with action_result. Sends the acknowledgements due first (update), so an action never goes
  /// to the game before its utterance's playback_started went to the server. Call it every tick.
  std::vector<DueAction> take_due_actions(double now);

  // What the engine says.
  bool say(std::string_view text);
  /// Microphone PCM16 at hello.mic (interleaved when stereo); split into frames of at most 1 MiB.
  bool send_mic(const std::int16_t* samples, std::size_t count);
  bool end_of_speech();
  /// Stops the reply now: sends `interrupt` and stops local playback at once (each playing utterance is
  /// reported with playback_finished, interrupted, at the position heard by `now`). Flush the audio already
  /// handed to the device too (Unreal: USoundWaveProcedural::ResetAudio).
  bool interrupt(double now);
  bool set_context(const std::vector<Json::Member>& facts, bool replace = false);
  /// What came of action `id` (a DueAction's id): `result` is any small JSON (a string, an object...; null
  /// sends none). The character's language model is told on its next turn.
  bool action_result(std::string_view id, bool ok = true, const Json& result = Json());
  bool ping(std::int64_t id = -1);
  bool bye();

  /// The server's welcome, once it came.
  const std::optional<Welcome>& welcome() const { return welcome_; }
  const Player& player() const { return player_; }
  const ClientOptions& options() const { return options_; }
  /// Why the last frame was refused by on_text/on_binary.
  const std::string& last_error() const { return last_error_; }

 private:
  Transport& transport_;
  ClientOptions options_;
  Player player_;
  std::optional<Welcome> welcome_;
  std::uint64_t mic_offset_ = 0;
  std::string last_error_;
};

}  // namespace facecast
