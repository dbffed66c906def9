import Foundation
import Tensors

/// A model folder as Mistral ships it (`params.json` + `consolidated.safetensors` or
/// `consolidated.00.pth` + `tokenizer.model[.v*]`) or as transformers writes it (`config.json` +
/// `model.safetensors` or a sharded `model.safetensors.index.json`).
///
/// Loading maps the weight files and checks every tensor the config implies (present, shape,
/// one dtype, no unexpected extras) up front, so a broken download fails at start-up with the
/// file and tensor named — not in the middle of a chat. Weights stay views into the mapping in
/// their stored dtype; only HF wq/wk get an owned copy, with their rows put back into Mistral's
/// interleaved-RoPE order.
public final class MistralCheckpoint: WeightSource {
    public let directory: URL
    public let config: ModelConfig
    /// `params.json` or `config.json`.
    public let configFile: URL
    public let weightFiles: [URL]
    public let layout: CheckpointLayout
    /// The dtype every weight not stored as FP8 has (bf16 for Mistral's releases).
    public let dtype: DType
    /// `.fp8` when weights are stored as e4m3 with scales (a checkpoint `quantize` wrote, or a
    /// Hugging Face FP8 one); nil otherwise.
    public let quantization: WeightQuantization?
    /// The SentencePiece model next to the weights, or nil if the folder has none.
    public let tokenizerURL: URL?
    private let weights: [WeightKey: HostTensor]

    private init(directory: URL, config: ModelConfig, configFile: URL, weightFiles: [URL], layout: CheckpointLayout,
                 dtype: DType, quantization: WeightQuantization?, tokenizerURL: URL?, weights: [WeightKey: HostTensor]) {
        self.directory = directory
        self.config = config
        self.configFile = configFile
        self.weightFiles = weightFiles
        self.layout = layout
        self.dtype = dtype
        self.quantization = quantization
        self.tokenizerURL = tokenizerURL
        self.weights = weights
    }

    public func tensor(_ key: WeightKey) throws -> HostTensor {
        guard let t = weights[key] else {
            throw CheckpointError(.missingTensor, file: weightFiles.first?.lastPathComponent ?? directory.path,
                                  tensor: key.name(in: layout), "this model has no such weight")
        }
        return t
    }

    public static func load(directory: URL) throws -> MistralCheckpoint {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError(.fileNotFound, file: directory.path, "checkpoint directory does not exist")
        }
        let (config, configFile) = try loadConfig(directory)
        let archive = try openWeights(directory, preferNative: configFile.lastPathComponent == "params.json")
        let layout = try detectLayout(archive)
        let tieEmbeddings = configFile.lastPathComponent == "config.json" ? try hfTiesEmbeddings(configFile) : false
        let declared = try QuantizationMarker.read(configFile)

