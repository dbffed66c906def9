import Foundation
import Tensors

/// One tensor as a weights file stores it, before it is checked against a model config: a byte
/// range of a memory-mapped file plus the dtype and shape the file declares.
struct StoredTensor: Sendable {
    let name: String
    /// The dtype as the file spells it ("BF16", "torch.LongStorage"), for error messages.
    let dtypeName: String
    /// nil when the dtype is not one we load (the error is raised only if the tensor is used).
    let dtype: DType?
    let shape: [Int]
    let file: MappedFile
    let offset: Int
    let byteCount: Int

    /// A zero-copy view into the mapping, or `.unsupportedDType`.
    func hostTensor() throws -> HostTensor {
        guard let dtype else {
            throw CheckpointError(.unsupportedDType, file: file.name, tensor: name,
                                  "unsupported dtype \(dtypeName) (supported: BF16, F16, F32, F8_E4M3)")
        }
        guard !dtype.hasRowScales else {
            // Reached only for an F8_E4M3 tensor that is not a model weight (weights go through
            // `TensorArchive.fp8Tensor`, which pairs them with their scales).
            throw CheckpointError(.unsupported, file: file.name, tensor: name, "an F8_E4M3 tensor is only read together with its weight_scale")
        }
        let view = file.slice(offset: offset, length: byteCount)
        if offset % dtype.byteSize == 0 {
            return HostTensor(dtype: dtype, shape: shape, data: view, owner: file)
        }
        // The mapping is page-aligned, so only a file that places a tensor at an odd offset gets
        // here (safetensors headers are padded to 8 bytes and torch aligns storages to 64, so real
        // checkpoints never do). Kernels may load elements with aligned loads: give them an
        // aligned copy rather than a crash.
        let copy = OwnedBytes(count: byteCount)
        if let src = view.baseAddress { copy.pointer.copyMemory(from: src, byteCount: byteCount) }
        return HostTensor(dtype: dtype, shape: shape, data: UnsafeRawBufferPointer(start: copy.pointer, count: byteCount),
                          owner: copy)
    }
}

/// Element count of `shape`, or nil on a negative dimension or overflow (a hostile header must
/// not crash us through integer overflow).
func checkedElementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}

/// A set of named tensors read from one or more weight files (safetensors, sharded safetensors,
/// or a PyTorch zip), all views into memory-mapped files.
public struct TensorArchive: Sendable {
    let tensors: [String: StoredTensor]
    /// The files the tensors live in (for messages and for `MistralCheckpoint.weightFiles`).
    public let files: [URL]

    init(tensors: [String: StoredTensor], files: [URL]) {
        self.tensors = tensors
        self.files = files
    }

    /// Every tensor name, sorted.
    public var names: [String] { tensors.keys.sorted() }

    /// The tensor's declared shape, or nil if there is none of that name.
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }

    /// A zero-copy view of the named tensor in its stored dtype.
    public func tensor(named name: String) throws -> HostTensor {
        guard let t = tensors[name] else {
            throw CheckpointError(.missingTensor, file: files.map(\.lastPathComponent).joined(separator: ", "),
                                  tensor: name, "no tensor of this name")
        }
        return try t.hostTensor()
    }

    /// The file that holds `name` (for messages).
    func fileName(of name: String) -> String {
        tensors[name]?.file.name ?? files.map(\.lastPathComponent).joined(separator: ", ")
    }
}
