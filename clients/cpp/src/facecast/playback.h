// Facecast reference client: reply playback on the client's clock, and the acknowledgements that put the
// face on that clock (docs/protocol.md, "Timing and the playback handshake").
//
// Sans-I/O and single-threaded: the caller says what arrived (on_*), pulls the audio to play (render), and
// collects what to send (poll), the face frames that are due (take_due_faces) and the character's actions
// that are due (take_due_actions). Times are seconds on any monotonic clock the caller chooses, the same one
// for every call.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "facecast/protocol.h"

namespace facecast {

struct PlaybackConfig {
  int rate = 24000;   ///< reply audio rate (the hello's audio.rate)
  int channels = 1;   ///< reply audio channels (the hello's audio.channels)
  double prebuffer = 0.1;
  ///< seconds of an utterance buffered before it starts playing (its jitter buffer). Kept below 0.9 s: the
  ///< server sends only the first second before playback_started.
  double output_latency = 0.0;
  ///< seconds from render() handing samples over to them leaving the speakers (the audio device's buffers):
  ///< playback_started is sent that much later, so the face (Live Link) does not lead the voice.
  bool acks = true;  ///< send playback_started (the hello's acks)
};

/// One utterance's reply audio (interleaved PCM16): buffered until `prebuffer_frames` are there (or the
/// utterance ended), then read out. Running dry and then receiving more of the utterance is an underrun
/// (an audible gap); running dry right before utterance_end arrives is not.
class JitterBuffer {
 public:
  JitterBuffer(std::size_t prebuffer_frames, int channels);

  /// Appends `count` interleaved samples starting at frame `offset`. Returns false when the offset does not
  /// continue the stream: a gap is filled with silence, samples already received are dropped.
  bool push(std::uint64_t offset, const std::int16_t* samples, std::size_t count);
  /// No more audio will come (utterance_end): playback may start below the prebuffer, and running out at
  /// the end is not an underrun.
  void finish() { finished_ = true; }
  /// Playing, or may start now (prebuffer reached or finished with audio).
  bool ready() const;
  /// Copies up to `frames` frames to `out` once ready; returns the frames copied (0 while prebuffering).
  std::size_t read(std::int16_t* out, std::size_t frames);
  void clear();

  bool started() const { return started_; }
  bool finished() const { return finished_; }
  /// Finished and everything received was read.
  bool drained() const { return finished_ && buffered() == 0; }
  std::size_t buffered() const { return (data_.size() - head_) / channels_; }
  std::uint64_t received() const { return received_; }
  std::uint64_t position() const { return position_; }
  std::uint32_t underruns() const { return underruns_; }
  /// Silent frames played in those gaps.
  std::uint64_t underrun_frames() const { return underrun_frames_; }
  std::uint32_t discontinuities() const { return discontinuities_; }

 private:
  std::vector<std::int16_t> data_;
  std::size_t head_ = 0;
  std::size_t channels_;
  std::size_t prebuffer_;
  std::uint64_t received_ = 0;  ///< frames received (and gap frames filled)
  std::uint64_t position_ = 0;  ///< frames read
  std::uint32_t underruns_ = 0;
  std::uint64_t underrun_frames_ = 0;
  std::uint64_t dry_frames_ = 0;  ///< silent frames read since the buffer ran dry
  std::uint32_t discontinuities_ = 0;
  bool started_ = false;
  bool finished_ = false;
  bool dry_ = false;
};

/// A socket face frame, released by Player::take_due_faces when its audio sample is heard.
struct FaceFrame {
  std::uint32_t utterance = 0;
  std::uint32_t index = 0;  ///< frame index in the utterance (frame i belongs at sample round(i * rate / 60))
  double due = 0.0;         ///< client time its sample is heard
  std::array<float, kFaceWidth> values{};
};

/// A character's action (the server's `action`), released by Player::take_due_actions when playback of its
/// utterance reaches sample `at`: the moment its words before it have been heard.
struct DueAction {
  std::uint32_t utterance = 0;
  std::string id;  ///< answer with action_result for this id (Client::action_result)
  std::string name;
  Json arguments;  ///< a JSON object (arguments.dump() for its text)
  std::uint64_t at = 0;          ///< the sample of the utterance it belongs at
  double due = 0.0;              ///< client time sample `at` is heard (before `delivered` when it came late)
  double arrived = 0.0;          ///< client time the action message arrived
  double delivered = 0.0;        ///< the `now` of the take_due_actions call that released it
  std::uint64_t position = 0;    ///< the utterance's sample heard at `delivered` (>= at)
  bool late = false;             ///< it arrived after sample `at` was heard: released at once
};

/// What happened to one utterance (tests and the CLI's summary read these).
struct UtteranceReport {
  std::uint32_t utterance = 0;
  std::uint64_t received = 0;        ///< audio frames (samples per channel) received
  std::uint64_t played = 0;          ///< audio frames handed to the output
  std::uint64_t heard = 0;           ///< the position sent in playback_finished
  std::uint64_t server_samples = 0;  ///< utterance_end.samples
  std::uint64_t server_frames = 0;   ///< utterance_end.frames
  std::uint64_t face_frames = 0;     ///< socket face frames received
  std::uint64_t face_shown = 0;      ///< face frames released by take_due_faces
  std::uint64_t face_before_ack = 0;  ///< face frames that arrived before playback_started was sent
  std::uint32_t underruns = 0;        ///< audible gaps: the audio ran dry and more of it came later
  std::uint64_t underrun_frames = 0;  ///< silent frames played in those gaps
  std::uint32_t discontinuities = 0;  ///< audio frames whose offset did not continue the previous one
  std::uint32_t after_clear = 0;      ///< audio/face frames that arrived after clear_buffer
  std::uint32_t acks_sent = 0;        ///< playback_started messages sent (exactly 1 for a played utterance)
  std::uint32_t finishes_sent = 0;    ///< playback_finished messages sent (at most 1)
  std::uint32_t actions = 0;          ///< action messages received
  std::uint32_t actions_taken = 0;    ///< actions released by take_due_actions
  std::uint32_t actions_dropped = 0;  ///< actions dropped by clear_buffer (held, or arriving after it)
  bool ended = false;                 ///< utterance_end arrived
  bool cleared = false;               ///< clear_buffer arrived
  double first_audio = -1.0;          ///< client time its first audio frame arrived
  double playback_start = -1.0;       ///< client time its first sample is heard (= when playback_started is sent)
};

class Player {
 public:
  explicit Player(PlaybackConfig config);

