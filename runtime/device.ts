/**
 * WebGPU device acquisition. Prefers a hardware adapter; falls back to a software one (lavapipe)
 * and says so; when there is none, the error says what to install. Limits are raised to what the
 * adapter grants for the few limits attention kernels care about, and reported as plain data so
 * the compiler can plan without touching the device.
 */
import { DeviceError } from "../compiler/errors.ts";

/** What the compiler needs to know about a device, as plain data. */
export interface DeviceFacts {
  description: string;
  vendor: string;
  architecture: string;
  isFallback: boolean;
  features: string[];
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

/** An acquired device with its facts. */
export interface AcquiredDevice {
  device: GPUDevice;
  facts: DeviceFacts;
}

const REMEDY =
  "install a Vulkan driver: on Debian/Ubuntu `apt-get install -y mesa-vulkan-drivers " +
  "libvulkan1` gives the software adapter lavapipe (slow but exact); on a GPU machine install " +
  "the vendor's Vulkan driver. Deno loads libvulkan.so.1 at run time and finds no adapter without it";

const LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

let cached: Promise<AcquiredDevice> | undefined;

/** The process-wide device (acquired once). Throws `DeviceError` with a remedy. */
export function getDevice(): Promise<AcquiredDevice> {
  cached ??= acquireDevice().then((d) => {
    // Release the device while the runtime is whole: left to process teardown, Mesa's lavapipe
    // sometimes aborted after a test run ("corrupted size vs. prev_size in fastbins").
    globalThis.addEventListener?.("unload", () => d.device.destroy());
    return d;
  }, (e) => {
    cached = undefined;
    throw e;
  });
  return cached;
}

/** Acquire a new device: a high-performance adapter first, then any adapter. */
export async function acquireDevice(): Promise<AcquiredDevice> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new DeviceError(
      `WebGPU is not available in this runtime; run under Deno ≥ 2.0 (${REMEDY})`,
    );
  }
  const adapter = (await gpu.requestAdapter({ powerPreference: "high-performance" })) ??
    (await gpu.requestAdapter());
  if (!adapter) throw new DeviceError(`no WebGPU adapter found; ${REMEDY}`);
  const features: GPUFeatureName[] = [];
  for (const f of ["timestamp-query", "shader-f16"] as GPUFeatureName[]) {
    if (adapter.features.has(f)) features.push(f);
  }
  const requiredLimits: Record<string, number> = {};
  for (const l of LIMITS) requiredLimits[l] = adapter.limits[l];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  } catch (e) {
    throw new DeviceError(
      `the adapter ${adapter.info.description} refused a device (${(e as Error).message}); ` +
        "try another adapter, or update the driver",
    );
  }
  const limits = Object.fromEntries(
    LIMITS.map((l) => [l, device.limits[l]]),
  ) as DeviceFacts["limits"];
  return {
    device,
    facts: {
      description: adapter.info.description || adapter.info.vendor || "unknown adapter",
      vendor: adapter.info.vendor,
      architecture: adapter.info.architecture,
      isFallback: adapter.info.isFallbackAdapter ?? false,
      features: [...device.features].map(String).sort(),
      limits,
    },
  };
}
