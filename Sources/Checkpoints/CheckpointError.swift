/// Everything that can be wrong with a checkpoint folder, each naming the file (and tensor or
/// field where there is one), so a user can see at once which download is broken.
public struct CheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case fileNotFound          // no params.json/config.json, no weights, unreadable file
        case io                    // open/mmap failed
        case truncated             // file shorter than its header says
        case badHeader             // safetensors header length/offsets, zip directory
        case badJSON               // params.json / config.json / safetensors header / index
        case badConfig             // JSON is valid but a field is missing or out of range
        case unsupportedDType      // I64, F8, …
        case missingTensor
        case unexpectedTensor
        case wrongShape
        case dtypeMismatch         // weights stored in more than one dtype
        case badPickle             // data.pkl that is not a torch.save state dict
        case nonContiguous         // a .pth tensor whose strides are not row-major
        case compressed            // a .pth zip entry that is not stored
        case unsupported           // LoRA adapters, model-parallel shards, …
    }

    public let kind: Kind
    /// The file's last path component (or full path when that is clearer).
    public let file: String
    public let tensor: String?
    public let message: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "\(file): tensor '\(tensor)': \(message)" }
        return "\(file): \(message)"
    }
}
