/// Element types a tensor can be stored in.
///
/// Weights stay in the dtype the checkpoint stored them in (bf16 for every Mistral release), so a
/// model's memory footprint equals its file size; activations are whatever the backend computes in
/// (f32 on the CPU). `i32` carries token ids, positions, block tables and expert indices.
public enum DType: String, Sendable, Hashable, CaseIterable, Codable {
    case bf16, f16, f32, i32

    /// Bytes per element.
    @inlinable public var byteSize: Int {
        switch self {
        case .bf16, .f16: return 2
        case .f32, .i32: return 4
        }
    }
}
