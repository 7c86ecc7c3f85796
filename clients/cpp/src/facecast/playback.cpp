// Facecast reference client: jitter buffer and playback acknowledgements (see playback.h).
#include "facecast/playback.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace facecast {

constexpr std::size_t kReportHistory = 256;
constexpr double kMaxPrebuffer = 0.9;

// -- JitterBuffer -------------------------------------------------------------------------------------

JitterBuffer::JitterBuffer(std::size_t prebuffer_frames, int channels)
    : channels_(channels > 0 ? static_cast<std::size_t>(channels) : 1), prebuffer_(prebuffer_frames) {}

bool JitterBuffer::push(std::uint64_t offset, const std::int16_t* samples, std::size_t count) {
  const std::size_t frames = count / channels_;
  bool continuous = true;
  std::size_t skip = 0;  // frames of this packet already received
  if (offset > received_) {
    continuous = false;
    const std::uint64_t gap = offset - received_;
    data_.insert(data_.end(), static_cast<std::size_t>(gap) * channels_, std::int16_t{0});
    received_ = offset;
  } else if (offset < received_) {
    continuous = false;
    skip = static_cast<std::size_t>(std::min<std::uint64_t>(received_ - offset, frames));
  }
  if (!continuous) ++discontinuities_;
  if (dry_ && frames > skip) {  // more audio after running dry: the silence played was a gap
    ++underruns_;
    underrun_frames_ += dry_frames_;
    dry_ = false;
    dry_frames_ = 0;
  }
  if (frames > skip) {
    data_.insert(data_.end(), samples + skip * channels_, samples + frames * channels_);
    received_ += frames - skip;
  }
  return continuous;
}

bool JitterBuffer::ready() const {
  if (started_) return true;
  const std::size_t have = buffered();
  return have > 0 && (have >= prebuffer_ || finished_);
}

