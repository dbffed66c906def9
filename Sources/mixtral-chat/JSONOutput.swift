import Foundation

/// One compact JSON object per line on stdout: the machine-readable outputs of generate,
/// tokenize and encode-chat.
func printJSONLine<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    if let data = try? encoder.encode(value) {
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Writes `values` as a little-endian float32 C-order `.npy` of `shape` (numpy format 1.0).
func writeNPY(_ values: [Float], shape: [Int], to url: URL) throws {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
    let total = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let len = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(len & 0xFF), UInt8(len >> 8)])
    data.append(contentsOf: Array(header.utf8))
    values.withUnsafeBytes { data.append(contentsOf: $0) }
    try data.write(to: url)
}
