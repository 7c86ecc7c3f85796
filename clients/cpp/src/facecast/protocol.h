// Facecast reference client: the engine WebSocket protocol codec (docs/protocol.md, version 1.2).
//
// Pure functions, no I/O: encode what the client sends, decode what the server sends. Text frames are JSON
// objects with a "type"; binary frames have a 16-byte little-endian header (written and read byte by byte,
// so the host's endianness does not matter). Portable C++17 without exceptions or RTTI, so an Unreal module
// can compile it as is (see docs/unreal.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "facecast/json.h"

namespace facecast {

constexpr int kProtocolVersion = 1;
constexpr std::size_t kHeaderSize = 16;
constexpr int kFaceFps = 60;
constexpr std::size_t kFaceWidth = 68;
constexpr std::size_t kMaxTextFrame = 64 * 1024;     ///< largest JSON text frame the server accepts (bytes)
constexpr std::size_t kMaxBinaryFrame = 1024 * 1024;  ///< largest binary frame either side accepts (bytes)

enum class FrameKind : std::uint8_t { Mic = 1, Audio = 2, Face = 3 };

struct AudioFormat {
  int rate = 24000;
  int channels = 1;
};

/// Whether `rate` is one of the sample rates the protocol allows (8000 ... 96000 Hz).
bool is_supported_rate(int rate);

// -- client -> server (JSON) -------------------------------------------------------------------------

/// One thing the character may do in the game (protocol 1.2, "Actions"): its language model is offered it
/// as a tool, and each call comes back as an `action` message on the utterance clock.
struct ActionDeclaration {
  std::string name;         ///< 1-64 letters, digits or '_', not starting with a digit (the server checks)
  std::string description;  ///< what it does, for the language model
  Json parameters;          ///< JSON Schema of its arguments (an object of type "object"); null: left out
};

/// The `hello` that opens a session. Defaults are the protocol's.
struct Hello {
  AudioFormat audio{24000, 1};  ///< reply audio format wanted
  AudioFormat mic{16000, 1};    ///< format of the microphone PCM this client sends
  bool face = true;             ///< face frames over the socket (false when Live Link drives the face)
  std::string subject;          ///< Live Link subject ("" = the server's choice)
  std::string workflow = "conversation";
  bool acks = true;  ///< this client sends playback_started
  std::string turns = "server";  ///< "server" (VAD) or "client" (push-to-talk, end_of_speech)
  std::string character;         ///< a character of the server's config ("" = its default)
  std::vector<ActionDeclaration> actions;  ///< what the character may do (empty: the character's own, if any)
};

/// Reads action declarations as docs/protocol.md writes them: a JSON list of {name, description,
/// parameters} (or one such object), e.g. from a file or an editor property. Appends them to `out`; on a
/// malformed one returns false, says why in `error`, and appends nothing. The server checks the rest (names,
/// schemas, bounds) and refuses a bad declaration with `bad_message`.
bool parse_action_declarations(std::string_view json_text, std::vector<ActionDeclaration>& out,
                               std::string* error = nullptr);
/// The same, from JSON already parsed.
bool action_declarations_from_json(const Json& value, std::vector<ActionDeclaration>& out, std::string* error = nullptr);

std::string encode_hello(const Hello& hello);
std::string encode_text(std::string_view text);
std::string encode_end_of_speech();
/// `at` (client clock seconds) is informational; a negative value leaves it out.
std::string encode_playback_started(std::uint32_t utterance, double at = -1.0);
std::string encode_playback_finished(std::uint32_t utterance, std::uint64_t position, bool interrupted);
std::string encode_interrupt();
/// `ping` with a numeric id; a negative id sends none.
std::string encode_ping(std::int64_t id = -1);
std::string encode_bye();
/// `context`: each fact is set to its value (a string, number or bool Json) or removed (a null Json).
std::string encode_context(const std::vector<Json::Member>& facts, bool replace = false);
/// `action_result`: what came of the action `id` (any JSON up to 2 KiB; a null `result` is left out).
std::string encode_action_result(std::string_view id, bool ok = true, const Json& result = Json());

// -- server -> client (JSON) -------------------------------------------------------------------------

struct Welcome {
  int version = kProtocolVersion;
  AudioFormat audio;
  bool face_enabled = true;
  int face_fps = kFaceFps;
  int face_width = static_cast<int>(kFaceWidth);
  bool acks = true;
  double ack_timeout = 2.0;  ///< seconds the server waits for playback_started
  std::string workflow;
  std::string turns;
  std::string livelink_subject;  ///< "" when the server has no Live Link output
};
struct Transcript {
  std::string text;
  bool is_final = false;
  bool typed = false;
};
struct UtteranceStart {
  std::uint32_t utterance = 0;
  int rate = 0;
  int channels = 1;
};
struct ReplyText {
  std::uint32_t utterance = 0;
  std::string text;
  std::uint64_t at = 0;  ///< sample offset where this text's audio starts
};
struct Emotion {
  std::uint32_t utterance = 0;
  std::string emotion;
};
struct UtteranceEnd {
  std::uint32_t utterance = 0;
  std::uint64_t samples = 0;  ///< audio samples (per channel) the server sent
  std::uint64_t frames = 0;   ///< face frames the server sent (ceil(samples * 60 / rate))
  std::string text;
};
struct ClearBuffer {
  std::uint32_t utterance = 0;
  std::string reason;  ///< barge_in, interrupt, new_turn; "" for an abandoned utterance (ack_timeout)
};
/// `action` (protocol 1.2): the character acts. Call `name` with `arguments` when playback of `utterance`
/// reaches sample `at` (Player::take_due_actions does the timing), then answer with encode_action_result(id).
struct Action {
  std::uint32_t utterance = 0;
  std::string id;
  std::uint64_t at = 0;  ///< sample offset (at the client's rate) where the words before the action end
  std::string name;
  Json arguments;  ///< a JSON object, checked by the server against the declared schema
};
struct Timing {
  std::uint32_t utterance = 0;
  std::vector<std::pair<std::string, double>> stages;  ///< ms from the end of the player's speech
  /// Since 1.5: the microphone sample where the server's VAD heard the speech end (absent for typed text).
  std::optional<std::uint64_t> speech_end_sample;
};
struct ErrorMessage {
  std::string code;
  std::string message;
};
struct Pong {
  Json id;
};
/// Any other message (`failover`, and types a newer server adds): clients must ignore what they do not know.
struct Notice {
  std::string type;
  Json fields;
};

using ServerMessage = std::variant<Welcome, Transcript, UtteranceStart, ReplyText, Emotion, UtteranceEnd,
                                   ClearBuffer, Action, Timing, ErrorMessage, Pong, Notice>;

/// Decodes one server text frame. Returns nothing (and says why in `error`) when it is not a JSON object
/// with a string "type", or a known type has a missing or mistyped field. Unknown fields are ignored.
std::optional<ServerMessage> decode_server(std::string_view text, std::string* error = nullptr);

// -- binary frames -----------------------------------------------------------------------------------

/// Kind 1 (microphone, utterance 0) or 2 (reply audio): interleaved PCM16 from sample `offset` (per channel).
struct AudioFrame {
  FrameKind kind = FrameKind::Audio;
  std::uint32_t utterance = 0;
  std::uint64_t offset = 0;
  std::vector<std::int16_t> samples;
};
/// Kind 3: `count` frames of 68 float values from frame index `start` of the utterance.
struct FaceFrames {
  std::uint32_t utterance = 0;
  std::uint32_t start = 0;
  std::uint16_t count = 0;
  std::vector<float> values;  ///< count x 68
};
using BinaryMessage = std::variant<AudioFrame, FaceFrames>;

std::vector<std::uint8_t> encode_mic(std::uint64_t offset, const std::int16_t* samples, std::size_t count);
std::vector<std::uint8_t> encode_audio(std::uint32_t utterance, std::uint64_t offset, const std::int16_t* samples,
                                       std::size_t count);
/// `values` holds `count` x 68 floats.
std::vector<std::uint8_t> encode_face(std::uint32_t utterance, std::uint32_t start, const float* values,
                                      std::uint16_t count);
/// Decodes a binary frame of either direction: header, version, kind, payload size (PCM16 even, face exactly
/// count x 68 floats) are checked; nothing comes back (and `error` says why) otherwise.
std::optional<BinaryMessage> decode_binary(const std::uint8_t* data, std::size_t size, std::string* error = nullptr);

/// The audio sample at which face frame `index` is shown: round(index * rate / 60), halves to even (as the
/// server computes it).
std::uint64_t face_frame_sample(std::uint64_t index, int rate);
/// How many face frames cover `samples` audio samples: ceil(samples * 60 / rate).
std::uint64_t face_frames_for_samples(std::uint64_t samples, int rate);

/// Reassembles binary messages from Unreal's IWebSocket::OnRawMessage, which hands over every received
/// chunk, text and binary alike, with the bytes left in the current frame. Text messages (they start with
/// '{') are skipped: they arrive whole through OnMessage. The server sends each message as one frame.
class RawMessageAssembler {
 public:
  /// Feeds one chunk; returns true when `message()` now holds a complete binary message.
  bool feed(const void* data, std::size_t size, std::size_t bytes_remaining);
  const std::vector<std::uint8_t>& message() const { return message_; }

