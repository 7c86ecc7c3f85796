#pragma once
// What UnrealHeaderTool would generate: nothing the syntax check needs.
