#!/usr/bin/env python3
"""A GPU workload that needs only the NVIDIA driver and python3 (no CUDA toolkit, no torch).

Loads libcuda.so.1 with ctypes, JIT-compiles a spin kernel from PTX and runs four equal phases: idle,
full load, half duty cycle, idle, while holding --mem-mib of device memory, so that utilization, memory
and power all move in a known pattern. Phase changes are printed to stderr with a wall-clock time.
"""
import argparse
import ctypes
import sys
import time

PTX = b"""
.version 6.0
.target sm_50
.address_size 64

.visible .entry spin(.param .u64 out, .param .u64 iters)
{
    .reg .pred p;
    .reg .u64 i, n, o;
    .reg .f32 x;
    ld.param.u64 o, [out];
    ld.param.u64 n, [iters];
    cvta.to.global.u64 o, o;
    mov.u64 i, 0;
    mov.f32 x, 0f3F800000;
LOOP:
    fma.rn.f32 x, x, 0f3F7FFFFF, 0f3A83126F;
    add.u64 i, i, 1;
    setp.lt.u64 p, i, n;
    @p bra LOOP;
    st.global.f32 [o], x;
    ret;
}
"""

CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=24.0)
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--mem-mib", type=int, default=4096)
    args = ap.parse_args()

    cuda = ctypes.CDLL("libcuda.so.1")

    def check(result, what):
        if result != 0:
            name = ctypes.c_char_p()
            cuda.cuGetErrorName(result, ctypes.byref(name))
            sys.exit(f"gpu_load: {what} failed: {name.value}")

    check(cuda.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(dev), args.device), "cuDeviceGet")
    ctx = ctypes.c_void_p()
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    sms = ctypes.c_int()
    check(cuda.cuDeviceGetAttribute(ctypes.byref(sms), CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
          "cuDeviceGetAttribute")

    held = ctypes.c_uint64()
    check(cuda.cuMemAlloc_v2(ctypes.byref(held), ctypes.c_size_t(max(1, args.mem_mib) << 20)), "cuMemAlloc")
    check(cuda.cuMemsetD8_v2(held, 0, ctypes.c_size_t(max(1, args.mem_mib) << 20)), "cuMemsetD8")

    module = ctypes.c_void_p()
    check(cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(PTX)), "cuModuleLoadData")
    spin = ctypes.c_void_p()
    check(cuda.cuModuleGetFunction(ctypes.byref(spin), module, b"spin"), "cuModuleGetFunction")
    cuda.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]

    out = ctypes.c_uint64(held.value)
    iters = ctypes.c_uint64(1 << 14)
    params = (ctypes.c_void_p * 2)(ctypes.cast(ctypes.byref(out), ctypes.c_void_p),
                                   ctypes.cast(ctypes.byref(iters), ctypes.c_void_p))
    grid = sms.value * 8

    def launch():
        check(cuda.cuLaunchKernel(spin, grid, 1, 1, 256, 1, 1, 0, None, params, None), "cuLaunchKernel")
        check(cuda.cuCtxSynchronize(), "cuCtxSynchronize")

    # Size one launch to about 20 ms so the duty cycle is fine-grained.
    launch()
    t = time.perf_counter()
    launch()
    took = max(time.perf_counter() - t, 1e-6)
    iters.value = max(1 << 10, int(iters.value * 0.020 / took))

    phase_s = args.seconds / 4
    for name, duty in (("idle", 0.0), ("full", 1.0), ("half", 0.5), ("idle", 0.0)):
        print(f"{time.strftime('%H:%M:%S')} phase {name} ({duty:.0%} duty) for {phase_s:.1f} s",
              file=sys.stderr, flush=True)
        end = time.monotonic() + phase_s
        while time.monotonic() < end:
            cycle_end = time.monotonic() + 0.1
            busy_end = time.monotonic() + 0.1 * duty
            while duty > 0 and time.monotonic() < busy_end:
                launch()
            time.sleep(max(0.0, cycle_end - time.monotonic()))
    print(f"{time.strftime('%H:%M:%S')} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
