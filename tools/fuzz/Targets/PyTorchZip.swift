import Foundation

/// libFuzzer target: the `.pth` reader (`TensorArchive.pytorch`): zip directory, data.pkl
/// unpickling and the storage/stride checks behind each tensor view.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPyTorchZip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzScratch.write(data, size)
    _ = try? TensorArchive.pytorch(url)
    return 0
}