        var weights: [WeightKey: HostTensor] = [:]
        var used = Set<String>()
        var dtype: DType?
        var firstName = ""
        var fp8Weights = 0
        for key in WeightKey.all(for: config) {
            var name = key.name(in: layout)
            if key == .output, tieEmbeddings, archive.shape(of: name) == nil {
                name = WeightKey.tokEmbeddings.name(in: layout)   // tied: output = embedding matrix
            }
            guard archive.shape(of: name) != nil else {
                throw CheckpointError(.missingTensor, file: archive.files.map(\.lastPathComponent).joined(separator: ", "),
                                      tensor: name, "required by \(configFile.lastPathComponent) but not in the weights")
            }
            let file = archive.fileName(of: name)
            let expected = key.shape(config)
            guard let shape = archive.shape(of: name), shape == expected else {
                throw CheckpointError(.wrongShape, file: file, tensor: name,
                                      "shape \(archive.shape(of: name) ?? []) does not match \(expected) implied by \(configFile.lastPathComponent)")
            }
            let t: HostTensor
            if archive.dtype(of: name) == .e4m3 {
                // FP8: the weight and its scale tensor together; the float dtype check skips it.
                let scaleName = key.scaleName(in: layout)
                t = try archive.fp8Tensor(named: name, scaleName: scaleName)
                used.insert(scaleName)
                fp8Weights += 1
            } else {
                t = try archive.tensor(named: name)
                if let d = dtype, d != t.dtype {
                    throw CheckpointError(.dtypeMismatch, file: file, tensor: name,
                                          "stored as \(t.dtype) but '\(firstName)' is \(d); mixed-dtype checkpoints are not supported")
                }
                if dtype == nil { dtype = t.dtype; firstName = name }
            }
            used.insert(name)
            switch (layout, key) {
            case (.huggingFace, .wq):
                weights[key] = unpermuteRotateHalf(t, heads: config.nHeads, headDim: config.headDim)
            case (.huggingFace, .wk):
                weights[key] = unpermuteRotateHalf(t, heads: config.nKVHeads, headDim: config.headDim)
            default:
                weights[key] = t
            }
        }
        let extras = archive.names.filter { !used.contains($0) && !WeightKey.isIgnorable($0) }
        if let lora = extras.first(where: { $0.contains("lora") }) {
            throw CheckpointError(.unsupported, file: archive.fileName(of: lora), tensor: lora,
                                  "LoRA adapter tensors inside the checkpoint are not loaded; pass the adapter's own file with --lora")
        }
        if let extra = extras.first {
            throw CheckpointError(.unexpectedTensor, file: archive.fileName(of: extra), tensor: extra,
                                  "not part of the model \(configFile.lastPathComponent) describes"
                                  + (extras.count > 1 ? " (and \(extras.count - 1) more unexpected tensors)" : ""))
        }
        if declared == .fp8, fp8Weights == 0 {
            throw CheckpointError(.badConfig, file: configFile.lastPathComponent,
                                  "declares FP8 weights but no weight is stored as F8_E4M3")
        }
        return MistralCheckpoint(directory: directory, config: config, configFile: configFile, weightFiles: archive.files,
                                 layout: layout, dtype: dtype ?? .bf16, quantization: fp8Weights > 0 ? .fp8 : nil,
                                 tokenizerURL: findTokenizer(directory), weights: weights)
    }

    // MARK: - Pieces of `load`

    /// params.json (native) wins over config.json (HF) when a folder has both, as Mistral's own
    /// Hugging Face repositories do. A `lora` entry in params.json is ignored: it describes how
    /// an adapter was trained; adapter tensors themselves are rejected in `load`.
    private static func loadConfig(_ dir: URL) throws -> (ModelConfig, URL) {
        let params = dir.appendingPathComponent("params.json")
        let hf = dir.appendingPathComponent("config.json")
        let fm = FileManager.default
        if fm.fileExists(atPath: params.path) {
            let config = try decodeJSONFile(ModelConfig.self, params)
            try config.validate(file: params.lastPathComponent)
            return (config, params)
        }
        if fm.fileExists(atPath: hf.path) {
            let config = try decodeJSONFile(HFConfig.self, hf).modelConfig
            try config.validate(file: hf.lastPathComponent)
            return (config, hf)
        }
        throw CheckpointError(.fileNotFound, file: dir.path, "neither params.json nor config.json found")
    }

    private struct TieProbe: Decodable {
        var tieWordEmbeddings: Bool?
        enum CodingKeys: String, CodingKey { case tieWordEmbeddings = "tie_word_embeddings" }
    }

    private static func hfTiesEmbeddings(_ url: URL) throws -> Bool {
        try decodeJSONFile(TieProbe.self, url).tieWordEmbeddings ?? false
    }

    /// Weight files in order of preference for the folder's flavour.
    private static func openWeights(_ dir: URL, preferNative: Bool) throws -> TensorArchive {
        let fm = FileManager.default
        let native = ["consolidated.safetensors", "consolidated.00.pth"]
        let hf = ["model.safetensors", "model.safetensors.index.json"]
        for name in preferNative ? native + hf : hf + native {
            let url = dir.appendingPathComponent(name)
            guard fm.fileExists(atPath: url.path) else { continue }
            switch name {
            case "model.safetensors.index.json":
                return try TensorArchive.shardedSafetensors(index: url)
            case "consolidated.00.pth":
                if fm.fileExists(atPath: dir.appendingPathComponent("consolidated.01.pth").path) {
                    throw CheckpointError(.unsupported, file: "consolidated.01.pth",
                                          "model-parallel .pth shards are not supported; use consolidated.safetensors")
                }
                return try TensorArchive.pytorch(url)
            default:
                return try TensorArchive.safetensors(url)
            }
        }
        throw CheckpointError(.fileNotFound, file: dir.path,
                              "no weights found (looked for \((preferNative ? native + hf : hf + native).joined(separator: ", ")))")
    }

    private static func detectLayout(_ archive: TensorArchive) throws -> CheckpointLayout {
        if archive.shape(of: WeightKey.layoutMarker(.native)) != nil { return .native }
        if archive.shape(of: WeightKey.layoutMarker(.huggingFace)) != nil { return .huggingFace }
        throw CheckpointError(.missingTensor, file: archive.files.map(\.lastPathComponent).joined(separator: ", "),
                              tensor: WeightKey.layoutMarker(.native),
                              "neither Mistral's '\(WeightKey.layoutMarker(.native))' nor HF's '\(WeightKey.layoutMarker(.huggingFace))' is present")
    }

    /// `tokenizer.model`, then `.v3`, `.v1`, then any other `tokenizer.model.v*` (highest version).
    static func findTokenizer(_ dir: URL) -> URL? {
        let fm = FileManager.default
        for name in ["tokenizer.model", "tokenizer.model.v3", "tokenizer.model.v1"] {
            let url = dir.appendingPathComponent(name)
            if fm.fileExists(atPath: url.path) { return url }
        }
        let others = ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasPrefix("tokenizer.model.v") }
            .sorted { $0.compare($1, options: .numeric) == .orderedDescending }
        return others.first.map { dir.appendingPathComponent($0) }
    }
}

