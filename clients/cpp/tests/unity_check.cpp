// Compile-only check that the core builds the way an Unreal module builds it: one unity translation unit
// (UBT concatenates a module's .cpp files), no exceptions, no RTTI, and with the macros Unreal's headers
// (force-included before every file) and <windows.h> define, so that no name in the client collides with them.
#define check(expr) ((void)(expr))
#define checkf(expr, ...) ((void)(expr))
#define verify(expr) ((void)(expr))
#define ensure(expr) (expr)
#define TEXT(x) L##x
#define PI (3.1415926535897932f)
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#define FORCEINLINE inline
#define CONSTEXPR constexpr
#define ABSTRACT
#define DEPRECATED(version, message)
#define ERROR 0
#define DELETE 0x00010000L
#define IN
#define OUT
#define OPTIONAL
#define interface struct
#define small char
#define near
#define far
#define SendMessage SendMessageW
#define GetMessage GetMessageW
#define PostMessage PostMessageW
#define GetObject GetObjectW
#define CreateFile CreateFileW

#include "../src/facecast/json.cpp"
#include "../src/facecast/protocol.cpp"
#include "../src/facecast/playback.cpp"
#include "../src/facecast/client.cpp"
