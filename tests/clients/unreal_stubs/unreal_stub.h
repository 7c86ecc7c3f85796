// Declarations of just the Unreal Engine API that docs/unreal.md's C++ uses, with the signatures of the
// engine's sources (5.4-5.6; see the guide's version table). tests/clients compiles the guide's component
// against them and the real reference client headers: a check that the guide's code is well-formed and
// calls the client as it is, not a substitute for building inside Unreal. Nothing here is linked or run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// -- macros -------------------------------------------------------------------------------------------------
#define UCLASS(...)
#define UPROPERTY(...)
#define UFUNCTION(...)
#define GENERATED_BODY() \
 public:                 \
  using Super = UActorComponent;  // (UHT's Super; every class in the guide derives from UActorComponent)
#define TEXT(x) L##x
#define DEFINE_LOG_CATEGORY_STATIC(Name, Default, Compiled) [[maybe_unused]] static int Name = 0
#define UE_LOG(Category, Verbosity, Format, ...) UnrealStubLog(Format __VA_OPT__(, ) __VA_ARGS__)
#define INDEFINITELY_LOOPING_DURATION 10000.0f
#define UTF8_TO_TCHAR(str) UnrealStubUtf8ToTchar(str)
#define DECLARE_DYNAMIC_MULTICAST_DELEGATE_ThreeParams(Name, T1, P1, T2, P2, T3, P3) \
  class Name : public UnrealStubDynamicMulticast<T1, T2, T3> {}
// Unreal's own macros that the reference client must not collide with (it is compiled with them defined).
#define check(expr) ((void)(expr))
#define verify(expr) ((void)(expr))
#define ensure(expr) (expr)
#define PI (3.1415926535897932f)

// -- basic types ----------------------------------------------------------------------------------------------
using int8 = std::int8_t;
using uint8 = std::uint8_t;
using int16 = std::int16_t;
using uint16 = std::uint16_t;
using int32 = std::int32_t;
using uint32 = std::uint32_t;
using int64 = std::int64_t;
using uint64 = std::uint64_t;
using SIZE_T = std::size_t;
using TCHAR = wchar_t;
using ANSICHAR = char;
enum class UnrealStubUtf8Char : unsigned char {};  // FTCHARToUTF8::Get() gives ANSICHAR or UTF8CHAR by version

template <typename Format, typename... Args>
void UnrealStubLog(const Format&, const Args&...) {}

// A dynamic multicast delegate (UPROPERTY(BlueprintAssignable)): what C++ calls on it.
template <typename... Params>
class UnrealStubDynamicMulticast {
 public:
  void Broadcast(Params... Values) const;
  bool IsBound() const;
  void Clear();
};
const TCHAR* UnrealStubUtf8ToTchar(const char* Utf8);

template <typename T>
std::remove_reference_t<T>&& MoveTemp(T&& Value) {
  static_assert(std::is_lvalue_reference_v<T>, "MoveTemp called on an rvalue");
  static_assert(!std::is_const_v<std::remove_reference_t<T>>, "MoveTemp called on a const object");
  return static_cast<std::remove_reference_t<T>&&>(Value);
}

class FString {
 public:
  FString() = default;
  FString(const TCHAR* Text);
  bool IsEmpty() const;
  int32 Len() const;
  const TCHAR* operator*() const;
  friend FString operator+(const TCHAR* Lhs, const FString& Rhs);
  friend FString operator+(const FString& Lhs, const FString& Rhs);
};

class FName {
 public:
  FName() = default;
};

class FTCHARToUTF8 {
 public:
  explicit FTCHARToUTF8(const TCHAR* Text);
  const UnrealStubUtf8Char* Get() const;
  int32 Length() const;
};

template <typename T>
class TArray {
 public:
  using ElementType = T;
  using SizeType = int32;
  TArray() = default;
  void SetNumUninitialized(SizeType Count);
  T* GetData();
  const T* GetData() const;
  SizeType Num() const;
  void Append(const T* Ptr, SizeType Count);
  void Reset();
};

template <typename K, typename V>
class TMap {
 public:
  void Add(const K& Key, const V& Value);
};

template <typename T>
class TSharedRef {
 public:
  T* operator->() const;
  T& Get() const;
};

template <typename T>
class TSharedPtr {
 public:
  TSharedPtr() = default;
  TSharedPtr(const TSharedRef<T>& Ref);
  T* operator->() const;
  explicit operator bool() const;
  bool IsValid() const;
  TSharedRef<T> ToSharedRef() const;
  void Reset();
};

template <typename T>
class TUniquePtr {
 public:
  TUniquePtr() = default;
  explicit TUniquePtr(T* Ptr) : Ptr_(Ptr) {}
  TUniquePtr(TUniquePtr&&) = default;
  TUniquePtr& operator=(TUniquePtr&&) = default;
  T* operator->() const { return Ptr_.get(); }
  T& operator*() const { return *Ptr_; }
  explicit operator bool() const { return Ptr_ != nullptr; }
  void Reset() { Ptr_.reset(); }

 private:
  std::unique_ptr<T> Ptr_;
};

template <typename T, typename... Args>
TUniquePtr<T> MakeUnique(Args&&... In) {
  return TUniquePtr<T>(new T(std::forward<Args>(In)...));
}

template <typename T>
class TObjectPtr {
 public:
  TObjectPtr() = default;
  TObjectPtr(T* Ptr) : Ptr_(Ptr) {}
  T* operator->() const { return Ptr_; }
  operator T*() const { return Ptr_; }
  explicit operator bool() const { return Ptr_ != nullptr; }

 private:
  T* Ptr_ = nullptr;
};

