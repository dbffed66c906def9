import Foundation
import Tensors

/// Writes a checkpoint quantized to FP8 in Mistral's native layout, so that it loads directly
/// (`MistralCheckpoint.load`), without re-quantizing:
/// - `params.json`: the model's config plus `"quantization": {"format": "fp8_e4m3", …}`;
/// - `consolidated.safetensors`: every weight the scheme covers (`WeightKey.takesFP8`) as
///   `F8_E4M3` with its row scales beside it as `….weight_scale` (F32, (N)); the rest as stored;
/// - the tokenizer files (`tokenizer.model*`) copied.
/// Weights are quantized and written one tensor at a time (the memory is one tensor's).
///
/// Data order inside the file: 4-byte tensors, then 2-byte, then the 1-byte codes, so every
/// tensor starts at a multiple of its element size (safetensors has no padding between tensors)
/// and loads as a zero-copy view.
public enum FP8CheckpointWriter {
    /// What `params.json` says about a checkpoint this writer made (read back by `MistralCheckpoint`).
    public static let formatName = "fp8_e4m3"

    public static func write(_ checkpoint: MistralCheckpoint, to directory: URL,
                             progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws {
        let fm = FileManager.default
        let outName = directory.path
        if fm.fileExists(atPath: directory.appendingPathComponent("consolidated.safetensors").path) {
            throw CheckpointError(.unsupported, file: outName, "already holds consolidated.safetensors; choose an empty --out folder")
        }
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw CheckpointError(.io, file: outName, "cannot create the folder: \(error.localizedDescription)")
        }
        let source = FP8QuantizingSource(checkpoint)
        let keys = WeightKey.all(for: checkpoint.config)

        // Entries (name, dtype, shape) of the file, laid out by element size.
        struct Entry { var name: String; var dtype: DType; var shape: [Int]; var offset = 0 }
        var entries: [Entry] = []
        for key in keys {
            let stored = try checkpoint.tensor(key)   // a view: cheap
            let shape = key.shape(checkpoint.config)
            if key.takesFP8 || stored.dtype == .e4m3 {
                entries.append(Entry(name: key.nativeName, dtype: .e4m3, shape: shape))
                entries.append(Entry(name: key.scaleName(in: .native), dtype: .f32, shape: [shape[0]]))
            } else {
                entries.append(Entry(name: key.nativeName, dtype: stored.dtype, shape: shape))
            }
        }
        var offset = 0
        var index: [String: Int] = [:]
        for size in [4, 2, 1] {
            for i in entries.indices where entries[i].dtype.byteSize == size {
                entries[i].offset = offset
                offset += entries[i].shape.reduce(1, *) * size
                index[entries[i].name] = i
            }
        }
        var header: [String: Any] = ["__metadata__": ["format": "pt", "quantization": formatName]]
        for e in entries {
            let bytes = e.shape.reduce(1, *) * e.dtype.byteSize
            header[e.name] = ["dtype": safetensorsName(e.dtype), "shape": e.shape, "data_offsets": [e.offset, e.offset + bytes]]
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))   // pad to 8 like the reference writer
        let dataStart = 8 + json.count

        let url = directory.appendingPathComponent("consolidated.safetensors")
        guard fm.createFile(atPath: url.path, contents: nil) else {
            throw CheckpointError(.io, file: url.path, "cannot create the file")
        }
        let out = try FileHandle(forWritingTo: url)
        defer { try? out.close() }
        func put(_ bytes: UnsafeRawBufferPointer, at position: Int) throws {
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            try out.seek(toOffset: UInt64(position))
            try out.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: bytes.count, deallocator: .none))
        }
        do {
            var length = UInt64(json.count).littleEndian
            try put(UnsafeRawBufferPointer(start: &length, count: 8), at: 0)
            try json.withUnsafeBytes { try put($0, at: 8) }
            for (done, key) in keys.enumerated() {
                let t = try source.tensor(key)
                try put(t.data, at: dataStart + entries[index[key.nativeName]!].offset)
                if let scales = t.rowScales {
                    try put(UnsafeRawBufferPointer(scales), at: dataStart + entries[index[key.scaleName(in: .native)]!].offset)
                }
                progress?(done + 1, keys.count)
            }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(.io, file: url.path, "write failed: \(error.localizedDescription)")
        }

        try writeParams(checkpoint.config, to: directory.appendingPathComponent("params.json"))
        for tokenizer in tokenizerFiles(of: checkpoint) {
            let target = directory.appendingPathComponent(tokenizer.lastPathComponent)
            do {
                if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
                try fm.copyItem(at: tokenizer, to: target)
            } catch {
                throw CheckpointError(.io, file: target.path, "cannot copy the tokenizer: \(error.localizedDescription)")
            }
        }
    }

    /// `tokenizer.model*` files next to the weights (every version: the loader picks one).
    static func tokenizerFiles(of checkpoint: MistralCheckpoint) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: checkpoint.directory.path)) ?? []
        return names.filter { $0.hasPrefix("tokenizer.model") }.sorted().map { checkpoint.directory.appendingPathComponent($0) }
    }

    /// params.json as Mistral spells it (ModelConfig's own coding keys), plus the quantization
    /// marker `QuantizationMarker` reads back.
    static func writeParams(_ c: ModelConfig, to url: URL) throws {
        do {
            guard var params = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any] else {
                throw CheckpointError(.badConfig, file: url.path, "the config did not encode as a JSON object")
            }
            params[QuantizationMarker.nativeKey] = QuantizationMarker.native
            let data = try JSONSerialization.data(withJSONObject: params, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: url)
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(.io, file: url.path, "cannot write: \(error.localizedDescription)")
        }
    }

    static func safetensorsName(_ d: DType) -> String {
        switch d {
        case .bf16: return "BF16"
        case .f16: return "F16"
        case .f32: return "F32"
        case .i32: return "I32"
        case .e4m3: return "F8_E4M3"
        }
    }
}
