import Foundation
import Tensors

/// `consolidated.00.pth` as `torch.save(state_dict)` writes it: a zip of stored entries holding
/// `<archive>/data.pkl` (a pickle of `{name: _rebuild_tensor_v2(storage, offset, size, stride, …)}`
/// with storages as persistent ids) and `<archive>/data/<key>` (each storage's raw little-endian
/// bytes). Tensors become views into the mapped zip: no Python, no copy.
extension TensorArchive {
    public static func pytorch(_ url: URL) throws -> TensorArchive {
        let file = try MappedFile(url: url)
        let name = file.name
        let zip = try ZipArchive(file)
        guard let pkl = zip.entries.values.filter({ $0.name.hasSuffix("data.pkl") })
            .min(by: { $0.name.count < $1.name.count }) else {
            throw CheckpointError(.badPickle, file: name, "no data.pkl in the zip: not a torch.save file")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))   // "consolidated.00/"
        if let bo = zip.entries[prefix + "byteorder"] {
            let (o, n) = try zip.storedBytes(bo)
            let order = String(decoding: file.slice(offset: o, length: n), as: UTF8.self)
            guard order == "little" else {
                throw CheckpointError(.unsupported, file: name, "storages are \(order)-endian; only little-endian is supported")
            }
        }
        let (po, pn) = try zip.storedBytes(pkl)
        let root: PickleValue
        do { root = try unpickle(file.slice(offset: po, length: pn)) } catch let e as PickleError {
            throw CheckpointError(.badPickle, file: name, "\(pkl.name): \(e.message)")
        }
        guard case .dict(let dict) = root else {
            throw CheckpointError(.badPickle, file: name, "\(pkl.name) does not hold a dict of tensors (a state dict)")
        }
        var tensors: [String: StoredTensor] = [:]
        for (k, v) in dict.items {
            guard case .string(let tensorName) = k else {
                throw CheckpointError(.badPickle, file: name, "state dict key is not a string")
            }
            guard case .tensor(let rec) = v else {
                throw CheckpointError(.badPickle, file: name, tensor: tensorName, "value is not a tensor")
            }
            tensors[tensorName] = try storedTensor(tensorName, rec, zip: zip, prefix: prefix)
        }
        return TensorArchive(tensors: tensors, files: [url])
    }

    private static func storedTensor(_ tensor: String, _ rec: PickleTensorRecord, zip: ZipArchive,
                                     prefix: String) throws -> StoredTensor {
        let file = zip.file
        let name = file.name
        let dtypeName = "torch.\(rec.storage.className)"
        let dtype: DType? = switch rec.storage.className {
        case "BFloat16Storage": .bf16
        case "HalfStorage": .f16
        case "FloatStorage": .f32
        default: nil
        }
        guard let count = checkedElementCount(rec.shape) else {
            throw CheckpointError(.badPickle, file: name, tensor: tensor, "invalid shape \(rec.shape)")
        }
        guard rec.stride.count == rec.shape.count else {
            throw CheckpointError(.badPickle, file: name, tensor: tensor, "stride \(rec.stride) does not match shape \(rec.shape)")
        }
        // Row-major strides; dimensions of size 1 may carry any stride.
        var expected = 1
        for d in stride(from: rec.shape.count - 1, through: 0, by: -1) {
            if rec.shape[d] != 1, rec.stride[d] != expected {
                throw CheckpointError(.nonContiguous, file: name, tensor: tensor,
                                      "strides \(rec.stride) for shape \(rec.shape) are not contiguous row-major; save tensor.contiguous()")
            }
            expected &*= rec.shape[d]
        }
        guard let entry = zip.entries[prefix + "data/" + rec.storage.key] else {
            throw CheckpointError(.truncated, file: name, tensor: tensor, "storage '\(prefix)data/\(rec.storage.key)' is missing from the zip")
        }
        let (offset, size) = try zip.storedBytes(entry)
        guard let dtype else {
            return StoredTensor(name: tensor, dtypeName: dtypeName, dtype: nil, shape: rec.shape, file: file,
                                offset: offset, byteCount: 0)
        }
        let (need, o) = rec.storage.numel.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o, size >= need else {
            throw CheckpointError(.truncated, file: name, tensor: tensor,
                                  "storage holds \(size) bytes but declares \(rec.storage.numel) \(dtypeName) elements")
        }
        let (end, o2) = rec.offset.addingReportingOverflow(count)
        guard !o2, end <= rec.storage.numel else {
            throw CheckpointError(.badPickle, file: name, tensor: tensor,
                                  "elements \(rec.offset)..<\(rec.offset + count) lie outside its storage of \(rec.storage.numel)")
        }
        return StoredTensor(name: tensor, dtypeName: dtypeName, dtype: dtype, shape: rec.shape, file: file,
                            offset: offset + rec.offset * dtype.byteSize, byteCount: count * dtype.byteSize)
    }
}
