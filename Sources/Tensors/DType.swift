/// Element types a tensor can be stored in.
///
/// Weights stay in the dtype the checkpoint stored them in (bf16 for every Mistral release), so a
/// model's memory footprint equals its file size; activations are whatever the backend computes in
/// (f32 on the CPU). `i32` carries token ids, positions, block tables and expert indices.
///
/// `e4m3` is the FP8 weight format (`FP8E4M3`): one byte per element plus one f32 scale per
/// output row, carried beside the bytes (`HostTensor.rowScales`); the effective weight is
/// e4m3 × scale. Only 2-D weights are stored in it.
public enum DType: String, Sendable, Hashable, CaseIterable, Codable {
    case bf16, f16, f32, i32, e4m3

    /// Bytes per element (for e4m3 without its row scales).
    @inlinable public var byteSize: Int {
        switch self {
        case .e4m3: return 1
        case .bf16, .f16: return 2
        case .f32, .i32: return 4
        }
    }

    /// Whether a weight of this dtype carries one f32 scale per output row.
    @inlinable public var hasRowScales: Bool { self == .e4m3 }
}
