#!/usr/bin/env python3
"""Compile every CUDA kernel of the CUDA backend with NVRTC, as the program does at run time.

CI has no GPU and no CUDA toolkit, but NVRTC is a plain shared library: this loads it through
ctypes from the PyPI wheels `nvidia-cuda-nvrtc` (libnvrtc) and `nvidia-cuda-runtime` (headers),
13.0 series to match the GPU machines' driver, and compiles each Sources/CUDABackend/Kernels/*.cu
for sm_90 (Hopper). Any error fails; so does any warning unless --allow-warnings is given.

It installs nothing. Set up once, e.g.:
    python3 -m venv /tmp/nvrtc && /tmp/nvrtc/bin/pip install "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-runtime==13.0.*"
    /tmp/nvrtc/bin/python tools/ci/compile_kernels.py
Environment: NVRTC_LIBRARY = path of libnvrtc.so to use instead of the wheel's.
"""
import argparse
import ctypes
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "Sources", "CUDABackend", "Kernels")


def wheel_dirs():
    """Directories of the `nvidia` namespace package (the CUDA wheels) on sys.path."""
    dirs = []
    for entry in sys.path:
        d = os.path.join(entry, "nvidia")
        if os.path.isdir(d):
            dirs.append(d)
    return dirs


def find_nvrtc():
    env = os.environ.get("NVRTC_LIBRARY")
    if env:
        return env
    for d in wheel_dirs():
        # CUDA 13 wheels: nvidia/cu13/lib; CUDA 12 wheels: nvidia/cuda_nvrtc/lib.
        for pattern in ("cu13/lib/libnvrtc.so.*", "cuda_nvrtc/lib/libnvrtc.so.*"):
            hits = sorted(p for p in glob.glob(os.path.join(d, pattern)) if "builtins" not in p and ".alt." not in p)
            if hits:
                return hits[0]
    sys.exit("compile_kernels: libnvrtc not found; install nvidia-cuda-nvrtc (13.0 series) or set NVRTC_LIBRARY")


def find_include_dirs():
    incs = []
    for d in wheel_dirs():
        for sub in ("cu13/include", "cuda_runtime/include", "cuda_nvrtc/include"):
            p = os.path.join(d, sub)
            if os.path.isfile(os.path.join(p, "cuda_runtime.h")) or os.path.isfile(os.path.join(p, "nvrtc.h")):
                incs.append(p)
    return incs


class NVRTC:
    def __init__(self, path):
        # libnvrtc dlopens libnvrtc-builtins.so.X.Y by bare name at compile time; the wheel's lib
        # folder is not on the loader path, so load it first (the loader then reuses it).
        for b in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*"))):
            if ".alt." not in b:
                ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        self.lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                                ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        self.lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        self.lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib.nvrtcGetCUBINSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        self.lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]

    def version(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def compile(self, source, name, options):
        prog = ctypes.c_void_p()
        r = self.lib.nvrtcCreateProgram(ctypes.byref(prog), source, name.encode(), 0, None, None)
        if r != 0:
            return False, "nvrtcCreateProgram: " + self.lib.nvrtcGetErrorString(r).decode(), 0
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            r = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value + 1)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace").strip()
            if r != 0:
                return False, (self.lib.nvrtcGetErrorString(r).decode() + "\n" + log).strip(), 0
            cubin = ctypes.c_size_t()
            self.lib.nvrtcGetCUBINSize(prog, ctypes.byref(cubin))
            return True, log, cubin.value
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90", help="GPU architecture (default sm_90)")
    ap.add_argument("--allow-warnings", action="store_true", help="do not fail on compiler warnings")
    args = ap.parse_args()

    lib = find_nvrtc()
    nvrtc = NVRTC(lib)
    major, minor = nvrtc.version()
    print(f"NVRTC {major}.{minor} from {lib}")
    if major != 13:
        print(f"warning: NVRTC {major}.{minor} is not the 13.x series of the GPU machines", file=sys.stderr)
    # Same options as the program (Sources/CUDABackend/KernelLibrary.swift) plus include paths:
    # the kernels include only their own headers, the wheel's headers are there in case.
    options = [f"--gpu-architecture={args.arch}", "--std=c++17", f"-I{KERNELS}"]
    options += [f"-I{p}" for p in find_include_dirs()]
    sources = sorted(glob.glob(os.path.join(KERNELS, "*.cu")))
    if not sources:
        sys.exit(f"compile_kernels: no .cu files in {KERNELS}")
    failed = 0
    for path in sources:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            ok, log, size = nvrtc.compile(f.read(), name, options)
        if ok and log and "warning" in log and not args.allow_warnings:
            ok = False
            log = "warnings are errors here (pass --allow-warnings to accept):\n" + log
        status = f"ok ({size} bytes of {args.arch} CUBIN)" if ok else "FAILED"
        print(f"{name}: {status}")
        if log:
            print("  " + log.replace("\n", "\n  "))
        failed += 0 if ok else 1
    print(f"{len(sources) - failed}/{len(sources)} kernel files compiled for {args.arch}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
