import Foundation
import Tensors

/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// `{name: {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the first byte after the header.
extension TensorArchive {
    /// The reference implementation refuses headers over 100 MB; so do we (a corrupt length must
    /// not make us parse gigabytes of tensor data as JSON).
    static let maxSafetensorsHeader = 100_000_000

    /// Maps `url` and validates every entry: dtype known or recorded as unsupported, offsets
    /// inside the file, byte count equal to shape × dtype size.
    public static func safetensors(_ url: URL) throws -> TensorArchive {
        let file = try MappedFile(url: url)
        return TensorArchive(tensors: try readSafetensorsHeader(file), files: [url])
    }

    /// A Hugging Face sharded checkpoint: `model.safetensors.index.json` maps each tensor name to
    /// the shard file that holds it.
    public static func shardedSafetensors(index url: URL) throws -> TensorArchive {
        let name = url.lastPathComponent
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError(.fileNotFound, file: name, "cannot read: \(error.localizedDescription)")
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError(.badJSON, file: name, "not a JSON object")
        }
        guard let map = root["weight_map"] as? [String: Any] else {
            throw CheckpointError(.badJSON, file: name, "missing or malformed \"weight_map\"")
        }
        var shardNames: [String: [String]] = [:]   // shard file -> names the index assigns to it
        for (tensor, value) in map {
            guard let shard = value as? String, !shard.contains("/"), !shard.isEmpty else {
                throw CheckpointError(.badJSON, file: name, tensor: tensor, "weight_map value must be a file name in the same folder")
            }
            shardNames[shard, default: []].append(tensor)
        }
        let dir = url.deletingLastPathComponent()
        var all: [String: StoredTensor] = [:]
        var files: [URL] = []
        for shard in shardNames.keys.sorted() {
            let shardURL = dir.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw CheckpointError(.fileNotFound, file: shard, "shard listed in \(name) is missing")
            }
            let file = try MappedFile(url: shardURL)
            let entries = try readSafetensorsHeader(file)
            for tensor in shardNames[shard] ?? [] {
                guard let t = entries[tensor] else {
                    throw CheckpointError(.missingTensor, file: shard, tensor: tensor, "\(name) places this tensor here but the shard lacks it")
                }
                all[tensor] = t
            }
            files.append(shardURL)
        }
        return TensorArchive(tensors: all, files: files)
    }
}

/// Parses and validates a mapped safetensors file's header.
func readSafetensorsHeader(_ file: MappedFile) throws -> [String: StoredTensor] {
    let name = file.name
    guard file.count >= 8 else {
        throw CheckpointError(.truncated, file: name, "file is \(file.count) bytes, shorter than the 8-byte header length")
    }
    let n64 = file.load(0, as: UInt64.self)
    guard n64 <= UInt64(TensorArchive.maxSafetensorsHeader) else {
        throw CheckpointError(.badHeader, file: name, "header length \(n64) is implausible (limit 100 MB)")
    }
    let n = Int(n64)
    guard n >= 2 else { throw CheckpointError(.badHeader, file: name, "header length \(n) is too small") }
    guard 8 + n <= file.count else {
        throw CheckpointError(.truncated, file: name, "header of \(n) bytes runs past the end of the \(file.count)-byte file")
    }
    let headerData = Data(file.slice(offset: 8, length: n))
    let parsed: Any
    do { parsed = try JSONSerialization.jsonObject(with: headerData) } catch {
        throw CheckpointError(.badJSON, file: name, "header is not valid JSON")
    }
    guard let header = parsed as? [String: Any] else {
        throw CheckpointError(.badJSON, file: name, "header is not a JSON object")
    }
    let dataStart = 8 + n
    let dataLength = file.count - dataStart
    var out: [String: StoredTensor] = [:]
    for (tensor, value) in header where tensor != "__metadata__" {
        guard let info = value as? [String: Any],
              let dtypeName = info["dtype"] as? String,
              let shape = intArray(info["shape"]),
              let offsets = intArray(info["data_offsets"]), offsets.count == 2
        else {
            throw CheckpointError(.badHeader, file: name, tensor: tensor, "entry needs dtype, shape and two data_offsets")
        }
        let dtype = safetensorsDType(dtypeName)
        let begin = offsets[0], end = offsets[1]
        guard begin >= 0, begin <= end else {
            throw CheckpointError(.badHeader, file: name, tensor: tensor, "data_offsets [\(begin), \(end)] are not an ascending range")
        }
        guard end <= dataLength else {
            throw CheckpointError(.truncated, file: name, tensor: tensor,
                                  "data ends at byte \(end) but the file holds only \(dataLength) data bytes")
        }
        guard let count = checkedElementCount(shape) else {
            throw CheckpointError(.badHeader, file: name, tensor: tensor, "shape \(shape) is invalid")
        }
        if let dtype {
            let (bytes, o) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !o, bytes == end - begin else {
                throw CheckpointError(.badHeader, file: name, tensor: tensor,
                                      "shape \(shape) of \(dtypeName) needs \(count * dtype.byteSize) bytes but data_offsets span \(end - begin)")
            }
        }
        out[tensor] = StoredTensor(name: tensor, dtypeName: dtypeName, dtype: dtype, shape: shape, file: file,
                                   offset: dataStart + begin, byteCount: end - begin)
    }
    return out
}

/// safetensors dtype names we load; anything else is kept as "unsupported" until used.
private func safetensorsDType(_ s: String) -> DType? {
    switch s {
    case "BF16": return .bf16
    case "F16": return .f16
    case "F32": return .f32
    case "F8_E4M3": return .e4m3
    default: return nil
    }
}

/// A JSON array of non-negative integers (JSONSerialization gives NSNumber; fractions and
/// negative numbers are rejected).
func intArray(_ v: Any?) -> [Int]? {
    guard let arr = v as? [Any] else { return nil }
    var out: [Int] = []
    out.reserveCapacity(arr.count)
    for x in arr {
        guard let num = x as? NSNumber else { return nil }
        let d = num.doubleValue
        guard d >= 0, d == d.rounded(), d < 9.0e18 else { return nil }
        out.append(num.intValue)
    }
    return out
}
