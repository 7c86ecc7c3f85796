#pragma once
#include "../unreal_stub.h"
