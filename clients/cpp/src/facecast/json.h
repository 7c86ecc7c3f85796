// Facecast reference client: a small JSON value, parser and writer (no exceptions, no RTTI, no locale).
//
// Just enough JSON for the engine protocol's text frames (docs/protocol.md): objects keep their member
// order (so encoded messages match the server's byte for byte), numbers remember whether they were written
// as integers (sample counts and utterance ids stay exact up to 2^63), and a parsed number that is not an
// int64 (1.5, 1e-07, 2^64) keeps its text, so that JSON passed through (an action's arguments, its result)
// is written back exactly; strings are UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace facecast {

class Json {
 public:
  enum class Kind : std::uint8_t { Null, Bool, Number, String, Array, Object };
  using Member = std::pair<std::string, Json>;

  Json() = default;  // null
  static Json boolean(bool value);
  static Json number(double value);
  static Json integer(std::int64_t value);
  static Json string(std::string value);
  static Json array();
  static Json object();

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  /// A number written without fraction or exponent that fits in int64.
  bool is_integer() const { return kind_ == Kind::Number && is_int_; }

  bool as_bool() const { return bool_; }
  double as_double() const { return is_int_ ? static_cast<double>(int_) : num_; }
  std::int64_t as_int() const { return int_; }
  const std::string& as_string() const { return str_; }
  const std::vector<Json>& items() const { return items_; }
  const std::vector<Member>& members() const { return members_; }

  /// The member named `key` of an object, or nullptr (also when this is not an object).
  const Json* find(std::string_view key) const;
  /// Sets member `key` of an object (replacing an existing one, else appending); returns *this.
  Json& set(std::string key, Json value);
  /// Appends to an array; returns *this.
  Json& push(Json value);

  /// Compact JSON text (no spaces), UTF-8 passed through, control characters escaped. Numbers made with
  /// number() have up to 6 decimals (json_number); parsed ones are written as they were read.
  std::string dump() const;
  void dump_to(std::string& out) const;

  /// Parses `text` (one JSON value, surrounding whitespace allowed). On failure returns false, leaves `out`
  /// null and, when `error` is given, says why. Nesting is limited to 64 levels; NaN/Infinity are refused
  /// (they are not JSON); a lone surrogate escape becomes U+FFFD.
  static bool parse(std::string_view text, Json& out, std::string* error = nullptr);

 private:
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  bool is_int_ = false;
  std::int64_t int_ = 0;
  double num_ = 0.0;
  std::string str_;
  std::vector<Json> items_;
  std::vector<Member> members_;

  friend class JsonReader;
};

/// Appends `text` to `out` as a JSON string literal (with quotes).
void json_quote(std::string_view text, std::string& out);
/// Appends `value` to `out` without locale: integers exactly, others with up to 6 decimals (trailing zeros
/// trimmed); NaN and infinities are written as 0 (JSON has no such numbers).
void json_number(double value, std::string& out);

}  // namespace facecast