  const PlaybackConfig& config() const { return config_; }
  /// The server's welcome decides: without acks, face frames come unasked and none are sent.
  void set_acks(bool acks) { config_.acks = acks; }

  void on_utterance_start(const UtteranceStart& start);
  void on_audio(const AudioFrame& frame, double now);
  void on_face(const FaceFrames& face);
  void on_utterance_end(const UtteranceEnd& end);
  /// An `action` of an utterance: held until playback reaches its sample `at` (see take_due_actions).
  void on_action(const Action& action, double now);
  /// Drops the utterance's audio, face frames and actions not yet taken now, and queues its
  /// playback_finished (interrupted, with the position heard by `now`). Audio already handed to the output
  /// device is the caller's to flush.
  void on_clear_buffer(std::uint32_t utterance, double now);
  /// Stops every utterance now, as if each got clear_buffer (the engine's own interrupt or barge-in).
  void clear_all(double now);

  /// Fills `frames` frames of `out` (interleaved, config().channels) with what plays next: utterances one
  /// after another, silence where nothing plays. `start_time` is when out[0] is handed to the audio device
  /// (it is heard output_latency later). Returns the frames of reply audio (not silence) written.
  std::size_t render(std::int16_t* out, std::size_t frames, double start_time);
  /// The messages due by `now`, in order: playback_started when an utterance's first sample is heard,
  /// playback_finished when its last one is (or at once after clear_buffer). Send them as text frames.
  std::vector<std::string> poll(double now);
  /// Socket face frames whose audio sample is heard by `now`, in order.
  std::vector<FaceFrame> take_due_faces(double now);
  /// Actions whose sample `at` is heard by `now` (on the same clock as the face frames: render's start_time
  /// plus the output latency), in order; never before the utterance's playback_started went out (poll). An
  /// action that came after its sample was heard is released at once; one of an utterance without audio
  /// when that utterance's turn to play comes. Call it as often as poll (every tick).
  std::vector<DueAction> take_due_actions(double now);

  /// Nothing is buffered, playing, or waiting to be acknowledged, shown or taken.
  bool idle() const { return utts_.empty() && late_.empty(); }
  /// Reports of the recent utterances (the last 256), oldest first, the active ones included.
  std::vector<UtteranceReport> reports() const;
  /// Audio or face frames of an utterance not (or no longer) playing that was not cleared (ignored).
  std::uint64_t stray_frames() const { return stray_frames_; }
  /// Actions of an utterance never started (ignored).
  std::uint64_t stray_actions() const { return stray_actions_; }

 private:
  struct Segment {
    double heard;        ///< client time sample `pos` is heard
    std::uint64_t pos;   ///< first frame of the segment in the utterance
    std::uint64_t count;
  };
  struct Utt {
    Utt(std::uint32_t id, std::size_t prebuffer, int channels) : audio(prebuffer, channels) { report.utterance = id; }
    UtteranceReport report;
    JitterBuffer audio;
    std::deque<FaceFrame> faces;
    std::deque<DueAction> actions;  ///< held, in order of `at`
    std::vector<Segment> segments;
    double silent_heard = -1.0;  ///< an utterance that ended without audio: when its turn to play came
    bool rendered = false;  ///< all its audio was handed to the output (or it was cleared)
    bool ack_pending = false;
    double ack_due = 0.0;
    bool finish_pending = false;
    double finish_due = 0.0;
  };

  Utt* find(std::uint32_t utterance);
  /// Frames of an utterance no longer queued: counted on its report when it was cleared, else as stray.
  bool late_for_cleared(std::uint32_t utterance, std::uint64_t frames);
  double heard_time(const Utt& utt, std::uint64_t sample, bool& known) const;
  std::uint64_t heard_position(const Utt& utt, double now) const;
  void retire();

  PlaybackConfig config_;
  std::size_t prebuffer_frames_;
  std::deque<Utt> utts_;
  std::deque<UtteranceReport> history_;
  std::vector<std::string> outbox_;
  std::deque<DueAction> late_;  ///< actions of an utterance already played and retired: released at once
  std::uint64_t stray_frames_ = 0;
  std::uint64_t stray_actions_ = 0;
};

}  // namespace facecast
