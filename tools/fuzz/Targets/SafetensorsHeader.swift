import Foundation

/// libFuzzer target: the safetensors header reader (`TensorArchive.safetensors`), the entry point
/// every `.safetensors` checkpoint goes through. A thrown `CheckpointError` is the correct answer
/// to bad input; a trap, ASan report or leak is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensorsHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzScratch.write(data, size)
    if let archive = try? TensorArchive.safetensors(url) {
        // Touch every validated entry's bytes: the header check promised they lie inside the file.
        for t in archive.tensors.values {
            _ = t.byteCount
        }
    }
    return 0
}