 private:
  std::vector<std::uint8_t> message_;
  bool in_message_ = false;
  bool binary_ = false;
};

// -- microphone --------------------------------------------------------------------------------------

/// Converts captured float audio (any rate, any channel count; Unreal's AudioCapture gives float32 at the
/// device's rate) into mono PCM16 at the rate declared in `hello.mic`: channels are averaged, the rate is
/// converted with an area-averaging (downsampling) or linear (upsampling) resampler that keeps its phase
/// across calls, samples are clipped to [-1, 1].
class MicConverter {
 public:
  explicit MicConverter(int out_rate = 16000) : out_rate_(out_rate) {}
  /// Appends the PCM16 made from `frames` interleaved frames of `channels` floats at `rate` to `out`.
  void convert(const float* interleaved, std::size_t frames, int channels, int rate, std::vector<std::int16_t>& out);
  void reset();

 private:
  int out_rate_;
  int in_rate_ = 0;
  std::int64_t produced_ = 0;  ///< output samples made since the stream (re)started
  std::int64_t dropped_ = 0;   ///< input samples no longer held (pending_[0] is input sample dropped_)
  std::vector<float> pending_;
};

/// Float sample in [-1, 1] to PCM16 (clipped, rounded).
std::int16_t float_to_pcm16(float value);

}  // namespace facecast