std::size_t JitterBuffer::read(std::int16_t* out, std::size_t frames) {
  if (!ready()) return 0;
  started_ = true;
  const std::size_t n = std::min(frames, buffered());
  if (n > 0) {
    std::memcpy(out, data_.data() + head_, n * channels_ * sizeof(std::int16_t));
    head_ += n * channels_;
    position_ += n;
  }
  if (head_ == data_.size()) {  // everything read: start the storage over
    data_.clear();
    head_ = 0;
  } else if (head_ > 65536 && head_ * 2 > data_.size()) {
    data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  if (n < frames && !finished_) {
    dry_ = true;
    dry_frames_ += frames - n;
  }
  return n;
}

void JitterBuffer::clear() {
  data_.clear();
  head_ = 0;
  finished_ = true;
}

// -- Player -------------------------------------------------------------------------------------------

Player::Player(PlaybackConfig config) : config_(config) {
  if (config_.rate <= 0) config_.rate = 24000;
  if (config_.channels <= 0) config_.channels = 1;
  config_.prebuffer = std::clamp(config_.prebuffer, 0.0, kMaxPrebuffer);
  config_.output_latency = std::max(0.0, config_.output_latency);
  prebuffer_frames_ = static_cast<std::size_t>(std::llround(config_.prebuffer * config_.rate));
}

Player::Utt* Player::find(std::uint32_t utterance) {
  for (Utt& utt : utts_) {
    if (utt.report.utterance == utterance) return &utt;
  }
  return nullptr;
}

void Player::on_utterance_start(const UtteranceStart& start) {
  if (find(start.utterance) != nullptr) return;
  for (const UtteranceReport& old : history_) {
    if (old.utterance == start.utterance) return;  // a repeat of a finished one
  }
  utts_.emplace_back(start.utterance, prebuffer_frames_, config_.channels);
}

bool Player::late_for_cleared(std::uint32_t utterance, std::uint64_t frames) {
  for (UtteranceReport& old : history_) {
    if (old.utterance == utterance && old.cleared) {
      old.after_clear += static_cast<std::uint32_t>(frames);
      return true;
    }
  }
  stray_frames_ += frames;
  return false;
}

void Player::on_audio(const AudioFrame& frame, double now) {
  Utt* utt = find(frame.utterance);
  if (utt == nullptr) {
    late_for_cleared(frame.utterance, 1);
    return;
  }
  if (utt->report.cleared) {
    ++utt->report.after_clear;
    return;
  }
  if (utt->report.first_audio < 0) utt->report.first_audio = now;
  utt->audio.push(frame.offset, frame.samples.data(), frame.samples.size());
  utt->report.received = utt->audio.received();
  utt->report.discontinuities = utt->audio.discontinuities();
  utt->report.underruns = utt->audio.underruns();
  utt->report.underrun_frames = utt->audio.underrun_frames();
}

void Player::on_face(const FaceFrames& face) {
  Utt* utt = find(face.utterance);
  if (utt == nullptr) {
    late_for_cleared(face.utterance, face.count);
    return;
  }
  if (utt->report.cleared) {
    utt->report.after_clear += face.count;
    return;
  }
  utt->report.face_frames += face.count;
  if (config_.acks && utt->report.acks_sent == 0) utt->report.face_before_ack += face.count;
  for (std::size_t k = 0; k < face.count; ++k) {
    FaceFrame frame;
    frame.utterance = face.utterance;
    frame.index = face.start + static_cast<std::uint32_t>(k);
    std::copy_n(face.values.begin() + static_cast<std::ptrdiff_t>(k * kFaceWidth), kFaceWidth, frame.values.begin());
    utt->faces.push_back(frame);
  }
}

void Player::on_utterance_end(const UtteranceEnd& end) {
  Utt* utt = find(end.utterance);
  if (utt == nullptr) return;
  utt->report.ended = true;
  utt->report.server_samples = end.samples;
  utt->report.server_frames = end.frames;
  utt->audio.finish();
}

void Player::on_action(const Action& action, double now) {
  DueAction held;
  held.utterance = action.utterance;
  held.id = action.id;
  held.name = action.name;
  held.arguments = action.arguments;
  held.at = action.at;
  held.arrived = now;
  Utt* utt = find(action.utterance);
  if (utt == nullptr) {
    for (UtteranceReport& old : history_) {
      if (old.utterance != action.utterance) continue;
      ++old.actions;
      if (old.cleared) {
        ++old.actions_dropped;
      } else {  // played to its end already (a server sends actions before utterance_end): at once
        held.due = now;
        held.late = true;
        held.position = old.heard;
        late_.push_back(std::move(held));
      }
      return;
    }
    ++stray_actions_;
    return;
  }
  ++utt->report.actions;
  if (utt->report.cleared) {
    ++utt->report.actions_dropped;
    return;
  }
  // In order of `at` (the server sends them so), after those of the same sample.
  auto place = std::upper_bound(utt->actions.begin(), utt->actions.end(), held.at,
                                [](std::uint64_t at, const DueAction& other) { return at < other.at; });
  utt->actions.insert(place, std::move(held));
}

void Player::on_clear_buffer(std::uint32_t utterance, double now) {
  Utt* utt = find(utterance);
  if (utt == nullptr || utt->report.cleared) return;
  utt->report.cleared = true;
  utt->audio.clear();
  utt->faces.clear();
  utt->report.actions_dropped += static_cast<std::uint32_t>(utt->actions.size());
  utt->actions.clear();  // never taken: the character did not get that far
  utt->rendered = true;
  utt->ack_pending = false;  // never heard: its playback_started is not sent
  if (utt->report.finishes_sent == 0) {
    utt->finish_pending = false;
    const std::uint64_t heard = utt->report.acks_sent > 0 ? heard_position(*utt, now) : 0;
    utt->report.heard = heard;
    ++utt->report.finishes_sent;
    outbox_.push_back(encode_playback_finished(utterance, heard, true));
  }
}

void Player::clear_all(double now) {
  std::vector<std::uint32_t> ids;
  for (const Utt& utt : utts_) ids.push_back(utt.report.utterance);
  for (const std::uint32_t id : ids) on_clear_buffer(id, now);
}

std::size_t Player::render(std::int16_t* out, std::size_t frames, double start_time) {
  const auto channels = static_cast<std::size_t>(config_.channels);
  const double rate = static_cast<double>(config_.rate);
  std::fill(out, out + frames * channels, std::int16_t{0});
  std::size_t pos = 0;
  std::size_t audio = 0;
  for (Utt& utt : utts_) {
    if (pos >= frames) break;
    if (utt.rendered) continue;
    if (utt.audio.drained() && !utt.audio.started()) {  // ended without any audio: nothing to play
      utt.rendered = true;
      utt.silent_heard = start_time + static_cast<double>(pos) / rate + config_.output_latency;  // its actions
      continue;
    }
    if (!utt.audio.ready()) break;  // prebuffering: silence until it is (the next utterance waits)
    const bool first = !utt.audio.started();
    const std::uint64_t at = utt.audio.position();
    const std::size_t n = utt.audio.read(out + pos * channels, frames - pos);
    const double heard = start_time + static_cast<double>(pos) / rate + config_.output_latency;
    if (n > 0) {
      if (first) {
        utt.report.playback_start = heard;
        if (config_.acks) {
          utt.ack_pending = true;
          utt.ack_due = heard;
        }
      }
      Segment* last = utt.segments.empty() ? nullptr : &utt.segments.back();
      if (last != nullptr && last->pos + last->count == at &&
          std::fabs(last->heard + static_cast<double>(last->count) / rate - heard) < 1e-6) {
        last->count += n;  // continues the previous segment on the same clock
      } else {
        utt.segments.push_back(Segment{heard, at, n});
      }
      pos += n;
      audio += n;
      utt.report.played = utt.audio.position();
    }
    if (utt.audio.drained()) {  // the last sample is out: playback finishes when it is heard
      utt.rendered = true;
      utt.finish_pending = true;
      const Segment& last = utt.segments.back();
      utt.finish_due = last.heard + static_cast<double>(last.count) / rate;
      continue;
    }
    if (pos < frames) break;  // ran dry before its end: silence for the rest (an underrun if more comes)
  }
  return audio;
}

std::uint64_t Player::heard_position(const Utt& utt, double now) const {
  const double rate = static_cast<double>(config_.rate);
  std::uint64_t heard = 0;
  for (const Segment& seg : utt.segments) {
    if (seg.heard > now) break;
    const double elapsed = (now - seg.heard) * rate + 1e-6;  // (0.125 - 0.1) * 16000 is 399.99999...: 400
    const auto within = static_cast<std::uint64_t>(std::min(static_cast<double>(seg.count), std::floor(elapsed)));
    heard = seg.pos + within;
  }
  return heard;
}

double Player::heard_time(const Utt& utt, std::uint64_t sample, bool& known) const {
  const double rate = static_cast<double>(config_.rate);
  for (const Segment& seg : utt.segments) {
    if (sample >= seg.pos && sample < seg.pos + seg.count) {
      known = true;
      return seg.heard + static_cast<double>(sample - seg.pos) / rate;
    }
  }
  if (utt.silent_heard >= 0.0) {  // an utterance without audio (only actions): when its turn came
    known = true;
    return utt.silent_heard;
  }
  if (utt.rendered && !utt.segments.empty()) {  // past the last sample (an action after the last words)
    const Segment& last = utt.segments.back();
    known = true;
    return last.heard + static_cast<double>(last.count) / rate;
  }
  known = false;
  return 0.0;
}

std::vector<std::string> Player::poll(double now) {
  for (Utt& utt : utts_) {
    if (utt.ack_pending && now >= utt.ack_due) {
      utt.ack_pending = false;
      ++utt.report.acks_sent;
      outbox_.push_back(encode_playback_started(utt.report.utterance, utt.ack_due));
    }
    if (utt.finish_pending && !utt.ack_pending && now >= utt.finish_due) {
      utt.finish_pending = false;
      utt.report.heard = utt.report.played;
      ++utt.report.finishes_sent;
      outbox_.push_back(encode_playback_finished(utt.report.utterance, utt.report.played, false));
    }
  }
  retire();
  std::vector<std::string> due;
  due.swap(outbox_);
  return due;
}

std::vector<FaceFrame> Player::take_due_faces(double now) {
  std::vector<FaceFrame> due;
  for (Utt& utt : utts_) {
    while (!utt.faces.empty()) {
      FaceFrame& frame = utt.faces.front();
      bool known = false;
      const double when = heard_time(utt, face_frame_sample(frame.index, config_.rate), known);
      if (!known || when > now) break;
      frame.due = when;
      due.push_back(frame);
      utt.faces.pop_front();
      ++utt.report.face_shown;
    }
  }
  retire();
  return due;
}

std::vector<DueAction> Player::take_due_actions(double now) {
  std::vector<DueAction> due;
  while (!late_.empty()) {
    DueAction action = std::move(late_.front());
    late_.pop_front();
    action.delivered = now;
    for (UtteranceReport& old : history_) {
      if (old.utterance == action.utterance) ++old.actions_taken;
    }
    due.push_back(std::move(action));
  }
  for (Utt& utt : utts_) {
    if (utt.actions.empty() || utt.report.cleared) continue;
    // Never before the ack: playback_started goes out (poll) when the first sample is heard.
    if (utt.ack_pending || (config_.acks && utt.report.acks_sent == 0 && utt.silent_heard < 0.0)) continue;
    while (!utt.actions.empty()) {
      DueAction& action = utt.actions.front();
      bool known = false;
      const double when = heard_time(utt, action.at, known);
      if (!known || when > now) break;
      action.due = when;
      action.delivered = now;
      action.late = when < action.arrived;
      action.position = heard_position(utt, now);
      due.push_back(std::move(action));
      utt.actions.pop_front();
      ++utt.report.actions_taken;
    }
  }
  retire();
  return due;
}

void Player::retire() {
  // An utterance leaves the queue once it was played (or cleared), acknowledged, finished and its faces
  // shown; only its report stays. A face frame past the audio's end would be released by heard_time.
  while (!utts_.empty()) {
    Utt& front = utts_.front();
    const bool faces_done = front.faces.empty() || front.report.cleared;
    const bool actions_done = front.actions.empty() || front.report.cleared;
    if (!front.rendered || front.ack_pending || front.finish_pending || !faces_done || !actions_done) break;
    if (!front.report.ended && !front.report.cleared) break;  // more audio or faces may still come
    history_.push_back(front.report);
    if (history_.size() > kReportHistory) history_.pop_front();
    utts_.pop_front();
  }
}

std::vector<UtteranceReport> Player::reports() const {
  std::vector<UtteranceReport> all(history_.begin(), history_.end());
  for (const Utt& utt : utts_) all.push_back(utt.report);
  return all;
}

}  // namespace facecast