/// transformers' conversion script permutes each head's rows for rotate-half RoPE:
/// HF row `h·Dh + j·Dh/2 + i` holds native row `h·Dh + 2i + j` (i < Dh/2, j ∈ {0, 1}).
/// This copies the rows back into Mistral's interleaved order (bytes moved as stored: no widening;
/// an FP8 weight's row scales move with their rows).
/// `t`: (heads·Dh, D) → (heads·Dh, D).
func unpermuteRotateHalf(_ t: HostTensor, heads: Int, headDim: Int) -> HostTensor {
    let rows = t.shape[0]
    let rowBytes = t.shape.count > 1 ? t.shape[1] * t.dtype.byteSize : t.dtype.byteSize
    let scaleOffset = (t.data.count + 63) & ~63
    let out = OwnedBytes(count: scaleOffset + (t.rowScales == nil ? 0 : rows * 4))
    let scales = t.rowScales.map { _ in (out.pointer + scaleOffset).bindMemory(to: Float.self, capacity: rows) }
    let half = headDim / 2
    if let src = t.data.baseAddress {
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let native = h * headDim + 2 * i + j
                    let hf = h * headDim + j * half + i
                    guard native < rows, hf < rows else { continue }
                    (out.pointer + native * rowBytes).copyMemory(from: src + hf * rowBytes, byteCount: rowBytes)
                    if let scales, let from = t.rowScales { scales[native] = from[hf] }
                }
            }
        }
    }
    return HostTensor(dtype: t.dtype, shape: t.shape, data: UnsafeRawBufferPointer(start: out.pointer, count: t.data.count),
                      rowScales: scales.map { UnsafeBufferPointer(start: $0, count: rows) }, owner: out)
}