struct FMath {
  static int32 CeilToInt(float Value);
};

struct FPlatformTime {
  static double Seconds();
};

class FCriticalSection {};

class FScopeLock {
 public:
  explicit FScopeLock(FCriticalSection* Section);
};

// -- objects and components -----------------------------------------------------------------------------------
class UObject {
 public:
  virtual ~UObject() = default;
};

template <typename T>
T* NewObject(UObject* Outer);

enum ELevelTick { LEVELTICK_TimeOnly, LEVELTICK_ViewportsOnly, LEVELTICK_All, LEVELTICK_PauseTick };
namespace EEndPlayReason {
enum Type { Destroyed, LevelTransition, EndPlayInEditor, RemovedFromWorld, Quit };
}
struct FActorComponentTickFunction {
  bool bCanEverTick = false;
};

class AActor;
class UActorComponent : public UObject {
 public:
  FActorComponentTickFunction PrimaryComponentTick;
  bool bAutoActivate = false;
  AActor* GetOwner() const;
  void RegisterComponent();
  virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction);

 protected:
  virtual void BeginPlay();
  virtual void EndPlay(const EEndPlayReason::Type EndPlayReason);
};

class USceneComponent : public UActorComponent {
 public:
  void SetupAttachment(USceneComponent* InParent, FName InSocketName = FName());
};

class AActor : public UObject {
 public:
  USceneComponent* GetRootComponent() const;
};

// -- sound ------------------------------------------------------------------------------------------------------
class USoundBase : public UObject {
 public:
  float Duration = 0.0f;
};

class USoundWave : public USoundBase {
 public:
  int32 NumChannels = 0;
  uint8 bLooping : 1;
  void SetSampleRate(uint32 InSampleRate);
};

class USoundWaveProcedural : public USoundWave {
 public:
  void QueueAudio(const uint8* AudioData, const int32 BufferSize);
  void ResetAudio();
  int32 GetAvailableAudioByteCount();
};

class UAudioComponent : public USceneComponent {
 public:
  void SetSound(USoundBase* NewSound);
  void Play(float StartTime = 0.0f);
  void Stop();
};

namespace Audio {
enum class EPCMAudioEncoding : uint8 { UNKNOWN, PCM_8, PCM_16, PCM_24, PCM_24_IN_32, PCM_32, FLOATING_POINT_32, FLOATING_POINT_64 };
struct FAudioCaptureDeviceParams {
  bool bUseHardwareAEC = false;
  int32 DeviceIndex = -1;
  int32 NumInputChannels = -1;
  int32 SampleRate = -1;
  EPCMAudioEncoding PCMAudioEncoding = EPCMAudioEncoding::FLOATING_POINT_32;
};
using FOnAudioCaptureFunction =
    std::function<void(const void* InAudio, int32 NumFrames, int32 NumChannels, int32 SampleRate, double StreamTime,
                       bool bOverFlow)>;
class FAudioCapture {
 public:
  FAudioCapture();
  ~FAudioCapture();
  bool OpenAudioCaptureStream(const FAudioCaptureDeviceParams& InParams, FOnAudioCaptureFunction OnCapture,
                              uint32 NumFramesDesired);
  bool CloseStream();
  bool StartStream();
  bool StopStream();
  bool AbortStream();
  bool IsStreamOpen() const;
  bool IsCapturing() const;
};
}  // namespace Audio

// -- WebSockets -------------------------------------------------------------------------------------------------
template <typename... Args>
class UnrealStubEvent {
 public:
  template <typename U>
  void AddUObject(U* Object, void (U::*Method)(Args...));
  void RemoveAll(const void* Object);
};

class IWebSocket {
 public:
  virtual ~IWebSocket() = default;
  virtual void Connect() = 0;
  virtual void Close(int32 Code = 1000, const FString& Reason = FString()) = 0;
  virtual bool IsConnected() = 0;
  virtual void Send(const FString& Data) = 0;
  virtual void Send(const void* Data, SIZE_T Size, bool bIsBinary = false) = 0;
  virtual void SetTextMessageMemoryLimit(uint64 TextMessageMemoryLimit) = 0;
  using FWebSocketConnectedEvent = UnrealStubEvent<>;
  using FWebSocketConnectionErrorEvent = UnrealStubEvent<const FString&>;
  using FWebSocketClosedEvent = UnrealStubEvent<int32, const FString&, bool>;
  using FWebSocketMessageEvent = UnrealStubEvent<const FString&>;
  using FWebSocketBinaryMessageEvent = UnrealStubEvent<const void*, SIZE_T, bool>;
  using FWebSocketRawMessageEvent = UnrealStubEvent<const void*, SIZE_T, SIZE_T>;
  virtual FWebSocketConnectedEvent& OnConnected() = 0;
  virtual FWebSocketConnectionErrorEvent& OnConnectionError() = 0;
  virtual FWebSocketClosedEvent& OnClosed() = 0;
  virtual FWebSocketMessageEvent& OnMessage() = 0;
  virtual FWebSocketBinaryMessageEvent& OnBinaryMessage() = 0;
  virtual FWebSocketRawMessageEvent& OnRawMessage() = 0;
};

class FWebSocketsModule {
 public:
  static FWebSocketsModule& Get();
  TSharedRef<IWebSocket> CreateWebSocket(const FString& Url, const TArray<FString>& Protocols,
                                         const TMap<FString, FString>& UpgradeHeaders = {});
  TSharedRef<IWebSocket> CreateWebSocket(const FString& Url, const FString& Protocol = FString(),
                                         const TMap<FString, FString>& UpgradeHeaders = {});
};
