// Facecast reference client: JSON (see json.h). Helper names are unique across the client's .cpp files so
// that a unity build (Unreal's default) can concatenate them.
#include "facecast/json.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace facecast {

Json Json::boolean(bool value) {
  Json j;
  j.kind_ = Kind::Bool;
  j.bool_ = value;
  return j;
}

Json Json::number(double value) {
  Json j;
  j.kind_ = Kind::Number;
  j.num_ = value;
  return j;
}

Json Json::integer(std::int64_t value) {
  Json j;
  j.kind_ = Kind::Number;
  j.is_int_ = true;
  j.int_ = value;
  j.num_ = static_cast<double>(value);
  return j;
}

Json Json::string(std::string value) {
  Json j;
  j.kind_ = Kind::String;
  j.str_ = std::move(value);
  return j;
}

Json Json::array() {
  Json j;
  j.kind_ = Kind::Array;
  return j;
}

Json Json::object() {
  Json j;
  j.kind_ = Kind::Object;
  return j;
}

const Json* Json::find(std::string_view key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (const Member& member : members_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

Json& Json::set(std::string key, Json value) {
  kind_ = Kind::Object;
  for (Member& member : members_) {
    if (member.first == key) {
      member.second = std::move(value);
      return *this;
    }
  }
  members_.emplace_back(std::move(key), std::move(value));
  return *this;
}

Json& Json::push(Json value) {
  kind_ = Kind::Array;
  items_.push_back(std::move(value));
  return *this;
}

void json_quote(std::string_view text, std::string& out) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (byte < 0x20) {  // as Python's json.dumps: DEL and non-ASCII stay as they are
          out += "\\u00";
          out.push_back(kHex[byte >> 4]);
          out.push_back(kHex[byte & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void json_number(double value, std::string& out) {
  if (!std::isfinite(value)) {
    out.push_back('0');
    return;
  }
  if (std::fabs(value) < 9.0e15 && value == std::floor(value)) {
    out += std::to_string(static_cast<long long>(value));
    return;
  }
  // Fixed point with 6 decimals, written by hand (printf would follow the C locale's decimal point).
  const bool negative = value < 0;
  const double magnitude = std::fabs(value);
  if (magnitude >= 9.0e12) {  // beyond what 6 decimals can hold exactly: whole units are plenty
    if (negative) out.push_back('-');
    out += std::to_string(static_cast<long long>(std::llround(magnitude)));
    return;
  }
  const long long micros = std::llround(magnitude * 1e6);
  const long long whole = micros / 1000000;
  long long frac = micros % 1000000;
  if (negative && micros != 0) out.push_back('-');
  out += std::to_string(whole);
  if (frac != 0) {
    char digits[7] = {'0', '0', '0', '0', '0', '0', '\0'};
    for (int i = 5; i >= 0; --i) {
      digits[i] = static_cast<char>('0' + frac % 10);
      frac /= 10;
    }
    int last = 5;
    while (last > 0 && digits[last] == '0') --last;
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(last + 1));
  }
}

void Json::dump_to(std::string& out) const {
  switch (kind_) {
    case Kind::Null: out += "null"; break;
    case Kind::Bool: out += bool_ ? "true" : "false"; break;
    case Kind::Number:
      if (!str_.empty()) {
        out += str_;  // a parsed number that is not an int64: written back exactly as it was read
      } else if (is_int_) {
        out += std::to_string(static_cast<long long>(int_));
      } else {
        json_number(num_, out);
      }
      break;
    case Kind::String: json_quote(str_, out); break;
    case Kind::Array: {
      out.push_back('[');
      bool first = true;
      for (const Json& item : items_) {
        if (!first) out.push_back(',');
        first = false;
        item.dump_to(out);
      }
      out.push_back(']');
      break;
    }
    case Kind::Object: {
      out.push_back('{');
      bool first = true;
      for (const Member& member : members_) {
        if (!first) out.push_back(',');
        first = false;
        json_quote(member.first, out);
        out.push_back(':');
        member.second.dump_to(out);
      }
      out.push_back('}');
      break;
    }
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out);
  return out;
}

// -- parser -----------------------------------------------------------------------------------------

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  bool document(Json& out) {
    skip_space();
    if (!value(out, 0)) return false;
    skip_space();
    if (pos_ != text_.size()) return fail("trailing characters after the JSON value");
    return true;
  }

  const std::string& error() const { return error_; }

 private:
  static constexpr int kMaxDepth = 64;
  std::string_view text_;
  std::size_t pos_ = 0;
  std::string error_;

  bool fail(const char* why) {
    if (error_.empty()) error_ = std::string(why) + " at byte " + std::to_string(pos_);
    return false;
  }

  void skip_space() {
    while (pos_ < text_.size()) {
      const char ch = text_[pos_];
      if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
      ++pos_;
    }
  }

  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (text_.substr(pos_, n) != word) return fail("invalid literal");
    pos_ += n;
    return true;
  }

  bool value(Json& out, int depth) {
    if (depth >= kMaxDepth) return fail("JSON nested too deeply");
    if (pos_ >= text_.size()) return fail("unexpected end of JSON");
    const char ch = text_[pos_];
    if (ch == '{') return object(out, depth);
    if (ch == '[') return array(out, depth);
    if (ch == '"') {
      out.kind_ = Json::Kind::String;
      return string_literal(out.str_);
    }
    if (ch == 't') {
      out = Json::boolean(true);
      return literal("true");
    }
    if (ch == 'f') {
      out = Json::boolean(false);
      return literal("false");
    }
    if (ch == 'n') {
      out = Json();
      return literal("null");
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) return number(out);
    return fail("unexpected character");
  }

  bool object(Json& out, int depth) {
    out = Json::object();
    ++pos_;  // {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '"') return fail("expected a member name");
      std::string key;
      if (!string_literal(key)) return false;
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      skip_space();
      Json item;
      if (!value(item, depth + 1)) return false;
      out.set(std::move(key), std::move(item));  // a repeated name keeps the last value, like Python
      skip_space();
      if (pos_ >= text_.size()) return fail("unterminated object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  bool array(Json& out, int depth) {
    out = Json::array();
    ++pos_;  // [
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_space();
      Json item;
      if (!value(item, depth + 1)) return false;
      out.push(std::move(item));
      skip_space();
      if (pos_ >= text_.size()) return fail("unterminated array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  static void append_utf8(std::uint32_t code, std::string& out) {
    if (code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (code >> 6)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (code >> 12)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (code >> 18)));
      out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  bool hex4(std::uint32_t& code) {
    if (pos_ + 4 > text_.size()) return fail("truncated \\u escape");
    code = 0;
    for (int i = 0; i < 4; ++i) {
      const char ch = text_[pos_++];
      std::uint32_t digit = 0;
      if (ch >= '0' && ch <= '9') {
        digit = static_cast<std::uint32_t>(ch - '0');
      } else if (ch >= 'a' && ch <= 'f') {
        digit = static_cast<std::uint32_t>(ch - 'a' + 10);
      } else if (ch >= 'A' && ch <= 'F') {
        digit = static_cast<std::uint32_t>(ch - 'A' + 10);
      } else {
        return fail("bad \\u escape");
      }
      code = (code << 4) | digit;
    }
    return true;
  }

  bool string_literal(std::string& out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) return fail("unterminated string");
      const char ch = text_[pos_++];
      if (ch == '"') return true;
      if (static_cast<unsigned char>(ch) < 0x20) return fail("control character in string");
      if (ch != '\\') {
        out.push_back(ch);
        continue;
      }
      if (pos_ >= text_.size()) return fail("unterminated escape");
      const char esc = text_[pos_++];
      switch (esc) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          std::uint32_t code = 0;
          if (!hex4(code)) return false;
          if (code >= 0xd800 && code < 0xdc00) {  // high surrogate: a low one must follow
            std::uint32_t low = 0;
            if (pos_ + 6 <= text_.size() && text_[pos_] == '\\' && text_[pos_ + 1] == 'u') {
              const std::size_t mark = pos_;
              pos_ += 2;
              if (!hex4(low)) return false;
              if (low >= 0xdc00 && low < 0xe000) {
                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
              } else {
                pos_ = mark;  // not a pair: the next escape is read on its own
                code = 0xfffd;
              }
            } else {
              code = 0xfffd;
            }
          } else if (code >= 0xdc00 && code < 0xe000) {
            code = 0xfffd;  // lone low surrogate
          }
          append_utf8(code, out);
          break;
        }
        default: return fail("bad escape");
      }
    }
  }

  bool number(Json& out) {
    const std::size_t start = pos_;
    bool negative = false;
    if (text_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') return fail("bad number");
    if (text_[pos_] == '0' && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' && text_[pos_ + 1] <= '9') {
      return fail("leading zero in number");
    }
    // Mantissa digits as an integer (up to 19 significant digits), decimal exponent alongside.
    std::uint64_t mantissa = 0;
    int exponent = 0;
    int digits = 0;
    bool overflow = false;
    auto take_digit = [&](char d, bool fraction) {
      if (digits < 19) {
        mantissa = mantissa * 10 + static_cast<std::uint64_t>(d - '0');
        if (mantissa != 0) ++digits;
        if (fraction) --exponent;
      } else {
        overflow = true;
        if (!fraction) ++exponent;
      }
    };
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') take_digit(text_[pos_++], false);
    bool is_int = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      is_int = false;
      ++pos_;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') return fail("bad fraction");
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') take_digit(text_[pos_++], true);
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      is_int = false;
      ++pos_;
      bool exp_negative = false;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) exp_negative = text_[pos_++] == '-';
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') return fail("bad exponent");
      int exp_value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        if (exp_value < 100000) exp_value = exp_value * 10 + (text_[pos_] - '0');
        ++pos_;
      }
      exponent += exp_negative ? -exp_value : exp_value;
    }
    const std::uint64_t int_limit = negative ? (std::uint64_t{1} << 63) : (std::uint64_t{1} << 63) - 1;
    if (is_int && !overflow && mantissa <= int_limit) {
      const std::int64_t value =
          negative ? static_cast<std::int64_t>(0 - mantissa) : static_cast<std::int64_t>(mantissa);
      out = Json::integer(value);
      return true;
    }
    double value = static_cast<double>(mantissa);
    if (exponent != 0) value *= std::pow(10.0, static_cast<double>(exponent));
    if (!std::isfinite(value)) {
      // 1.7976931348623157e308 (the largest double) can round up to infinity here: only a number of 10^309 or
      // more is really out of range.
      if (digits + exponent > 309) {
        pos_ = start;
        return fail("number out of range");
      }
      value = 1.7976931348623157e308;
    }
    out = Json::number(negative ? -value : value);
    out.str_.assign(text_.substr(start, pos_ - start));  // kept: dump() writes the number exactly as it came
    return true;
  }
};

bool Json::parse(std::string_view text, Json& out, std::string* error) {
  JsonReader reader(text);
  Json result;
  if (!reader.document(result)) {
    out = Json();
    if (error != nullptr) *error = reader.error();
    return false;
  }
  out = std::move(result);
  return true;
}

}  // namespace facecast
